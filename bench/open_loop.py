"""Load offered open-loop, by generators that are processes of their own, and the CPU each
process spends per request or command (docs/decisions/open-loop-generator.md):

- HTTP: vegeta POSTs complete requests to `fielding-worker serve` at each fixed rate (100,
  200, 400, 800/s by default), each request completing a run of its own under a command id
  of its own (`idempotency-key`); then GETs of runs at a rising rate, for the GET ceiling.
- Kafka: the worker drains a backlog (its maximum rate), then a producer process
  (bench/kafka_load.py) offers commands at a fixed rate (100/s) and at a tenth and half of
  that maximum; latency is from send() to the result being visible to a read_committed
  reader, as in the rest of the bench.

Each rate runs for a warm-up, unmeasured, then for the measured time. Around the measured
part the bench reads the CPU time of each process tree from /proc (serve, the worker, the
broker's JVM, Postgres's postmaster with every backend): CPU per request is its growth over
the requests answered (204s over HTTP, results over Kafka).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.fixtures import (
    ACCOUNT,
    ResultWatcher,
    Runs,
    auth_header,
    backlog_scenario,
    command_value,
    create_runs,
    free_port,
    fresh_database,
    scenario_settings,
    start_worker,
)
from bench.http import percentile, wait_until_serving
from bench.kafka_load import write_records
from bench.report import (
    GetCeiling,
    GetStep,
    HttpPoint,
    IdlePoint,
    KafkaDrainPoint,
    KafkaPoint,
    Label,
    OpenLoop,
)
from bench.system import (
    broker_pid,
    busy_cores,
    command_line,
    cpu_jiffies,
    local_services,
    postmaster_pid,
    process_table,
    tree_cpu_seconds,
)
from bench.vegeta import VERSION, Target, attack, targets_needed, vegeta_binary, write_targets
from schemas.types import new_ulid
from worker.bootstrap import create_topics
from worker.service.catalogue import RUN
from worker.settings import Settings

API_VERSION = "2025-12-18"
# After serve first answers: its start-up and the worker's joining the group are over.
IDLE_SETTLE_SECONDS = 3.0


@dataclass(frozen=True)
class OpenLoopSizes:
    http_rates: list[int]
    kafka_rate: float  # the fixed rate; the others are fractions of the drain's
    kafka_fractions: dict[str, float]
    seconds: float  # measured, at each rate
    warmup_seconds: float  # unmeasured, at the same rate, before it
    drain_commands: int
    get_start_rate: int
    get_factor: float
    get_steps: int
    get_step_seconds: float


@dataclass(frozen=True)
class Processes:
    """The processes measured, by name, each the root of its tree."""

    pids: dict[str, int]

    def cpu_seconds(self) -> dict[str, float]:
        table = process_table()  # one reading for all, so that they are of the same moment
        if gone := [f"{name} (pid {pid})" for name, pid in self.pids.items() if pid not in table]:
            raise RuntimeError(f"{', '.join(gone)}: no longer running, its CPU cannot be read")
        return {name: tree_cpu_seconds(pid, table) for name, pid in self.pids.items()}

    def plus(self, **pids: int) -> Processes:
        return Processes(self.pids | pids)


def cpu_us_per(
    before: dict[str, float], after: dict[str, float], answered: float
) -> dict[str, float]:
    """Each process's CPU µs per answered request between two readings; empty when none was
    answered."""
    if answered <= 0:
        return {}
    return {name: (after[name] - before[name]) * 1e6 / answered for name in before}


class Reading:
    """Each process's CPU time and the machine's busy cores, read on entering a block and on
    leaving it."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.busy_cores = 0.0
        self._cpu_before: dict[str, float] = {}
        self._cpu_after: dict[str, float] = {}
        self._machine = (0, 0)

    def __enter__(self) -> Reading:
        self._machine, self._cpu_before = cpu_jiffies(), self.processes.cpu_seconds()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._cpu_after = self.processes.cpu_seconds()
        self.busy_cores = busy_cores(self._machine, cpu_jiffies())

    def cpu_us_per(self, answered: float) -> dict[str, float]:
        return cpu_us_per(self._cpu_before, self._cpu_after, answered)


