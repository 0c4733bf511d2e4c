"""The straightforward worker users would otherwise write: per command, a new
python-statemachine instance, one database transaction, one produce awaited, one offset commit."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from statemachine.exceptions import TransitionNotAllowed

from bench.fixtures import ResultWatcher, Runs, backlog_scenario
from bench.report import Throughput
from fielding_statemachine.machine import FieldingRunMachine
from fielding_statemachine.status import RunStatus
from schemas.command import CompleteFieldingRun
from worker.settings import Settings


async def run_naive(settings: Settings, expected: int, timeout: float = 600) -> None:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    consumer = AIOKafkaConsumer(
        settings.commands_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True
    )
    await consumer.start()
    await producer.start()
    done = 0
    deadline = time.monotonic() + timeout
    try:
        while done < expected and time.monotonic() < deadline:
            async for record in _records(consumer):
                command = CompleteFieldingRun.model_validate_json(record.value)
                async with pool.acquire() as connection, connection.transaction():
                    row = await connection.fetchrow(
                        "SELECT status, version FROM fielding_runs WHERE id = $1 FOR UPDATE",
                        command.fielding_run_id,
                    )
                    status = 404
                    if row is not None and row["version"] != command.expected_version:
                        status = 412
                    elif row is not None:
                        machine = FieldingRunMachine(start_value=RunStatus(row["status"]))
                        try:
                            machine.send("complete")
                            await connection.execute(
                                "UPDATE fielding_runs SET status = $2, version = version + 1 WHERE id = $1",
                                command.fielding_run_id,
                                machine.current_state_value.value,
                            )
                            status = 204
                        except TransitionNotAllowed:
                            status = 422
                result = {
                    "command_id": command.command_id,
                    "status": status,
                    "processed_at": datetime.now(UTC).isoformat(),
                }
                await producer.send_and_wait(
                    settings.results_topic,
                    json.dumps(result).encode(),
                    key=command.fielding_run_id.encode(),
                )
                tp = TopicPartition(record.topic, record.partition)
                await consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "")})
                done += 1
                if done >= expected:
                    break
    finally:
        await producer.stop()
        await consumer.stop()
        await pool.close()


async def bench_naive(
    base: Settings, database_url: str, runs: Runs, offset: int, n: int
) -> Throughput:
    """run_naive on a backlog of `n` commands, timed from its first result."""
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
    return Throughput(commands=n, commands_per_second=(n - 1) / drained)


async def _records(consumer: AIOKafkaConsumer):  # type: ignore[no-untyped-def]
    batch = await consumer.getmany(timeout_ms=200)
    for records in batch.values():
        for record in records:
            yield record


if __name__ == "__main__":
    import sys

    asyncio.run(run_naive(Settings(), int(sys.argv[1])))
