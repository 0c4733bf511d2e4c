"""The worker under test, a real process: a backlog drained, commands offered at load points
after it, and the drain again with a small and a large table and over a long run (memory)."""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import time

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.fixtures import (
    ResultWatcher,
    Runs,
    auth_header,
    backlog_scenario,
    command_value,
    create_runs,
    fresh_database,
    produce_commands,
    reopen_runs,
    scenario_settings,
    start_worker,
)
from bench.report import Drain, LoadPoint, Memory, Scale, ScaleRounds, WorkerFigures
from bench.system import busy_cores, cpu_jiffies, cpu_seconds_of, memory_mb
from worker.bootstrap import create_topics
from worker.settings import Settings

# Latency is measured at two offered loads, as fractions of the throughput just measured: the
# issue's half, and a tenth (what a worker sized with headroom sees). Each lasts about as long.
LOAD_POINTS = {"half": 0.5, "tenth": 0.1}


def load_point_commands(latency_n: int, fraction: float) -> int:
    """Commands offered at a load point: `latency_n` at half, as many seconds' worth elsewhere."""
    return max(1, int(latency_n * fraction / LOAD_POINTS["half"]))


def worker_runs(n: int, latency_n: int) -> int:
    """How many runs bench_worker completes: the backlog, then each load point's commands."""
    return n + sum(load_point_commands(latency_n, f) for f in LOAD_POINTS.values())


async def wal_syncs(database_url: str) -> int:
    await asyncio.sleep(1.5)  # backends report WAL statistics at most once a second
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT wal_sync FROM pg_stat_wal"))
    finally:
        await connection.close()