class Slices:
    """Hands out consecutive, never repeated runs: each request or command completes its own."""

    def __init__(self, runs: Runs) -> None:
        self.runs, self.next = runs, 0

    def take(self, count: int) -> range:
        if self.next + count > len(self.runs.ids):
            raise RuntimeError(f"{count} runs more asked for, {len(self.runs.ids)} made")
        taken = range(self.next, self.next + count)
        self.next += count
        return taken


def run_path(runs: Runs, i: int) -> str:
    return RUN.format(
        account_id=ACCOUNT,
        project_id=runs.project_id,
        target_group_id=runs.target_groups[i],
        fielding_run_id=runs.ids[i],
    )


def complete_targets(base_url: str, runs: Runs, indexes: range) -> list[Target]:
    """A complete request for each run of `indexes`, each under a command id of its own."""
    common = {
        "Authorization": auth_header()[0][1].decode(),
        "Cint-API-Version": API_VERSION,
        "If-Match": 'W/"1"',
    }
    return [
        Target(
            "POST",
            f"{base_url}{run_path(runs, i)}/complete",
            common | {"idempotency-key": new_ulid()},
        )
        for i in indexes
    ]


def get_targets(base_url: str, runs: Runs, indexes: range) -> list[Target]:
    common = {"Authorization": auth_header()[0][1].decode(), "Cint-API-Version": API_VERSION}
    return [Target("GET", f"{base_url}{run_path(runs, i)}", common) for i in indexes]


def rising_rates(start: int, factor: float, steps: int) -> list[int]:
    rates = [start]
    while len(rates) < steps:
        rates.append(max(rates[-1] + 1, round(rates[-1] * factor)))
    return rates


def broker_jit(pid: int) -> str:
    """The JIT the broker's JVM runs with, read from its command line."""
    jit: str = local_services().jit_of(command_line(pid))
    return jit


def generator() -> Path:
    """vegeta, built under scripts/services.py's local directory on first use."""
    return vegeta_binary(Path(local_services().LOCAL))


async def measure_open_loop(base: Settings, sizes: OpenLoopSizes) -> OpenLoop:
    """Both halves, on databases and topics of their own."""
    services = local_services()
    vegeta = await asyncio.to_thread(generator)
    broker = broker_pid(services)
    processes = Processes({"broker": broker, "postgres": postmaster_pid(services)})
    with tempfile.TemporaryDirectory(prefix="bench-open-loop-") as scratch:
        idle, http, ceiling = await open_loop_http(base, vegeta, processes, sizes, Path(scratch))
        drain, kafka = await open_loop_kafka(base, processes, sizes, Path(scratch))
    return OpenLoop(
        generator=f"vegeta {VERSION} for HTTP, a producer process for Kafka",
        broker_jit=broker_jit(broker),
        seconds_per_point=sizes.seconds,
        warmup_seconds=sizes.warmup_seconds,
        idle=idle,
        http=http,
        get_ceiling=ceiling,
        kafka_drain=drain,
        kafka=kafka,
    )


# --- HTTP --------------------------------------------------------------------------------------


async def open_loop_http(
    base: Settings, vegeta: Path, processes: Processes, sizes: OpenLoopSizes, scratch: Path
) -> tuple[IdlePoint, list[HttpPoint], GetCeiling]:
    url = await fresh_database(base.database_url, "fielding_bench_open_loop_http")
    needed = sum(
        targets_needed(rate, sizes.warmup_seconds) + targets_needed(rate, sizes.seconds)
        for rate in sizes.http_rates
    )
    runs = await create_runs(url, needed)
    settings = scenario_settings(base, url, "open-loop-http")
    settings = settings.model_copy(update={"replies_topic": f"{settings.commands_topic}-replies"})
    await create_topics(settings)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    worker = start_worker(settings)
    serve = start_worker(settings, command="serve", API_PORT=str(port), API_HOST="127.0.0.1")
    measured_processes = processes.plus(serve=serve.pid, worker=worker.pid)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            await wait_until_serving(client, serve)
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        with Reading(measured_processes) as reading:
            await asyncio.sleep(sizes.seconds)
        idle = IdlePoint(sizes.seconds, reading.cpu_us_per(sizes.seconds))
        slices = Slices(runs)
        points = []
        for rate in sizes.http_rates:
            if sizes.warmup_seconds > 0:  # vegeta's duration 0 is "forever"
                warm = complete_targets(
                    base_url, runs, slices.take(targets_needed(rate, sizes.warmup_seconds))
                )
                warm_file = write_targets(scratch / "warm.json", warm)
                await attack(vegeta, warm_file, rate, sizes.warmup_seconds)
            targets = write_targets(
                scratch / "complete.json",
                complete_targets(base_url, runs, slices.take(targets_needed(rate, sizes.seconds))),
            )
            with Reading(measured_processes) as reading:
                report = await attack(vegeta, targets, rate, sizes.seconds)
            points.append(
                HttpPoint(
                    offered_per_second=rate,
                    sent_per_second=report.sent_per_second,
                    requests=report.requests,
                    statuses=report.statuses,
                    p50_ms=report.p50_ms,
                    p99_ms=report.p99_ms,
                    busy_cores=reading.busy_cores,
                    cpu_us_per_request=reading.cpu_us_per(report.statuses.get("204", 0)),
                )
            )
        ceiling = await get_ceiling(vegeta, measured_processes, sizes, base_url, runs, scratch)
    finally:
        for process in (serve, worker):
            process.terminate()
            process.wait(60)
    return idle, points, ceiling


