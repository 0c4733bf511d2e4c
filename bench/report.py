"""The benchmark's report as a typed value: one dataclass per scenario, the ratios derived
from them, the JSON written to bench/results/ (its keys are what the smoke test and earlier
results read) and the table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Generic, NamedTuple, TypeVar


@dataclass(frozen=True)
class Throughput:
    """A backlog drained, timed from its first result: the naive baseline, the database ceiling."""

    commands: int
    commands_per_second: float


@dataclass(frozen=True)
class Drain:
    """A worker draining a backlog, timed from its first results: its rate, its CPU per
    command, and how many of the machine's cores were busy meanwhile."""

    commands_per_second: float
    cpu_us_per_command: float
    busy_cores: float


@dataclass(frozen=True)
class LoadPoint:
    """Commands offered at a steady rate; latency from send() to the result being visible."""

    offered_per_second: float
    commands: int
    busy_cores: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class WorkerFigures:
    """The worker under test: a drain, then latency at half and at a tenth of its rate."""

    commands: int
    drain: Drain
    wal_syncs: int
    commands_per_wal_sync: float
    half: LoadPoint
    tenth: LoadPoint
    peak_rss_mb: float

    def to_json(self) -> dict[str, float]:
        flat: dict[str, float] = {"commands": self.commands, **asdict(self.drain)}
        flat |= {"wal_syncs": self.wal_syncs, "commands_per_wal_sync": self.commands_per_wal_sync}
        for prefix, point in (("latency", self.half), ("latency_tenth", self.tenth)):
            flat |= {f"{prefix}_{name}": value for name, value in asdict(point).items()}
        flat["peak_rss_mb"] = self.peak_rss_mb
        return flat


@dataclass(frozen=True)
class KafkaCeiling:
    """Kafka consume -> produce without a database: one loop, then two loop processes."""

    commands: int
    commands_per_second: float
    cpu_us_per_command: float
    busy_cores: float
    two_loops_commands_per_second: float


@dataclass(frozen=True)
class Mixed:
    """A backlog of every command type."""

    commands: int
    runs_changed: int
    commands_per_second: float
    cpu_us_per_command: float


@dataclass(frozen=True)
class TimerBurst:
    """Runs coming due in the same second, until each has its event."""

    runs: int
    seconds_until_all_opened: float
    events: int
    runs_with_one_event: int


@dataclass(frozen=True)
class HttpLatency:
    """HTTP complete requests beside Kafka commands at the same rate, to the same worker."""

    offered_per_second: float
    requests: int
    http_p50_ms: float
    http_p99_ms: float
    kafka_p50_ms: float
    kafka_p99_ms: float
    http_vs_kafka_p50: float
    http_vs_kafka_p99: float


@dataclass(frozen=True)
class DrainMedians:
    commands_per_second: float
    cpu_us_per_command: float


@dataclass(frozen=True)
class Tracing:
    """The same drain with tracing off, on at 100% and on at 10%: medians of the rounds."""

    commands_per_drain: int
    rounds: int
    off: DrainMedians
    on_100: DrainMedians
    on_10: DrainMedians
    on_100_vs_off_throughput: float
    on_100_vs_off_cpu_per_command: float
    on_10_vs_off_throughput: float
    on_10_vs_off_cpu_per_command: float
    otlp_bytes_per_sampled_command: float


# The most a complete drain may lose to run states: within 10% of the same drain without them.
STATES_BOUND = 0.9


@dataclass(frozen=True)
class RunStatesCost:
    """The same drain with run states published and without (FIELDING_STATES_TOPIC empty):
    medians of the rounds."""

    commands_per_drain: int
    rounds: int
    off: DrainMedians
    on: DrainMedians
    on_vs_off_throughput: float
    on_vs_off_cpu_per_command: float
    within_bound: bool  # on's throughput at least STATES_BOUND of off's

    @classmethod
    def of(
        cls, commands_per_drain: int, rounds: int, *, on: DrainMedians, off: DrainMedians
    ) -> RunStatesCost:
        throughput = on.commands_per_second / off.commands_per_second
        return cls(
            commands_per_drain=commands_per_drain,
            rounds=rounds,
            off=off,
            on=on,
            on_vs_off_throughput=throughput,
            on_vs_off_cpu_per_command=on.cpu_us_per_command / off.cpu_us_per_command,
            within_bound=throughput >= STATES_BOUND,
        )


