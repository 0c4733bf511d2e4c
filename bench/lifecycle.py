"""Benchmarks of the whole lifecycle, beside the complete-only drain of `bench.drain`:

- a mixed backlog of every command type (lifecycle commands, updates, draft and bulk jobs);
- finding due runs with a large table and a small one, the same number due in each;
- a burst of runs coming due in the same second, until every one has its event.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.fixtures import ACCOUNT, fresh_database, start_worker
from bench.report import DueScale, Mixed, TimerBurst
from bench.system import cpu_seconds_of
from schemas.command import Command, new_command
from schemas.types import new_ulid
from worker.adapters.postgres.pool import create_pool
from worker.adapters.postgres.timers import PostgresDueRuns
from worker.bootstrap import create_topics
from worker.service.auth import SYSTEM_ACTOR
from worker.settings import Settings

# A mixed backlog, per ten commands: what each command type needs its run to be.
MIX = [
    ("complete_fielding_run", "live"),
    ("complete_fielding_run", "live"),
    ("pause_fielding_run", "live"),
    ("update_fielding_run", "live"),
    ("launch_now_fielding_run", "scheduled"),
    ("resume_fielding_run", "paused"),
    ("relaunch_fielding_run", "completed"),
    ("launch_fielding_run_from_draft", "draft"),
    ("schedule_fielding_run_from_draft", "draft"),
    ("pause_fielding_runs_by_target_group_ids", "live"),  # a bulk job of BULK_SIZE groups
]
BULK_SIZE = 10


@dataclass(frozen=True)
class Planned:
    commands: list[Command]
    runs_changed: int  # events to expect


async def insert_runs(
    connection: asyncpg.Connection,
    project: str,
    rows: list[tuple[str, str, str]],
    start: datetime,
    end: datetime,
) -> None:
    """(run id, target group, status) rows, version 1, with the given times."""
    for at in range(0, len(rows), 50_000):
        chunk = rows[at : at + 50_000]
        await connection.execute(
            """INSERT INTO fielding_runs (id, account_id, project_id, target_group_id, status,
                                          version, start_fielding_at, end_fielding_at,
                                          last_changed_by)
               SELECT id, $4, $5, tg, status, 1, $6, $7, $8
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, tg, status)""",
            [r[0] for r in chunk],
            [r[1] for r in chunk],
            [r[2] for r in chunk],
            ACCOUNT,
            project,
            start,
            end,
            SYSTEM_ACTOR,
        )


async def plan_mixed(database_url: str, n: int) -> Planned:
    """`n` commands of every type in the proportions of MIX, on runs made for them."""
    project = new_ulid()
    now = datetime.now(UTC)
    rows: list[tuple[str, str, str]] = []
    commands: list[Command] = []
    changed = 0
    for i in range(n):
        kind, status = MIX[i % len(MIX)]
        group = new_ulid()
        if status == "draft":
            fields: dict[str, Any] = {
                "target_group_id": group,
                "end_fielding_at": now + timedelta(days=2),
            }
            if kind.startswith("schedule"):
                fields["start_fielding_at"] = now + timedelta(days=1)
            commands.append(new_command(kind, account_id=ACCOUNT, project_id=project, **fields))
            changed += 1
            continue
        if kind.endswith("_by_target_group_ids"):
            groups = [new_ulid() for _ in range(BULK_SIZE)]
            rows += [(new_ulid(), g, status) for g in groups]
            commands.append(
                new_command(kind, account_id=ACCOUNT, project_id=project, target_group_ids=groups)
            )
            changed += BULK_SIZE
            continue
        run_id = new_ulid()
        rows.append((run_id, group, status))
        fields = {"target_group_id": group, "fielding_run_id": run_id, "if_match": 'W/"1"'}
        if kind == "update_fielding_run":
            fields |= {
                "start_fielding_at": now - timedelta(hours=1),
                "end_fielding_at": now + timedelta(days=3),
            }
        commands.append(new_command(kind, account_id=ACCOUNT, project_id=project, **fields))
        changed += 1
    connection = await asyncpg.connect(database_url)
    try:
        await insert_runs(
            connection, project, rows, now - timedelta(hours=1), now + timedelta(days=1)
        )
        await connection.execute("ANALYZE fielding_runs")
    finally:
        await connection.close()
    return Planned(commands, changed)


async def produce(settings: Settings, commands: list[Command], authorization: bytes) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        headers = [("authorization", authorization)]
        futures = [
            await producer.send(
                settings.commands_topic, c.model_dump_json().encode(), key=c.key, headers=headers
            )
            for c in commands
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class Counter:
    """Counts records on a topic as a read_committed reader sees them, noting when each came."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
        )
        self.count = 0
        self.keys: dict[bytes, int] = {}
        self.first: float | None = None

    async def start(self) -> None:
        await self._consumer.start()

    async def wait_for(self, total: int, timeout: float = 900) -> float:
        """Waits until `total` records were seen; returns when the last one came."""
        deadline = time.monotonic() + timeout
        while self.count < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {total} records after {timeout}s")
            for records in (
                await self._consumer.getmany(timeout_ms=50, max_records=20_000)
            ).values():
                if self.first is None:
                    self.first = time.monotonic()
                for record in records:
                    self.keys[record.key] = self.keys.get(record.key, 0) + 1
                self.count += len(records)
        return time.monotonic()

    async def settle(self, seconds: float = 2.0) -> None:
        """Reads on for a while: a duplicate arriving late is counted too."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for records in (await self._consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    self.keys[record.key] = self.keys.get(record.key, 0) + 1
                self.count += len(records)

    async def stop(self) -> None:
        await self._consumer.stop()


async def bench_mixed(
    settings: Settings,
    database_url: str,
    n: int,
    authorization: bytes,
) -> Mixed:
    """Drains a backlog of `n` commands of every type; commands/s and CPU per command, timed
    from the first result (as the complete-only drain is)."""
    plan = await plan_mixed(database_url, n)
    await create_topics(settings)
    await produce(settings, plan.commands, authorization)
    results = Counter(settings, settings.results_topic)
    await results.start()
    process = start_worker(settings)
    try:
        await results.wait_for(1)
        first = time.monotonic()
        cpu_at_first = cpu_seconds_of(process.pid)
        answered_at_first = results.count
        last = await results.wait_for(n)
        cpu = cpu_seconds_of(process.pid) - cpu_at_first
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await results.stop()
    timed = max(1, n - answered_at_first)
    return Mixed(
        commands=n,
        runs_changed=plan.runs_changed,
        commands_per_second=timed / max(1e-9, last - first),
        cpu_us_per_command=cpu * 1e6 / timed,
    )


async def bench_due_scale(
    admin_url: str, small: int, large: int, due: int, rounds: int = 20
) -> DueScale:
    """The time the scheduler's query takes to find `due` due runs (of each kind) in a table
    of `small` and of `large` runs; the rest are runs not yet due. Both tables are loaded and
    vacuumed first (as autovacuum keeps a table that has settled), then timed in alternating
    rounds, so that the machine's drift falls on both; medians of `rounds`."""
    now = datetime.now(UTC)
    pools: dict[int, asyncpg.Pool] = {}
    try:
        for size in (small, large):
            url = await fresh_database(admin_url, f"fielding_bench_due_{size}")
            await _load_due_runs(url, size, due, now)
            pools[size] = await create_pool(url, max_size=1)
        timings: dict[int, list[float]] = {small: [], large: []}
        for round_ in range(rounds):
            order = (small, large) if round_ % 2 == 0 else (large, small)  # neither always first
            for size in order:
                timings[size].append(await _find_due_runs(PostgresDueRuns(pools[size]), due))
    finally:
        for pool in pools.values():
            await pool.close()
    table_ms = {size: statistics.median(times) * 1000 for size, times in timings.items()}
    return DueScale(due, table_ms, large_vs_small_time=table_ms[large] / table_ms[small])


