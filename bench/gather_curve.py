"""The gathering window's curve (docs/decisions/batch-gathering.md):

    python -m bench.run --only gather-curve [--gather-ms 0 2 5 10 20] [--gather-rates 50 100 200 400]

For each value of FIELDING_BATCH_GATHER_MS, a worker of its own, on topics of its own, is offered
commands open-loop over Kafka by the producer process (bench/kafka_load.py) at each rate in
turn: a warm-up unmeasured, then the measured seconds. Each point has CPU per command for the
worker, the broker's JVM and Postgres (read from /proc, as in bench/open_loop.py) and p50/p99
from send() to the result visible to a read_committed reader. The window's default is the value
whose row meets the latency targets at the least CPU per command.
"""

from __future__ import annotations

import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.fixtures import (
    ResultWatcher,
    Runs,
    create_runs,
    fresh_database,
    scenario_settings,
    start_worker,
)
from bench.open_loop import (
    Processes,
    Slices,
    broker_jit,
    commands_at,
    measured_point,
    offer_from_process,
)
from bench.report import GatherCurve, KafkaPoint
from bench.system import broker_pid, local_services, postmaster_pid
from worker.bootstrap import create_topics
from worker.settings import Settings

# Commands offered to each new worker before its first rate: their results say it has joined
# its group, so that start-up is in no point, even without a warm-up.
READY_COMMANDS = 2


@dataclass(frozen=True)
class GatherSizes:
    gather_ms: list[float]  # the windows, a worker each
    rates: list[float]  # commands per second, offered to each worker in this order
    seconds: float  # measured, at each rate
    warmup_seconds: float  # unmeasured, at the same rate, before it

    def counts(self, rate: float) -> tuple[int, int]:
        """Commands of the warm-up and of the measured part at `rate`."""
        return commands_at(rate, self.warmup_seconds, self.seconds)

    def runs_per_worker(self) -> int:
        return READY_COMMANDS + sum(sum(self.counts(rate)) for rate in self.rates)


async def measure_gather_curve(base: Settings, sizes: GatherSizes) -> GatherCurve:
    services = local_services()
    broker = broker_pid(services)
    processes = Processes({"broker": broker, "postgres": postmaster_pid(services)})
    url = await fresh_database(base.database_url, "fielding_bench_gather")
    runs = await create_runs(url, sizes.runs_per_worker() * len(sizes.gather_ms))
    slices = Slices(runs)
    points: list[KafkaPoint[float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-gather-") as scratch:
        for gather_ms in sizes.gather_ms:
            settings = scenario_settings(base, url, f"gather-{gather_ms:g}ms").model_copy(
                update={"batch_gather_ms": gather_ms}
            )
            points += await one_window(settings, processes, runs, slices, sizes, Path(scratch))
    return GatherCurve(
        broker_jit=broker_jit(broker),
        seconds_per_point=sizes.seconds,
        warmup_seconds=sizes.warmup_seconds,
        points=points,
    )


async def one_window(
    settings: Settings,
    processes: Processes,
    runs: Runs,
    slices: Slices,
    sizes: GatherSizes,
    scratch: Path,
) -> list[KafkaPoint[float]]:
    """Every rate, offered to one worker run with `settings.batch_gather_ms`."""
    window = settings.batch_gather_ms
    await create_topics(settings)
    watcher = ResultWatcher(settings)
    await watcher.start()
    worker = start_worker(settings)
    measured = processes.plus(worker=worker.pid)
    points = []
    try:
        await offer_from_process(
            settings, watcher, runs, slices.take(READY_COMMANDS), 100.0, scratch, measured
        )
        for rate in sizes.rates:
            point = await measured_point(
                window, settings, watcher, slices, rate, sizes.counts(rate), scratch, measured
            )
            points.append(point)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        await watcher.stop()
    return points