@dataclass(frozen=True)
class ScaleRounds:
    """One table size's rounds, in the order they ran."""

    commands_per_second: list[float]
    cpu_us_per_command: list[float]


@dataclass(frozen=True)
class Scale:
    """Drains with a small and a large fielding_runs table, by table size."""

    commands_per_round: int
    rounds: int
    tables: dict[int, ScaleRounds]
    large_vs_small_throughput: float
    large_vs_small_cpu_per_command: float

    def to_json(self) -> dict[str, Any]:
        return {
            "commands_per_round": self.commands_per_round,
            "rounds": self.rounds,
            **{f"table_{size}": asdict(rounds) for size, rounds in self.tables.items()},
            "large_vs_small_throughput": self.large_vs_small_throughput,
            "large_vs_small_cpu_per_command": self.large_vs_small_cpu_per_command,
        }


@dataclass(frozen=True)
class DueScale:
    """The scheduler's query for `due` due runs of each kind, in ms by table size."""

    due: int
    table_ms: dict[int, float]
    large_vs_small_time: float

    def to_json(self) -> dict[str, float]:
        return {
            "due": self.due,
            **{f"table_{size}_ms": ms for size, ms in self.table_ms.items()},
            "large_vs_small_time": self.large_vs_small_time,
        }


@dataclass(frozen=True)
class Memory:
    """The worker's resident memory after each checkpoint's number of commands."""

    rss_mb_after: dict[int, float]
    rss_last_vs_first: float

    def to_json(self) -> dict[str, float]:
        return {
            **{f"rss_mb_after_{n}": mb for n, mb in self.rss_mb_after.items()},
            "rss_last_vs_first": self.rss_last_vs_first,
        }


# The processes whose CPU the open-loop points read, in the order they are printed.
PROCESSES = ("serve", "worker", "broker", "postgres")


def cpu_total(cpu_us: dict[str, float]) -> float:
    return sum(cpu_us.values())


@dataclass(frozen=True)
class HttpPoint:
    """complete requests offered open-loop by vegeta at one rate; CPU per 204 by process."""

    offered_per_second: int
    sent_per_second: float
    requests: int
    statuses: dict[str, int]  # by status code; "0": no response
    p50_ms: float
    p99_ms: float
    busy_cores: float
    cpu_us_per_request: dict[str, float]  # empty when no request succeeded

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"cpu_us_per_request_total": cpu_total(self.cpu_us_per_request)}


@dataclass(frozen=True)
class GetStep:
    """GET requests for runs offered open-loop at one rate of the rising series."""

    offered_per_second: int
    sent_per_second: float
    answered_per_second: float  # 2xx answers per second, the wait for the last ones included
    success_ratio: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: dict[str, float]

    @property
    def sustained(self) -> bool:
        """Fewer than 1% errors, and answered at (nearly) the rate offered: not queueing."""
        return (
            self.success_ratio >= 0.99
            and self.answered_per_second >= 0.95 * self.offered_per_second
        )


@dataclass(frozen=True)
class GetCeiling:
    """A rising series of GET rates, up to the first one not sustained (or the last step)."""

    steps: list[GetStep]

    @property
    def sustained_per_second(self) -> int | None:
        """The highest rate sustained before the first that was not; None when not even the
        first was."""
        best = None
        for step in self.steps:
            if not step.sustained:
                break
            best = step.offered_per_second
        return best

    @property
    def found(self) -> bool:
        """Whether a step was not sustained: otherwise the ceiling lies above the last step."""
        return not all(step.sustained for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "sustained_per_second": self.sustained_per_second,
            "found": self.found,
            "steps": [asdict(step) | {"sustained": step.sustained} for step in self.steps],
        }


