"""Two ceilings for the worker: Kafka alone (consume -> produce, no database) and the database
alone (the worker's writes, batched, no Kafka)."""

from __future__ import annotations

import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.settings import Settings


async def kafka_consume_produce(settings: Settings, expected: int, timeout: float = 600) -> float:
    """Reads every command and produces one result-sized record for each; commits per batch.
    Returns the seconds it took."""
    consumer = AIOKafkaConsumer(settings.commands_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=settings.consumer_group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True,
                                linger_ms=5, max_batch_size=1 << 20)
    await consumer.start()
    await producer.start()
    done = 0
    started: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while done < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            if batch and started is None:
                started = time.monotonic()
            for records in batch.values():
                for record in records:
                    await producer.send(settings.results_topic, record.value, key=record.key)
                done += len(records)
            if batch:
                await producer.flush()
                await consumer.commit()
        return time.monotonic() - (started or time.monotonic())
    finally:
        await producer.stop()
        await consumer.stop()


async def database_alone(database_url: str, run_ids: list[str], batch: int = 500) -> float:
    """The worker's statements for `run_ids` (lock, compare-and-swap update, remember outcomes),
    one transaction per batch, no Kafka. Returns the seconds it took."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    started = time.monotonic()
    try:
        for start in range(0, len(run_ids), batch):
            ids = run_ids[start:start + batch]
            async with pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(
                    "SELECT id, version FROM fielding_runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids)
                await connection.execute(
                    """UPDATE fielding_runs r SET status = 'completed', version = u.version + 1
                       FROM unnest($1::text[], $2::int[]) AS u(id, version)
                       WHERE r.id = u.id AND r.version = u.version""",
                    [r["id"] for r in rows], [r["version"] for r in rows])
                await connection.execute(
                    """INSERT INTO command_outcomes (account_id, command_id, fingerprint, status, result,
                           source_topic, source_partition, source_offset)
                       SELECT 101, c, '\\x00', 204, '{"status": 204}', 'bench', 0, 0 FROM unnest($1::text[]) c""",
                    [uuid.uuid4().hex for _ in rows])
        return time.monotonic() - started
    finally:
        await pool.close()