async def get_ceiling(
    vegeta: Path,
    processes: Processes,
    sizes: OpenLoopSizes,
    base_url: str,
    runs: Runs,
    scratch: Path,
) -> GetCeiling:
    """GETs of runs at a rising rate, each step for `get_step_seconds`, until a step is not
    sustained (the GET answers hold no state: the same runs serve every step)."""
    targets = write_targets(
        scratch / "get.json", get_targets(base_url, runs, range(min(5_000, len(runs.ids))))
    )
    steps: list[GetStep] = []
    for rate in rising_rates(sizes.get_start_rate, sizes.get_factor, sizes.get_steps):
        with Reading(processes) as reading:
            report = await attack(vegeta, targets, rate, sizes.get_step_seconds, 10)
        answered = sum(n for code, n in report.statuses.items() if code.startswith("2"))
        steps.append(
            GetStep(
                offered_per_second=rate,
                sent_per_second=report.sent_per_second,
                answered_per_second=report.throughput_per_second,
                success_ratio=report.success_ratio,
                p50_ms=report.p50_ms,
                p99_ms=report.p99_ms,
                cpu_us_per_request=reading.cpu_us_per(answered),
            )
        )
        if not steps[-1].sustained:
            break
    return GetCeiling(steps)


# --- Kafka -------------------------------------------------------------------------------------


async def open_loop_kafka(
    base: Settings, processes: Processes, sizes: OpenLoopSizes, scratch: Path
) -> tuple[KafkaDrainPoint, list[KafkaPoint[str]]]:
    url = await fresh_database(base.database_url, "fielding_bench_open_loop_kafka")
    drain_runs = await create_runs(url, sizes.drain_commands)
    settings = await backlog_scenario(
        base, url, "open-loop-kafka", drain_runs, range(sizes.drain_commands)
    )
    watcher = ResultWatcher(settings)
    await watcher.start()
    worker = start_worker(settings)
    measured_processes = processes.plus(worker=worker.pid)
    try:
        drain = await measured_drain(watcher, measured_processes, sizes.drain_commands)
        rates = {"fixed": sizes.kafka_rate} | {
            name: drain.commands_per_second * fraction
            for name, fraction in sizes.kafka_fractions.items()
        }
        counts = {
            name: commands_at(rate, sizes.warmup_seconds, sizes.seconds)
            for name, rate in rates.items()
        }
        runs = await create_runs(url, sum(warm + timed for warm, timed in counts.values()))
        slices = Slices(runs)
        points = []
        for name, rate in rates.items():
            point = await measured_point(
                name, settings, watcher, slices, rate, counts[name], scratch, measured_processes
            )
            points.append(point)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        await watcher.stop()
    return drain, points


async def measured_drain(
    watcher: ResultWatcher, processes: Processes, commands: int
) -> KafkaDrainPoint:
    """The worker's rate on a backlog of `commands`, timed from its first results on (start-up
    and joining the group are not part of it), with each process's CPU meanwhile."""
    while watcher.count == 0:
        await watcher.wait_for(1)
    first, answered_at_first = time.monotonic(), watcher.count
    with Reading(processes) as reading:
        await watcher.wait_for(commands)
    drained = time.monotonic() - first
    timed = max(1, commands - answered_at_first)
    return KafkaDrainPoint(
        commands=commands,
        commands_per_second=timed / drained if drained > 0 else float("inf"),
        busy_cores=reading.busy_cores,
        cpu_us_per_command=reading.cpu_us_per(timed),
    )