@dataclass(frozen=True)
class IdlePoint:
    """serve and the worker running with nothing offered: what each process costs a second
    (polls, heartbeats, the scheduler's scans), and so each request's share at low rates."""

    seconds: float
    cpu_us_per_second: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"cpu_us_per_second_total": cpu_total(self.cpu_us_per_second)}


@dataclass(frozen=True)
class KafkaDrainPoint:
    """A backlog drained by the worker, timed from its first results: its maximum rate."""

    commands: int
    commands_per_second: float
    busy_cores: float
    cpu_us_per_command: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"cpu_us_per_command_total": cpu_total(self.cpu_us_per_command)}


Label = TypeVar("Label")


@dataclass(frozen=True)
class KafkaPoint(Generic[Label]):
    """Commands produced open-loop by a producer process at one rate; latency from send() to
    the result being visible to a read_committed reader; CPU per command by process. The
    label says which point of its series it is: in the open loop the rate's name ("fixed",
    "tenth" or "half" of the drain's), in the gathering curve the window in ms."""

    label: Label
    offered_per_second: float
    sent_per_second: float
    commands: int
    p50_ms: float
    p99_ms: float
    busy_cores: float
    cpu_us_per_command: dict[str, float]

    def to_json(self, label_key: str) -> dict[str, Any]:
        """The figures with the label first, under `label_key`: the key each series' JSON has
        always had ("name" in the open loop, "gather_ms" in the gathering curve)."""
        figures = asdict(self)
        label = figures.pop("label")
        total = cpu_total(self.cpu_us_per_command)
        return {label_key: label, **figures, "cpu_us_per_command_total": total}


@dataclass(frozen=True)
class OpenLoop:
    """Load offered open-loop by generators outside the processes measured: HTTP at fixed
    rates and the GET ceiling, Kafka at a fixed rate and at fractions of the drain's."""

    generator: str
    broker_jit: str  # "optimising" as deployed, or "fast-start" (C1 only)
    seconds_per_point: float
    warmup_seconds: float
    idle: IdlePoint
    http: list[HttpPoint]
    get_ceiling: GetCeiling
    kafka_drain: KafkaDrainPoint
    kafka: list[KafkaPoint[str]]  # labelled by the rate's name

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "broker_jit": self.broker_jit,
            "seconds_per_point": self.seconds_per_point,
            "warmup_seconds": self.warmup_seconds,
            "idle": self.idle.to_json(),
            "http": [point.to_json() for point in self.http],
            "get_ceiling": self.get_ceiling.to_json(),
            "kafka_drain": self.kafka_drain.to_json(),
            "kafka": [point.to_json("name") for point in self.kafka],
        }


@dataclass(frozen=True)
class GatherCurve:
    """The gathering window's curve: every window at every rate, a worker per window."""

    broker_jit: str
    seconds_per_point: float
    warmup_seconds: float
    points: list[KafkaPoint[float]]  # labelled by the window, in ms

    def without_gathering(self, point: KafkaPoint[float]) -> KafkaPoint[float] | None:
        """The point at the same rate with no window (0 ms), when the curve has one."""
        return next(
            (
                other
                for other in self.points
                if other.label == 0 and other.offered_per_second == point.offered_per_second
            ),
            None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "broker_jit": self.broker_jit,
            "seconds_per_point": self.seconds_per_point,
            "warmup_seconds": self.warmup_seconds,
            "points": [point.to_json("gather_ms") for point in self.points],
        }


@dataclass(frozen=True)
class Ceilings:
    """The worker's drain and latency beside the two ceilings, in one run: the figures of the
    worker near its database ceiling (`--only ceilings`)."""

    cores: int
    worker: WorkerFigures
    kafka_ceiling: KafkaCeiling
    database_ceiling: Throughput

    @property
    def drain_vs_database_ceiling(self) -> float:
        return self.worker.drain.commands_per_second / self.database_ceiling.commands_per_second

    @property
    def cpu_vs_kafka_loop(self) -> float:
        return self.worker.drain.cpu_us_per_command / self.kafka_ceiling.cpu_us_per_command

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker.to_json(),
            "kafka_ceiling": asdict(self.kafka_ceiling),
            "database_ceiling": asdict(self.database_ceiling),
            "drain_vs_database_ceiling": self.drain_vs_database_ceiling,
            "cpu_vs_kafka_loop": self.cpu_vs_kafka_loop,
        }


