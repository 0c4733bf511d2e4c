"""The benchmark's report as a typed value: one dataclass per scenario, the ratios derived
from them, the JSON written to bench/results/ (its keys are what the smoke test and earlier
results read) and the table printed at the end of a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


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

    @property
    def ratios(self) -> Ratios:
        w = self.worker.drain.commands_per_second
        kafka = self.kafka_ceiling
        return Ratios(
            worker_vs_naive=w / self.naive.commands_per_second,
            worker_vs_kafka_ceiling=w / kafka.commands_per_second,
            worker_vs_database_ceiling=w / self.database_ceiling.commands_per_second,
            kafka_ceiling_two_loops_vs_one=kafka.two_loops_commands_per_second
            / kafka.commands_per_second,
            worker_vs_kafka_loop_cpu_per_command=self.worker.drain.cpu_us_per_command
            / kafka.cpu_us_per_command,
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
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(r)) for r in rows]
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
    states = report.states
    lines.append(
        f"run states, against off: throughput {states.on_vs_off_throughput:.2f}, CPU per command "
        f"{states.on_vs_off_cpu_per_command:.2f} "
        f"({'within' if states.within_bound else 'NOT within'} 10% of the drain without them)"
    )
    if report.due_scale is not None:
        lines.append(
            f"finding {report.due_scale.due} due runs of each kind: large/small table time "
            f"{report.due_scale.large_vs_small_time:.2f}"
        )
    if report.memory is not None:
        figures = report.memory.to_json()
        lines.append("memory: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    return "\n".join(lines)