def commands_at(rate: float, warmup_seconds: float, seconds: float) -> tuple[int, int]:
    """Commands of the warm-up and of the measured part at `rate` (two at least measured, so
    that the rate they were sent at can be read)."""
    return math.ceil(rate * warmup_seconds), max(2, math.ceil(rate * seconds))


async def measured_point(
    label: Label,
    settings: Settings,
    watcher: ResultWatcher,
    slices: Slices,
    rate: float,
    counts: tuple[int, int],
    scratch: Path,
    processes: Processes,
) -> KafkaPoint[Label]:
    """The point `label`: commands for runs of `slices` offered at `rate` by offer_from_process,
    first `counts[0]` unmeasured (a warm-up; none when 0), then `counts[1]` measured."""
    warm, timed = counts
    runs = slices.runs
    if warm:
        await offer_from_process(
            settings, watcher, runs, slices.take(warm), rate, scratch, processes
        )
    offered = await offer_from_process(
        settings, watcher, runs, slices.take(timed), rate, scratch, processes
    )
    return KafkaPoint(
        label=label,
        offered_per_second=rate,
        sent_per_second=offered.sent_per_second,
        commands=timed,
        p50_ms=percentile(offered.latencies_ms, 0.5),
        p99_ms=percentile(offered.latencies_ms, 0.99),
        busy_cores=offered.busy_cores,
        cpu_us_per_command=offered.cpu_us_per_command,
    )


@dataclass(frozen=True)
class Offered:
    latencies_ms: list[float]  # sorted
    sent_per_second: float
    busy_cores: float
    cpu_us_per_command: dict[str, float]


async def offer_from_process(
    settings: Settings,
    watcher: ResultWatcher,
    runs: Runs,
    indexes: range,
    rate: float,
    scratch: Path,
    processes: Processes,
) -> Offered:
    """The commands for `indexes`, produced at `rate` by bench/kafka_load.py in a process of
    its own; waits until every result is visible. Reads the CPU of `processes` from the
    producer's first send until the last result."""
    records = write_records(
        scratch / "records.jsonl",
        [(runs.ids[i], command_value(runs, i).decode()) for i in indexes],
    )
    sent_file = scratch / "sent.json"
    expected = watcher.count + len(indexes)
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.kafka_load",
        "--bootstrap-servers",
        settings.kafka_bootstrap_servers,
        "--topic",
        settings.commands_topic,
        "--rate",
        repr(rate),
        "--records",
        str(records),
        "--sent",
        str(sent_file),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "BENCH_AUTHORIZATION": auth_header()[0][1].decode()},
    )
    assert producer.stdout is not None
    # Reading results from before the producer's first send: each is timed as it shows.
    results = asyncio.create_task(watcher.wait_for(expected))
    exited = asyncio.create_task(producer.wait())
    try:
        if (await producer.stdout.readline()).strip() != b"ready":
            raise RuntimeError(f"the producer process exited with {await exited}")
        with Reading(processes) as reading:
            await asyncio.wait({results, exited}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done() and exited.result() != 0:
                raise RuntimeError(f"the producer process exited with {exited.result()}")
            await results  # the producer has sent everything by now, or soon will
        if await exited != 0:
            raise RuntimeError(f"the producer process exited with {exited.result()}")
    finally:
        results.cancel()
        if producer.returncode is None:
            producer.kill()
        await exited
    sent = json.loads(sent_file.read_text())
    keys = [runs.ids[i].encode() for i in indexes]
    span = sent[-1] - sent[0]  # two commands at least
    return Offered(
        latencies_ms=sorted(
            (watcher.seen[key] - t) * 1000 for key, t in zip(keys, sent, strict=True)
        ),
        sent_per_second=(len(sent) - 1) / max(span, 1e-6),
        busy_cores=reading.busy_cores,
        cpu_us_per_command=reading.cpu_us_per(len(indexes)),
    )