def ceilings_table(ceilings: Ceilings) -> str:
    w, kafka, tenth = ceilings.worker, ceilings.kafka_ceiling, ceilings.worker.tenth
    rows = [
        ("figure", "this run", "target"),
        (
            "drain / database ceiling",
            f"{ceilings.drain_vs_database_ceiling:.2f} ({w.drain.commands_per_second:,.0f} / "
            f"{ceilings.database_ceiling.commands_per_second:,.0f} commands/s)",
            ">= 0.8",
        ),
        (
            "CPU per command / the Kafka loop's",
            f"{ceilings.cpu_vs_kafka_loop:.2f} ({w.drain.cpu_us_per_command:.0f} / "
            f"{kafka.cpu_us_per_command:.0f} µs)",
            "<= 3",
        ),
        (
            f"p50 / p99 at a tenth ({tenth.offered_per_second:,.0f}/s)",
            f"{tenth.p50_ms:.1f} / {tenth.p99_ms:.1f} ms",
            "<= 15 / 40 ms",
        ),
        (
            f"p50 / p99 at half ({w.half.offered_per_second:,.0f}/s)",
            f"{w.half.p50_ms:.1f} / {w.half.p99_ms:.1f} ms",
            "",
        ),
        ("commands per WAL flush", f"{w.commands_per_wal_sync:,.0f}", ">= 100"),
    ]
    busy = (
        f"busy cores of {ceilings.cores}: drain {w.drain.busy_cores:.2f}, "
        f"Kafka loop {kafka.busy_cores:.2f}"
    )
    return "\n".join([*aligned(rows), busy])


@dataclass(frozen=True)
class Ratios:
    worker_vs_naive: float
    worker_vs_kafka_ceiling: float
    worker_vs_database_ceiling: float
    # Whether the Kafka ceiling is the broker's: near 2, it is one Python client's CPU.
    kafka_ceiling_two_loops_vs_one: float
    worker_vs_kafka_loop_cpu_per_command: float
    mixed_vs_complete_throughput: float


@dataclass(frozen=True)
class Report:
    cores: int
    sizes: dict[str, Any]  # the command line's arguments
    worker: WorkerFigures
    naive: Throughput
    kafka_ceiling: KafkaCeiling
    database_ceiling: Throughput
    mixed: Mixed
    http: HttpLatency
    tracing: Tracing
    timers: TimerBurst
    states: RunStatesCost
    scale: Scale | None = None
    due_scale: DueScale | None = None
    memory: Memory | None = None
    open_loop: OpenLoop | None = None

    @property
    def ratios(self) -> Ratios:
        w = self.worker.drain.commands_per_second
        kafka = self.kafka_ceiling
        ceilings = Ceilings(self.cores, self.worker, kafka, self.database_ceiling)
        return Ratios(
            worker_vs_naive=w / self.naive.commands_per_second,
            worker_vs_kafka_ceiling=w / kafka.commands_per_second,
            worker_vs_database_ceiling=ceilings.drain_vs_database_ceiling,
            kafka_ceiling_two_loops_vs_one=kafka.two_loops_commands_per_second
            / kafka.commands_per_second,
            worker_vs_kafka_loop_cpu_per_command=ceilings.cpu_vs_kafka_loop,
            mixed_vs_complete_throughput=self.mixed.commands_per_second / w,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "machine": {"cores": self.cores},
            "sizes": self.sizes,
            "worker": self.worker.to_json(),
            "naive": asdict(self.naive),
            "kafka_ceiling": asdict(self.kafka_ceiling),
            "database_ceiling": asdict(self.database_ceiling),
            "mixed": asdict(self.mixed),
            "http": asdict(self.http),
            "tracing": asdict(self.tracing),
            "timers": asdict(self.timers),
            "states": asdict(self.states),
        }
        if self.scale is not None:
            out["scale"] = self.scale.to_json()
        if self.due_scale is not None:
            out["due_scale"] = self.due_scale.to_json()
        if self.memory is not None:
            out["memory"] = self.memory.to_json()
        if self.open_loop is not None:
            out["open_loop"] = self.open_loop.to_json()
        out["ratios"] = asdict(self.ratios)
        return out


