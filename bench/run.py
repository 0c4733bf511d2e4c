"""One command, one run, side by side on the local real services:

    python -m bench.run [--commands N] [--naive-commands N] [--latency-commands N] [--scale] [--smoke]

1. the worker under test (`fielding-worker run`, a real process);
2. a naive baseline (bench/naive.py);
3. two ceilings: Kafka consume -> produce without a database, and the database work alone;
4. a mixed backlog of every command type, a burst of timers (bench/lifecycle.py), and HTTP
   requests beside Kafka commands at one rate (bench/http.py).

Reports sustained commands/s, p50/p99 latency (command produced -> result visible to a
read_committed consumer) at half and at a tenth of the worker's throughput, peak memory,
commands per WAL flush, and the ratios, as a table and as JSON (bench/results/latest.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.ceilings import database_alone, kafka_consume_produce, kafka_loops
from bench.http import bench_http
from bench.lifecycle import bench_due_scale, bench_mixed, bench_timer_burst
from bench.naive import run_naive
from bench.tracing import bench_tracing
from schemas.command import new_command
from schemas.types import new_ulid
from worker.adapters.kafka.admin import admin_client
from worker.adapters.kafka.lag import topic_partitions
from worker.adapters.postgres.migrate import upgrade
from worker.bootstrap import create_topics
from worker.service.auth import TokenIssuer
from worker.settings import Settings

SECRET = "bench-secret-bench-secret-bench-secret-0123"
ACCOUNT = 101
RESULTS = Path(__file__).parent / "results"


@dataclass
class Runs:
    ids: list[str]
    project_id: str
    target_groups: list[str]


async def fresh_database(admin_url: str, name: str) -> str:
    connection = await asyncpg.connect(admin_url)
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(upgrade, url)
    return url


async def create_runs(database_url: str, count: int) -> Runs:
    project = new_ulid()
    ids = [new_ulid() for _ in range(count)]
    groups = [new_ulid() for _ in range(count)]
    connection = await asyncpg.connect(database_url)
    try:
        for start in range(0, count, 50_000):
            await connection.execute(
                """INSERT INTO fielding_runs (id, account_id, project_id, target_group_id, status, version)
                   SELECT id, $3, $4, tg, 'live', 1 FROM unnest($1::text[], $2::text[]) AS u(id, tg)""",
                ids[start : start + 50_000],
                groups[start : start + 50_000],
                ACCOUNT,
                project,
            )
        await connection.execute("ANALYZE fielding_runs")
    finally:
        await connection.close()
    return Runs(ids, project, groups)


async def reopen_runs(database_url: str) -> None:
    """Every run the bench completed is live at version 1 again (the others are untouched), so
    that a round can complete them anew."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE fielding_runs SET status = 'live', version = 1 WHERE version <> 1"
        )
    finally:
        await connection.close()


def command_value(runs: Runs, index: int, kind: str = "complete_fielding_run") -> bytes:
    command = new_command(
        kind,
        account_id=ACCOUNT,
        project_id=runs.project_id,
        target_group_id=runs.target_groups[index],
        fielding_run_id=runs.ids[index],
        if_match='W/"1"',
    )
    return command.model_dump_json().encode()


def auth_header() -> list[tuple[str, bytes]]:
    return [("authorization", TokenIssuer(SECRET).bearer([ACCOUNT], lifetime_seconds=86400))]


def scenario_settings(base: Settings, database_url: str, name: str) -> Settings:
    suffix = f"{name}-{uuid.uuid4().hex[:6]}"
    return base.model_copy(
        update={
            "database_url": database_url,
            "commands_topic": f"bench-commands-{suffix}",
            "results_topic": f"bench-results-{suffix}",
            "events_topic": f"bench-events-{suffix}",
            "dlq_topic": f"bench-dlq-{suffix}",
            "consumer_group": f"bench-{suffix}",
        }
    )


