"""What every scenario stands on: a fresh database with runs to complete, topics of its own
with commands waiting on them, a reader of the results, and the worker as a process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.command import new_command
from schemas.types import new_ulid
from worker.adapters.kafka.admin import admin_client
from worker.adapters.kafka.lag import topic_partitions
from worker.adapters.postgres.migrate import upgrade
from worker.bootstrap import create_topics
from worker.service.auth import SYSTEM_ACTOR, TokenIssuer
from worker.settings import Settings

SECRET = "bench-secret-bench-secret-bench-secret-0123"
ACCOUNT = 101


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
                """INSERT INTO fielding_runs (id, account_id, project_id, target_group_id, status, version,
                                              start_fielding_at, end_fielding_at, last_changed_by)
                   SELECT id, $3, $4, tg, 'live', 1, now() - interval '1 day',
                          now() + interval '30 days', $5
                     FROM unnest($1::text[], $2::text[]) AS u(id, tg)""",
                ids[start : start + 50_000],
                groups[start : start + 50_000],
                ACCOUNT,
                project,
                SYSTEM_ACTOR,
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
            # Off stays off: the states scenario compares a drain without them.
            "states_topic": f"bench-states-{suffix}" if base.states_topic else "",
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
        # aiokafka's fetch wait (500 ms): a fetch parked on the broker is answered as soon as a
        # commit makes results visible. A short wait would add nothing to the latency measured
        # and would charge the broker's CPU for its polls to the worker's commands
        # (docs/decisions/reply-fetch-wait.md).
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def drop_bench_topics(bootstrap_servers: str) -> None:
    """Every scenario makes its own topics; left behind, they slow the broker's start-up."""
    async with admin_client(bootstrap_servers) as admin:
        ours = [t for t in await admin.list_topics() if t.startswith("bench-")]
        if ours:
            await admin.delete_topics(ours)