def table(report: Report) -> str:
    """The report as printed at the end of a run."""
    kafka, w = report.kafka_ceiling, report.worker
    rows = [
        ("scenario", "commands", "commands/s"),
        ("worker", str(w.commands), f"{w.drain.commands_per_second:,.0f}"),
        ("naive", str(report.naive.commands), f"{report.naive.commands_per_second:,.0f}"),
        ("kafka_ceiling", str(kafka.commands), f"{kafka.commands_per_second:,.0f}"),
        (
            "kafka_ceiling, 2 loop processes",
            str(kafka.commands),
            f"{kafka.two_loops_commands_per_second:,.0f}",
        ),
        (
            "database_ceiling",
            str(report.database_ceiling.commands),
            f"{report.database_ceiling.commands_per_second:,.0f}",
        ),
    ]
    lines = aligned(rows, pad_last=True)
    ratios = report.ratios
    lines += [
        "",
        f"worker latency at {w.half.offered_per_second:,.0f}/s offered (half): "
        f"p50 {w.half.p50_ms:.1f} ms, p99 {w.half.p99_ms:.1f} ms",
        f"worker latency at {w.tenth.offered_per_second:,.0f}/s offered (a tenth): "
        f"p50 {w.tenth.p50_ms:.1f} ms, p99 {w.tenth.p99_ms:.1f} ms",
        f"worker peak RSS {w.peak_rss_mb:.0f} MB; {w.commands_per_wal_sync:.1f} commands per WAL sync; "
        f"{w.drain.cpu_us_per_command:.0f} µs CPU per command "
        f"(the Kafka ceiling's loop: {kafka.cpu_us_per_command:.0f} µs)",
        f"busy cores of {report.cores}: drain {w.drain.busy_cores:.2f}, half {w.half.busy_cores:.2f}, "
        f"tenth {w.tenth.busy_cores:.2f}, Kafka ceiling {kafka.busy_cores:.2f}",
        *(f"{field.name}: {getattr(ratios, field.name):.2f}" for field in fields(ratios)),
    ]
    if report.scale is not None:
        lines.append(
            f"scale: large/small table throughput {report.scale.large_vs_small_throughput:.2f}, "
            f"CPU per command {report.scale.large_vs_small_cpu_per_command:.2f}"
        )
    mixed, timers = report.mixed, report.timers
    lines.append(
        f"mixed backlog of every command type: {mixed.commands_per_second:,.0f} commands/s, "
        f"{mixed.cpu_us_per_command:.0f} µs CPU per command ({mixed.runs_changed} runs changed)"
    )
    lines.append(
        f"{timers.runs:,} runs due in one second: all opened {timers.seconds_until_all_opened:.1f} s "
        f"after it; {timers.events:,} events, {timers.runs_with_one_event:,} runs with exactly one"
    )
    http = report.http
    lines.append(
        f"HTTP complete at {http.offered_per_second:,.0f}/s: p50 {http.http_p50_ms:.1f} ms, "
        f"p99 {http.http_p99_ms:.1f} ms; Kafka at the same rate, same worker: "
        f"p50 {http.kafka_p50_ms:.1f} ms, p99 {http.kafka_p99_ms:.1f} ms "
        f"(HTTP/Kafka p50 {http.http_vs_kafka_p50:.2f}, p99 {http.http_vs_kafka_p99:.2f})"
    )
    tracing = report.tracing
    lines.append(
        "tracing, against off: "
        f"on at 100% throughput {tracing.on_100_vs_off_throughput:.2f}, CPU per command "
        f"{tracing.on_100_vs_off_cpu_per_command:.2f}; on at 10% throughput "
        f"{tracing.on_10_vs_off_throughput:.2f}, CPU per command "
        f"{tracing.on_10_vs_off_cpu_per_command:.2f} "
        f"({tracing.off.cpu_us_per_command:.0f} µs CPU per command off)"
    )
    lines.append(states_line(report.states))
    if report.due_scale is not None:
        lines.append(
            f"finding {report.due_scale.due} due runs of each kind: large/small table time "
            f"{report.due_scale.large_vs_small_time:.2f}"
        )
    if report.memory is not None:
        figures = report.memory.to_json()
        lines.append("memory: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    if report.open_loop is not None:
        lines += ["", open_loop_table(report.open_loop)]
    return "\n".join(lines)


def aligned(rows: Sequence[tuple[str, ...]], *, pad_last: bool = False) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell, two spaces apart; the
    last column is padded too only with `pad_last` (the scenario table always was)."""
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    return lines if pad_last else [line.rstrip() for line in lines]


def _cpu_cells(cpu_us: dict[str, float], processes: tuple[str, ...]) -> tuple[str, ...]:
    if not cpu_us:
        return ("-",) * (len(processes) + 1)
    return (*(f"{cpu_us[name]:,.0f}" for name in processes), f"{cpu_total(cpu_us):,.0f}")


class _Row(NamedTuple):
    """A row of a table with CPU columns: its own cells, its CPU µs by process (empty when none
    was read), then the cells that follow the CPU columns, if any."""

    cells: tuple[str, ...]
    cpu_us: dict[str, float]
    after: tuple[str, ...] = ()


def _cpu_table(
    header: tuple[str, ...],
    processes: tuple[str, ...],
    rows: Iterable[_Row],
    after: tuple[str, ...] = (),
) -> list[str]:
    """Aligned lines: `header`'s columns, a column of CPU µs for each of `processes` and their
    total ("-" where none was read), then `after`'s columns; a line for each row."""
    return aligned(
        [
            (*header, *processes, "total", *after),
            *((*row.cells, *_cpu_cells(row.cpu_us, processes), *row.after) for row in rows),
        ]
    )


def _http_rows(points: list[HttpPoint]) -> list[str]:
    header = ("offered/s", "sent/s", "statuses", "p50 ms", "p99 ms", "busy cores")
    rows = (
        _Row(
            (
                f"{point.offered_per_second:,}",
                f"{point.sent_per_second:,.1f}",
                " ".join(f"{code}:{n}" for code, n in point.statuses.items()),
                f"{point.p50_ms:.1f}",
                f"{point.p99_ms:.1f}",
                f"{point.busy_cores:.2f}",
            ),
            point.cpu_us_per_request,
        )
        for point in points
    )
    return _cpu_table(header, PROCESSES, rows)


def _get_rows(steps: list[GetStep]) -> list[str]:
    header = ("offered/s", "sent/s", "answered/s", "success", "p50 ms", "p99 ms")
    rows = (
        _Row(
            (
                f"{step.offered_per_second:,}",
                f"{step.sent_per_second:,.1f}",
                f"{step.answered_per_second:,.1f}",
                f"{step.success_ratio:.2%}",
                f"{step.p50_ms:.1f}",
                f"{step.p99_ms:.1f}",
            ),
            step.cpu_us_per_request,
        )
        for step in steps
    )
    return _cpu_table(header, PROCESSES, rows)


def _kafka_rows(drain: KafkaDrainPoint, points: list[KafkaPoint[str]]) -> list[str]:
    processes = tuple(name for name in PROCESSES if name in drain.cpu_us_per_command)
    header = ("rate", "offered/s", "sent/s", "commands", "p50 ms", "p99 ms", "busy cores")
    drained = _Row(
        ("drain", "backlog", "-", f"{drain.commands:,}", "-", "-", f"{drain.busy_cores:.2f}"),
        drain.cpu_us_per_command,
    )
    measured = (
        _Row(
            (
                point.label,
                f"{point.offered_per_second:,.0f}",
                f"{point.sent_per_second:,.1f}",
                f"{point.commands:,}",
                f"{point.p50_ms:.1f}",
                f"{point.p99_ms:.1f}",
                f"{point.busy_cores:.2f}",
            ),
            point.cpu_us_per_command,
        )
        for point in points
    )
    return _cpu_table(header, processes, [drained, *measured])


def open_loop_table(open_loop: OpenLoop) -> str:
    """The open-loop section as printed: a table for HTTP complete, the GET ceiling's steps and
    a table for Kafka, each with CPU µs per request (or command) by process and their total."""
    ceiling = open_loop.get_ceiling
    sustained = ceiling.sustained_per_second
    lines = [
        f"open loop ({open_loop.generator}; the broker's JIT: {open_loop.broker_jit}): "
        f"{open_loop.seconds_per_point:g} s at each rate after {open_loop.warmup_seconds:g} s "
        "unmeasured",
        f"idle for {open_loop.idle.seconds:g} s (serve and the worker running, nothing offered), "
        "CPU µs per second by process:",
        *_cpu_table((), PROCESSES, [_Row((), open_loop.idle.cpu_us_per_second)]),
        "HTTP complete, CPU µs per 204 by process:",
        *_http_rows(open_loop.http),
        "GET ceiling: "
        + ("no rate sustained" if sustained is None else f"{sustained:,}/s sustained")
        + ("" if ceiling.found else ", the highest rate tried")
        + " (under 1% errors, 95% of the rate answered); CPU µs per GET by process:",
        *_get_rows(ceiling.steps),
        f"Kafka: the worker drains a backlog at {open_loop.kafka_drain.commands_per_second:,.0f}"
        "/s; CPU µs per command by process:",
        *_kafka_rows(open_loop.kafka_drain, open_loop.kafka),
    ]
    lines += _jit_note(open_loop.broker_jit)
    return "\n".join(lines)


def _jit_note(broker_jit: str) -> list[str]:
    if broker_jit == "optimising":
        return []
    return [
        f"The broker ran with the {broker_jit} JIT, not as deployed: `make bench` "
        "restarts it with the optimising one (LOCAL_KAFKA_JIT=optimising)."
    ]


def gather_curve_table(curve: GatherCurve) -> str:
    """The gathering window's curve as printed: a row per rate and window, rates in the order
    measured and each rate's windows together, with CPU µs per command by process, their
    total, and that total against the same rate's without a window."""
    processes = tuple(
        name for name in PROCESSES if any(name in p.cpu_us_per_command for p in curve.points)
    )
    header = ("offered/s", "gather ms", "sent/s", "p50 ms", "p99 ms", "busy cores")
    rates = list(dict.fromkeys(point.offered_per_second for point in curve.points))
    rows = []
    for rate in rates:
        for point in (p for p in curve.points if p.offered_per_second == rate):
            baseline = curve.without_gathering(point)
            total, base_total = (
                cpu_total(point.cpu_us_per_command),
                cpu_total(baseline.cpu_us_per_command) if baseline else 0.0,
            )
            cells = (
                f"{point.offered_per_second:,.0f}",
                f"{point.label:g}",
                f"{point.sent_per_second:,.1f}",
                f"{point.p50_ms:.1f}",
                f"{point.p99_ms:.1f}",
                f"{point.busy_cores:.2f}",
            )
            against_no_window = f"{total / base_total:.2f}" if total and base_total else "-"
            rows.append(_Row(cells, point.cpu_us_per_command, (against_no_window,)))
    lines = [
        f"gathering window (FIELDING_BATCH_GATHER_MS; the broker's JIT: {curve.broker_jit}): "
        f"{curve.seconds_per_point:g} s at each rate after {curve.warmup_seconds:g} s "
        "unmeasured; CPU µs per command by process; `vs 0 ms`: the total against the same "
        "rate's without a window",
        *_cpu_table(header, processes, rows, after=("vs 0 ms",)),
        *_jit_note(curve.broker_jit),
    ]
    return "\n".join(lines)


def states_line(states: RunStatesCost) -> str:
    return (
        f"run states, against off: throughput {states.on_vs_off_throughput:.2f}, CPU per command "
        f"{states.on_vs_off_cpu_per_command:.2f} "
        f"({'within' if states.within_bound else 'NOT within'} 10% of the drain without them)"
    )