async def offer(
    settings: Settings, watcher: ResultWatcher, runs: Runs, indexes: range, rate: float
) -> list[float]:
    """Produces the commands for `indexes` at `rate` per second; returns each one's latency in
    ms, from send() to its result being visible to a read_committed reader."""
    # linger.ms=5 is the Java producer's default since Kafka 4.0 (KIP-1030), what an upstream
    # service would run; the 5 ms are inside the measured latency (timed from send()).
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    load = [
        (runs.ids[i].encode(), command_value(runs, i)) for i in indexes
    ]  # made before the clock runs
    sent: dict[bytes, float] = {}
    headers = auth_header()
    reading = asyncio.create_task(watcher.wait_for(watcher.count + len(load)))
    started = time.monotonic()
    try:
        for k, (key, value) in enumerate(load):
            if (pause := started + k / rate - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            sent[key] = time.time()
            await producer.send(settings.commands_topic, value, key=key, headers=headers)
    finally:
        await producer.stop()
    await reading
    return sorted((watcher.seen[key] - t) * 1000 for key, t in sent.items())


async def timed_drain(watcher: ResultWatcher, process: subprocess.Popen[bytes], n: int) -> Drain:
    """How fast `process` answers a backlog of `n` commands: timed from the first results on
    (start-up and joining the group are not part of the rate), counting only the commands
    answered after them; its CPU per command, and how busy the machine was."""
    while watcher.count == 0:
        await watcher.wait_for(1)
    first, cpu_at_first, answered_at_first = (
        time.monotonic(),
        cpu_seconds_of(process.pid),
        watcher.count,
    )
    machine_at_first = cpu_jiffies()
    await watcher.wait_for(n)
    drained = time.monotonic() - first
    cpu_seconds = cpu_seconds_of(process.pid) - cpu_at_first
    timed = max(1, n - answered_at_first)
    return Drain(
        commands_per_second=timed / drained if drained > 0 else float("inf"),
        cpu_us_per_command=cpu_seconds * 1e6 / timed,
        busy_cores=busy_cores(machine_at_first, cpu_jiffies()),
    )


async def bench_worker(
    base: Settings, database_url: str, runs: Runs, n: int, latency_n: int
) -> WorkerFigures:
    """Drains a backlog of `n` commands, then offers commands at each load point (`latency_n`
    at half the measured rate); the commands complete runs 0, 1, 2, ..."""
    settings = await backlog_scenario(base, database_url, "worker", runs, range(n))
    watcher = ResultWatcher(settings)
    await watcher.start()
    wal_before = await wal_syncs(database_url)
    process = start_worker(settings)
    try:
        drain = await timed_drain(watcher, process, n)
        throughput = drain.commands_per_second
        wal_after = await wal_syncs(database_url)
        points: dict[str, LoadPoint] = {}
        next_run = n
        for name, fraction in LOAD_POINTS.items():
            count = load_point_commands(latency_n, fraction)
            machine_before = cpu_jiffies()
            latencies = await offer(
                settings, watcher, runs, range(next_run, next_run + count), throughput * fraction
            )
            busy = busy_cores(machine_before, cpu_jiffies())
            next_run += count
            points[name] = LoadPoint(
                offered_per_second=throughput * fraction,
                commands=count,
                busy_cores=busy,
                p50_ms=statistics.median(latencies),
                p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            )
        peak_rss_mb = memory_mb(process.pid, "VmHWM")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await watcher.stop()
    return WorkerFigures(
        commands=n,
        drain=drain,
        wal_syncs=wal_after - wal_before,
        commands_per_wal_sync=n / max(1, wal_after - wal_before),
        half=points["half"],
        tenth=points["tenth"],
        peak_rss_mb=peak_rss_mb,
    )


async def bench_scale(
    base: Settings, commands: int, small: int, large: int, rounds: int = 3
) -> Scale:
    """Throughput with a small and a large fielding_runs table, the same command count each,
    in rounds that alternate between the two tables, so that the machine's drift hits both
    alike. Each round completes the same runs, reopened before it: the small table has room
    for only so many commands, and shorter rounds are too short to time. Compares the medians."""
    per_round = min(commands, small - worker_runs(0, 10))
    tables: dict[int, tuple[str, Runs]] = {}
    for size in (small, large):
        url = await fresh_database(base.database_url, f"fielding_bench_{size}")
        tables[size] = (url, await create_runs(url, size))
    measured: dict[int, list[Drain]] = {small: [], large: []}
    for _ in range(rounds):
        for size, (url, runs) in tables.items():
            await reopen_runs(url)
            measured[size].append((await bench_worker(base, url, runs, per_round, 10)).drain)
    by_size = {
        size: ScaleRounds(
            commands_per_second=[d.commands_per_second for d in drains],
            cpu_us_per_command=[d.cpu_us_per_command for d in drains],
        )
        for size, drains in measured.items()
    }
    return Scale(
        commands_per_round=per_round,
        rounds=rounds,
        tables=by_size,
        large_vs_small_throughput=ratio_of_medians(
            by_size[large].commands_per_second, by_size[small].commands_per_second
        ),
        large_vs_small_cpu_per_command=ratio_of_medians(
            by_size[large].cpu_us_per_command, by_size[small].cpu_us_per_command
        ),
    )


def ratio_of_medians(numerator: list[float], denominator: list[float]) -> float:
    return float(statistics.median(numerator)) / float(statistics.median(denominator))


async def bench_memory(base: Settings, checkpoints: list[int]) -> Memory:
    """The worker's resident memory after each checkpoint's number of commands, in one process."""
    total = checkpoints[-1]
    url = await fresh_database(base.database_url, "fielding_bench_memory")
    runs = await create_runs(url, total)
    settings = scenario_settings(base, url, "memory")
    await create_topics(settings)
    watcher = ResultWatcher(settings)
    await watcher.start()
    process = start_worker(settings)
    rss_mb_after: dict[int, float] = {}
    try:
        done = 0
        for checkpoint in checkpoints:
            for start in range(done, checkpoint, 50_000):
                await produce_commands(
                    settings, runs, range(start, min(checkpoint, start + 50_000))
                )
            await watcher.wait_for(checkpoint, timeout=1800)
            watcher.seen.clear()  # the bench's own memory, not the worker's
            done = checkpoint
            rss_mb_after[checkpoint] = memory_mb(process.pid, "VmRSS")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await watcher.stop()
    first, last = checkpoints[0], checkpoints[-1]
    return Memory(rss_mb_after, rss_last_vs_first=rss_mb_after[last] / rss_mb_after[first])