async def _load_due_runs(url: str, size: int, due: int, now: datetime) -> None:
    connection = await asyncpg.connect(url)
    try:
        project = new_ulid()
        later = [(new_ulid(), new_ulid(), "scheduled") for _ in range(size // 2 - due)]
        later += [(new_ulid(), new_ulid(), "live") for _ in range(size // 2 - due)]
        await insert_runs(
            connection, project, later, now + timedelta(days=1), now + timedelta(days=2)
        )
        starting = [(new_ulid(), new_ulid(), "scheduled") for _ in range(due)]
        ending = [(new_ulid(), new_ulid(), "live") for _ in range(due)]
        await insert_runs(
            connection, project, starting, now - timedelta(minutes=1), now + timedelta(days=1)
        )
        await insert_runs(
            connection, project, ending, now - timedelta(days=1), now - timedelta(minutes=1)
        )
        await connection.execute("VACUUM ANALYZE fielding_runs, fielding_run_timers")
    finally:
        await connection.close()


async def _find_due_runs(due_runs: PostgresDueRuns, due: int) -> float:
    """One round as the scheduler makes it: the seconds it took."""
    started = time.perf_counter()
    found = 0
    for kind in ("start", "end"):
        accounts = await due_runs.due_accounts(kind)
        found += len(await due_runs.due(kind, accounts))
    assert found == 2 * due, f"found {found} due runs, expected {2 * due}"
    return time.perf_counter() - started


async def bench_timer_burst(
    settings: Settings,
    database_url: str,
    n: int,
    lead_seconds: float = 8.0,
) -> TimerBurst:
    """`n` scheduled runs all starting in the same second: the seconds from that second until
    every run has its one `target_group_opened` event visible to a read_committed reader."""
    now = datetime.now(UTC)
    due_at = now + timedelta(seconds=lead_seconds)
    connection = await asyncpg.connect(database_url)
    try:
        rows = [(new_ulid(), new_ulid(), "scheduled") for _ in range(n)]
        await insert_runs(connection, new_ulid(), rows, due_at, due_at + timedelta(days=1))
        await connection.execute("ANALYZE fielding_runs")
    finally:
        await connection.close()
    await create_topics(settings)
    events = Counter(settings, settings.events_topic)
    await events.start()
    process = start_worker(settings)
    try:
        last = await events.wait_for(n, timeout=600)
        await events.settle()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        await events.stop()
    due_monotonic = time.monotonic() - (datetime.now(UTC) - due_at).total_seconds()
    return TimerBurst(
        runs=n,
        seconds_until_all_opened=last - due_monotonic,
        events=events.count,
        runs_with_one_event=sum(1 for c in events.keys.values() if c == 1),
    )