async def produce_commands(settings: Settings, runs: Runs, indexes: range) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        linger_ms=20,
        max_batch_size=1 << 20,
        acks="all",
    )
    await producer.start()
    headers = auth_header()
    try:
        futures = [
            await producer.send(
                settings.commands_topic,
                command_value(runs, i),
                key=runs.ids[i].encode(),
                headers=headers,
            )
            for i in indexes
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def backlog_scenario(
    base: Settings, database_url: str, name: str, runs: Runs, indexes: range
) -> Settings:
    """A scenario's own topics, with the commands for `indexes` already waiting on them."""
    settings = scenario_settings(base, database_url, name)
    await create_topics(settings)
    await produce_commands(settings, runs, indexes)
    return settings


class ResultWatcher:
    """A read_committed consumer of the results topic noting when each result became visible."""

    def __init__(self, settings: Settings) -> None:
        # A short fetch wait: a read_committed fetch parked on the broker is not woken by a
        # commit marker, so a long wait would measure the reader, not the worker.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_wait_ms=5,
        )
        self._topic = settings.results_topic
        self._bootstrap_servers = settings.kafka_bootstrap_servers
        # When each result became visible, by its key: the run it answers, and every command
        # of the bench completes a run of its own. (Cheaper than parsing each result: the
        # reader shares the machine with what it measures.)
        self.seen: dict[bytes, float] = {}
        self.count = 0

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await all_partitions(self._bootstrap_servers, self._topic)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)

    async def wait_for(self, total: int, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while self.count < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {total} results after {timeout}s")
            batch = await self._consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.time()
            for records in batch.values():
                for record in records:
                    self.seen[record.key] = now
                self.count += len(records)

    async def stop(self) -> None:
        await self._consumer.stop()


async def all_partitions(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    async with admin_client(bootstrap_servers) as admin:
        return await topic_partitions(admin, topic)


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status in MB: VmRSS now, VmHWM at its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds_of(pid: int) -> float:
    """CPU time a process's threads have had so far, in nanosecond resolution (schedstat);
    threads that have exited are not counted, which the worker's never do mid-run."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(fields)
    return total - fields[3] - fields[4], total  # idle and iowait are not busy


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many of the machine's cores were busy between two cpu_jiffies() readings, by
    anything: the worker, the broker, Postgres and the bench itself."""
    return (after[0] - before[0]) / max(1, after[1] - before[1]) * (os.cpu_count() or 1)


async def wal_syncs(database_url: str) -> int:
    await asyncio.sleep(1.5)  # backends report WAL statistics at most once a second
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT wal_sync FROM pg_stat_wal"))
    finally:
        await connection.close()


def start_worker(settings: Settings, command: str = "run", **env: str) -> subprocess.Popen[bytes]:
    """`fielding-worker run` (or another command, such as `serve`) as a process of its own."""
    environment = {
        **os.environ,
        **settings.as_environment(),
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "FIELDING_RATE_LIMIT": "0",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker.entrypoints.cli", command], env=environment
    )


# Latency is measured at two offered loads, as fractions of the throughput just measured: the
# issue's half, and a tenth (what a worker sized with headroom sees). Each lasts about as long.
LOAD_POINTS = {"half": 0.5, "tenth": 0.1}


def load_point_commands(latency_n: int, fraction: float) -> int:
    """Commands offered at a load point: `latency_n` at half, as many seconds' worth elsewhere."""
    return max(1, int(latency_n * fraction / LOAD_POINTS["half"]))


def worker_runs(n: int, latency_n: int) -> int:
    """How many runs bench_worker completes: the backlog, then each load point's commands."""
    return n + sum(load_point_commands(latency_n, f) for f in LOAD_POINTS.values())


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


async def bench_worker(
    base: Settings, database_url: str, runs: Runs, n: int, latency_n: int
) -> dict[str, Any]:
    """Drains a backlog of `n` commands, then offers commands at each load point (`latency_n`
    at half the measured rate); the commands complete runs 0, 1, 2, ..."""
    settings = await backlog_scenario(base, database_url, "worker", runs, range(n))
    watcher = ResultWatcher(settings)
    await watcher.start()
    wal_before = await wal_syncs(database_url)
    process = start_worker(settings)
    report: dict[str, Any] = {"commands": n}
    try:
        report.update(await timed_drain(watcher, process, n))
        throughput = report["commands_per_second"]
        wal_after = await wal_syncs(database_url)
        report.update(
            {
                "wal_syncs": wal_after - wal_before,
                "commands_per_wal_sync": n / max(1, wal_after - wal_before),
            }
        )
        next_run = n
        for name, fraction in LOAD_POINTS.items():
            count = load_point_commands(latency_n, fraction)
            machine_before = cpu_jiffies()
            latencies = await offer(
                settings, watcher, runs, range(next_run, next_run + count), throughput * fraction
            )
            busy = busy_cores(machine_before, cpu_jiffies())
            next_run += count
            prefix = "latency" if name == "half" else f"latency_{name}"
            report.update(
                {
                    f"{prefix}_offered_per_second": throughput * fraction,
                    f"{prefix}_commands": count,
                    f"{prefix}_busy_cores": busy,
                    f"{prefix}_p50_ms": statistics.median(latencies),
                    f"{prefix}_p99_ms": latencies[
                        min(len(latencies) - 1, int(len(latencies) * 0.99))
                    ],
                }
            )
        report["peak_rss_mb"] = memory_mb(process.pid, "VmHWM")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await watcher.stop()
    return report


async def timed_drain(
    watcher: ResultWatcher, process: subprocess.Popen[bytes], n: int
) -> dict[str, float]:
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
    return {
        "commands_per_second": timed / drained if drained > 0 else float("inf"),
        "cpu_us_per_command": cpu_seconds * 1e6 / timed,
        "busy_cores": busy_cores(machine_at_first, cpu_jiffies()),
    }


async def bench_naive(
    base: Settings, database_url: str, runs: Runs, offset: int, n: int
) -> dict[str, Any]:
    settings = await backlog_scenario(base, database_url, "naive", runs, range(offset, offset + n))
    watcher = ResultWatcher(settings)
    await watcher.start()
    task = asyncio.create_task(run_naive(settings, n))
    await watcher.wait_for(1)
    first = time.monotonic()
    await watcher.wait_for(n)
    drained = time.monotonic() - first
    await task
    await watcher.stop()
    return {"commands": n, "commands_per_second": (n - 1) / drained}


async def bench_kafka_ceiling(
    base: Settings, database_url: str, runs: Runs, n: int
) -> dict[str, Any]:
    """One loop, as the issue asks; then two loop processes on as many commands again."""
    settings = await backlog_scenario(base, database_url, "kafka", runs, range(n))
    machine_before = cpu_jiffies()
    one = await kafka_consume_produce(settings, n)
    report = {
        "commands": n,
        "commands_per_second": n / (one.last - one.first),
        "cpu_us_per_command": one.cpu_seconds * 1e6 / n,
        "busy_cores": busy_cores(machine_before, cpu_jiffies()),
    }
    settings = await backlog_scenario(base, database_url, "kafka-2", runs, range(n))
    loops = await asyncio.to_thread(kafka_loops, settings, 2, n)
    if sum(loop.records for loop in loops) != n:
        raise RuntimeError(f"two loops consumed {[loop.records for loop in loops]} of {n} commands")
    busy_loops = [loop for loop in loops if loop.records]  # at tiny sizes one loop may take all
    span = max(loop.last for loop in busy_loops) - min(loop.first for loop in busy_loops)
    report["two_loops_commands_per_second"] = n / span
    return report


async def bench_database_ceiling(
    database_url: str, runs: Runs, offset: int, n: int
) -> dict[str, Any]:
    seconds = await database_alone(database_url, runs.ids[offset : offset + n])
    return {"commands": n, "commands_per_second": n / seconds}


async def drop_bench_topics(bootstrap_servers: str) -> None:
    """Every scenario makes its own topics; left behind, they slow the broker's start-up."""
    async with admin_client(bootstrap_servers) as admin:
        ours = [t for t in await admin.list_topics() if t.startswith("bench-")]
        if ours:
            await admin.delete_topics(ours)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings(jwt_secret=SECRET, system_jwt_secret=SECRET[::-1], rate_limit_per_account=0)
    if args.smoke:  # several batches even at tiny sizes, so that a drain can be timed
        base = base.model_copy(update={"max_batch": 50})
    try:
        return await measure(base, args)
    finally:
        await drop_bench_topics(base.kafka_bootstrap_servers)


async def measure(base: Settings, args: argparse.Namespace) -> dict[str, Any]:
    n, naive_n, latency_n = args.commands, args.naive_commands, args.latency_commands
    database_url = await fresh_database(base.database_url, "fielding_bench")
    used_by_worker = worker_runs(n, latency_n)
    runs = await create_runs(database_url, used_by_worker + naive_n + n)
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "sizes": vars(args)}
    report["worker"] = await bench_worker(base, database_url, runs, n, latency_n)
    report["naive"] = await bench_naive(base, database_url, runs, used_by_worker, naive_n)
    report["kafka_ceiling"] = await bench_kafka_ceiling(base, database_url, runs, n)
    report["database_ceiling"] = await bench_database_ceiling(
        database_url, runs, used_by_worker + naive_n, n
    )
    report["mixed"] = await bench_mixed(
        scenario_settings(base, database_url, "mixed").model_copy(
            update={"scheduler_interval_seconds": 0}  # the backlog's runs, not timers
        ),
        database_url,
        args.mixed_commands,
        auth_header()[0][1],
        start_worker,
        cpu_seconds_of,
    )
    report["http"] = await measure_http(base, args.http_requests, args.http_rate)
    report["tracing"] = await measure_tracing(base, args.tracing_commands)
    timers_url = await fresh_database(base.database_url, "fielding_bench_timers")
    report["timers"] = await bench_timer_burst(
        scenario_settings(base, timers_url, "timers"), timers_url, args.timer_runs, start_worker
    )
    if args.scale:
        report["scale"] = await bench_scale(base, args)
        report["due_scale"] = await bench_due_scale(
            base.database_url,
            fresh_database,
            args.scale_small_table,
            args.scale_large_table,
            args.due_runs,
        )
    if args.memory:
        report["memory"] = await bench_memory(base, args.memory)
    w = report["worker"]["commands_per_second"]
    report["ratios"] = {
        "worker_vs_naive": w / report["naive"]["commands_per_second"],
        "worker_vs_kafka_ceiling": w / report["kafka_ceiling"]["commands_per_second"],
        "worker_vs_database_ceiling": w / report["database_ceiling"]["commands_per_second"],
        # Whether the Kafka ceiling is the broker's: near 2, it is one Python client's CPU.
        "kafka_ceiling_two_loops_vs_one": report["kafka_ceiling"]["two_loops_commands_per_second"]
        / report["kafka_ceiling"]["commands_per_second"],
        "worker_vs_kafka_loop_cpu_per_command": report["worker"]["cpu_us_per_command"]
        / report["kafka_ceiling"]["cpu_us_per_command"],
        "mixed_vs_complete_throughput": report["mixed"]["commands_per_second"] / w,
    }
    return report


async def measure_http(base: Settings, requests: int, rate: float) -> dict[str, Any]:
    """bench/http.py on runs of its own: `requests` HTTP complete requests and as many Kafka
    commands, at `rate` per second each."""
    url = await fresh_database(base.database_url, "fielding_bench_http")
    runs = await create_runs(url, 2 * requests)
    settings = scenario_settings(base, url, "http")
    settings = settings.model_copy(update={"replies_topic": f"{settings.commands_topic}-replies"})
    await create_topics(settings)
    watcher = ResultWatcher(settings)
    await watcher.start()
    kafka_runs = iter(range(requests, 2 * requests))

    async def offer_kafka(count: int, per_second: float, answered: int) -> list[float]:
        await watcher.wait_for(answered)
        indexes = [next(kafka_runs) for _ in range(count)]
        return await offer(settings, watcher, runs, range(indexes[0], indexes[-1] + 1), per_second)

    paths = [
        f"/v1/demand/accounts/{ACCOUNT}/projects/{runs.project_id}/target-groups/"
        f"{runs.target_groups[i]}/fielding-runs/{runs.ids[i]}/complete"
        for i in range(requests)
    ]
    headers = {
        "Authorization": auth_header()[0][1].decode(),
        "Cint-API-Version": "2025-12-18",
        "If-Match": 'W/"1"',
    }
    try:
        return await bench_http(
            settings, free_port(), paths, headers, offer_kafka, start_worker, rate
        )
    finally:
        await watcher.stop()


async def measure_tracing(base: Settings, per_drain: int) -> dict[str, Any]:
    """bench/tracing.py: each drain on its own topics, over runs of its own."""
    url = await fresh_database(base.database_url, "fielding_bench_tracing")
    rounds = 2
    runs = await create_runs(url, per_drain * rounds * 3)
    next_run = iter(range(0, per_drain * rounds * 3, per_drain))

    async def drain(n: int, env: dict[str, str]) -> dict[str, float]:
        start = next(next_run)
        settings = await backlog_scenario(base, url, "tracing", runs, range(start, start + n))
        watcher = ResultWatcher(settings)
        await watcher.start()
        process = start_worker(settings, **env)
        try:
            return await timed_drain(watcher, process, n)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            await watcher.stop()

    return await bench_tracing(drain, per_drain, rounds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def bench_scale(base: Settings, args: argparse.Namespace, rounds: int = 3) -> dict[str, Any]:
    """Throughput with a small and a large fielding_runs table, the same command count each,
    in rounds that alternate between the two tables, so that the machine's drift hits both
    alike. Each round completes the same runs, reopened before it: the small table has room
    for only so many commands, and shorter rounds are too short to time. Compares the medians."""
    small, large = args.scale_small_table, args.scale_large_table
    per_round = min(args.commands, small - worker_runs(0, 10))
    tables: dict[int, tuple[str, Runs]] = {}
    for size in (small, large):
        url = await fresh_database(base.database_url, f"fielding_bench_{size}")
        tables[size] = (url, await create_runs(url, size))
    measured: dict[int, list[dict[str, Any]]] = {small: [], large: []}
    for _ in range(rounds):
        for size, (url, runs) in tables.items():
            await reopen_runs(url)
            measured[size].append(await bench_worker(base, url, runs, per_round, 10))
    out: dict[str, Any] = {"commands_per_round": per_round, "rounds": rounds}
    for size, results in measured.items():
        out[f"table_{size}"] = {
            "commands_per_second": [r["commands_per_second"] for r in results],
            "cpu_us_per_command": [r["cpu_us_per_command"] for r in results],
        }

    def median_of(size: int, figure: str) -> float:
        return float(statistics.median(out[f"table_{size}"][figure]))

    out["large_vs_small_throughput"] = median_of(large, "commands_per_second") / median_of(
        small, "commands_per_second"
    )
    out["large_vs_small_cpu_per_command"] = median_of(large, "cpu_us_per_command") / median_of(
        small, "cpu_us_per_command"
    )
    return out


async def bench_memory(base: Settings, checkpoints: list[int]) -> dict[str, Any]:
    """The worker's resident memory after each checkpoint's number of commands, in one process."""
    total = checkpoints[-1]
    url = await fresh_database(base.database_url, "fielding_bench_memory")
    runs = await create_runs(url, total)
    settings = scenario_settings(base, url, "memory")
    await create_topics(settings)
    watcher = ResultWatcher(settings)
    await watcher.start()
    process = start_worker(settings)
    out: dict[str, Any] = {}
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
            out[f"rss_mb_after_{checkpoint}"] = memory_mb(process.pid, "VmRSS")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await watcher.stop()
    first, last = checkpoints[0], checkpoints[-1]
    out["rss_last_vs_first"] = out[f"rss_mb_after_{last}"] / out[f"rss_mb_after_{first}"]
    return out


def table(report: dict[str, Any]) -> str:
    rows = [("scenario", "commands", "commands/s")]
    for name in ("worker", "naive", "kafka_ceiling", "database_ceiling"):
        rows.append(
            (name, str(report[name]["commands"]), f"{report[name]['commands_per_second']:,.0f}")
        )
        if name == "kafka_ceiling":
            rows.append(
                (
                    "kafka_ceiling, 2 loop processes",
                    str(report[name]["commands"]),
                    f"{report[name]['two_loops_commands_per_second']:,.0f}",
                )
            )
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(r)) for r in rows]
    w = report["worker"]
    lines += [
        "",
        f"worker latency at {w['latency_offered_per_second']:,.0f}/s offered (half): "
        f"p50 {w['latency_p50_ms']:.1f} ms, p99 {w['latency_p99_ms']:.1f} ms",
        f"worker latency at {w['latency_tenth_offered_per_second']:,.0f}/s offered (a tenth): "
        f"p50 {w['latency_tenth_p50_ms']:.1f} ms, p99 {w['latency_tenth_p99_ms']:.1f} ms",
        f"worker peak RSS {w['peak_rss_mb']:.0f} MB; {w['commands_per_wal_sync']:.1f} commands per WAL sync; "
        f"{w['cpu_us_per_command']:.0f} µs CPU per command "
        f"(the Kafka ceiling's loop: {report['kafka_ceiling']['cpu_us_per_command']:.0f} µs)",
        f"busy cores of {os.cpu_count()}: drain {w['busy_cores']:.2f}, half {w['latency_busy_cores']:.2f}, "
        f"tenth {w['latency_tenth_busy_cores']:.2f}, Kafka ceiling {report['kafka_ceiling']['busy_cores']:.2f}",
        *(f"{k}: {v:.2f}" for k, v in report["ratios"].items()),
    ]
    if "scale" in report:
        scale = report["scale"]
        lines.append(
            f"scale: large/small table throughput {scale['large_vs_small_throughput']:.2f}, "
            f"CPU per command {scale['large_vs_small_cpu_per_command']:.2f}"
        )
    mixed, timers = report["mixed"], report["timers"]
    lines.append(
        f"mixed backlog of every command type: {mixed['commands_per_second']:,.0f} commands/s, "
        f"{mixed['cpu_us_per_command']:.0f} µs CPU per command ({mixed['runs_changed']} runs changed)"
    )
    lines.append(
        f"{timers['runs']:,} runs due in one second: all opened {timers['seconds_until_all_opened']:.1f} s "
        f"after it; {timers['events']:,} events, {timers['runs_with_one_event']:,} runs with exactly one"
    )
    http = report["http"]
    lines.append(
        f"HTTP complete at {http['offered_per_second']:,.0f}/s: p50 {http['http_p50_ms']:.1f} ms, "
        f"p99 {http['http_p99_ms']:.1f} ms; Kafka at the same rate, same worker: "
        f"p50 {http['kafka_p50_ms']:.1f} ms, p99 {http['kafka_p99_ms']:.1f} ms "
        f"(HTTP/Kafka p50 {http['http_vs_kafka_p50']:.2f}, p99 {http['http_vs_kafka_p99']:.2f})"
    )
    tracing = report["tracing"]
    lines.append(
        "tracing, against off: "
        f"on at 100% throughput {tracing['on_100_vs_off_throughput']:.2f}, CPU per command "
        f"{tracing['on_100_vs_off_cpu_per_command']:.2f}; on at 10% throughput "
        f"{tracing['on_10_vs_off_throughput']:.2f}, CPU per command "
        f"{tracing['on_10_vs_off_cpu_per_command']:.2f} "
        f"({tracing['off']['cpu_us_per_command']:.0f} µs CPU per command off)"
    )
    if "due_scale" in report:
        due = report["due_scale"]
        lines.append(
            f"finding {due['due']} due runs of each kind: large/small table time "
            f"{due['large_vs_small_time']:.2f}"
        )
    if "memory" in report:
        lines.append("memory: " + ", ".join(f"{k} {v:.2f}" for k, v in report["memory"].items()))
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description="fielding-worker benchmark")
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--naive-commands", type=int, default=1_000)
    parser.add_argument(
        "--latency-commands",
        type=int,
        default=20_000,
        help="commands offered at half the throughput (proportionally fewer at a tenth)",
    )
    parser.add_argument(
        "--scale", action="store_true", help="also compare a 10k and a 1M-run table"
    )
    parser.add_argument("--scale-small-table", type=int, default=10_000)
    parser.add_argument("--scale-large-table", type=int, default=1_000_000)
    parser.add_argument(
        "--memory",
        type=int,
        nargs="+",
        metavar="N",
        help="worker RSS after each N commands in one process, e.g. 100000 1000000",
    )
    parser.add_argument(
        "--mixed-commands", type=int, default=50_000, help="a backlog of every command type"
    )
    parser.add_argument(
        "--timer-runs", type=int, default=100_000, help="runs coming due in the same second"
    )
    parser.add_argument(
        "--due-runs", type=int, default=1_000, help="due runs of each kind in the scale check"
    )
    parser.add_argument(
        "--http-requests",
        type=int,
        default=3_000,
        help="HTTP complete requests (and as many Kafka commands)",
    )
    parser.add_argument(
        "--http-rate", type=float, default=100.0, help="requests per second offered to serve"
    )
    parser.add_argument(
        "--tracing-commands", type=int, default=20_000, help="commands per drain, tracing on or off"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    if args.smoke:  # every figure, at tiny sizes
        args.commands, args.naive_commands, args.latency_commands = 300, 50, 50
        args.scale, args.scale_small_table, args.scale_large_table = True, 400, 4_000
        args.memory = [300, 900]
        args.mixed_commands, args.timer_runs, args.due_runs = 200, 300, 20
        args.http_requests, args.http_rate = 60, 50.0
        args.tracing_commands = 200
    if args.tracing_commands < 200:  # shorter drains read no CPU time at all
        parser.error("--tracing-commands: at least 200")
    report = asyncio.run(main(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    cli()
