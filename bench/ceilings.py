"""Two ceilings for the worker: Kafka alone (consume -> produce, no database) and the database
alone (the worker's own reads and writes, batched, no Kafka)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.fixtures import ACCOUNT, Runs, backlog_scenario
from bench.report import KafkaCeiling, Throughput
from bench.system import busy_cores, cpu_jiffies
from fielding_statemachine.decisions import RunState
from fielding_statemachine.status import RunStatus
from worker.adapters.postgres.command_store import PostgresCommandStore
from worker.adapters.postgres.pool import create_pool
from worker.service.ports import Output, RecordOrigin, RememberedOutcome, RunChange
from worker.settings import Settings

# Outcomes the size of the worker's (a 204 result and its event).
RESULT = (
    b'{"command_id":"01KB4Z5T6X2M8D3F0QK7N9R1WE","type":"complete_fielding_run","status":204,'
    b'"etag":"W/\\"2\\"","error":null,"retry_after_seconds":null,"account_id":101,'
    b'"project_id":"01KB4Z5T6X2M8D3F0QK7N9R1WF","target_group_id":"01KB4Z5T6X2M8D3F0QK7N9R1WG",'
    b'"fielding_run_id":"01KB4Z5T6X2M8D3F0QK7N9R1WH","processed_at":"2026-11-29T08:00:00.000Z"}'
)
EVENT = (
    b'{"event_id":"6f1c2d4e-8a9b-4c0d-9e1f-2a3b4c5d6e7f","type":"target_group_closed","account_id":101,'
    b'"project_id":"01KB4Z5T6X2M8D3F0QK7N9R1WF","target_group_id":"01KB4Z5T6X2M8D3F0QK7N9R1WG",'
    b'"fielding_run_id":"01KB4Z5T6X2M8D3F0QK7N9R1WH","reason":"fielding_run_completed",'
    b'"previous_status":"live","fielding_run_version":2,"closed_at":"2026-11-29T08:00:00.000Z",'
    b'"command_id":"01KB4Z5T6X2M8D3F0QK7N9R1WE"}'
)


@dataclass(frozen=True)
class LoopRun:
    """What one consume -> produce loop did: records, wall-clock span, CPU seconds."""

    records: int
    first: float  # time.time() of its first batch
    last: float  # time.time() once its last batch was committed
    cpu_seconds: float


async def kafka_consume_produce(
    settings: Settings,
    expected: int,
    consumed: Synchronized[int] | None = None,
    share: tuple[int, int] | None = None,
    timeout: float = 600,
) -> LoopRun:
    """Reads commands and produces one result-sized record for each; commits per batch. Stops
    once `expected` records are consumed: by this loop, or with `consumed` (a counter shared
    by several loops on one topic) by all of them together. `share` (i, n): this loop reads
    every n-th partition from the i-th, assigned outright so that no rebalance interrupts it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    if share is None:
        consumer.subscribe([settings.commands_topic])
    else:
        index, loops = share
        consumer.assign(
            [
                TopicPartition(settings.commands_topic, p)
                for p in range(settings.commands_partitions)[index::loops]
            ]
        )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1 << 20,
    )
    await consumer.start()
    await producer.start()
    done = 0
    first = last = cpu_at_first = 0.0
    deadline = time.monotonic() + timeout
    try:
        while (
            consumed.value if consumed is not None else done
        ) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batch:
                continue
            if not first:
                first, cpu_at_first = time.time(), time.process_time()
            count = 0
            for records in batch.values():
                for record in records:
                    await producer.send(settings.results_topic, record.value, key=record.key)
                count += len(records)
            await producer.flush()
            await consumer.commit()
            done, last = done + count, time.time()
            if consumed is not None:
                with consumed.get_lock():
                    consumed.value += count
        return LoopRun(done, first, last, time.process_time() - cpu_at_first if first else 0.0)
    finally:
        await producer.stop()
        await consumer.stop()


def _loop_process(
    settings: Settings,
    expected: int,
    consumed: Synchronized[int],
    share: tuple[int, int],
    runs: Queue[LoopRun],
) -> None:
    runs.put(asyncio.run(kafka_consume_produce(settings, expected, consumed, share)))


def kafka_loops(settings: Settings, loops: int, expected: int) -> list[LoopRun]:
    """`loops` consume -> produce loops, each a process of its own with a share of the
    partitions, until they have consumed `expected` records together. Shows whether the ceiling
    is the broker's or one Python client's: a broker-bound one would not rise with a second loop."""
    context = multiprocessing.get_context("spawn")
    consumed: Synchronized[int] = context.Value("q", 0)
    runs: Queue[LoopRun] = context.Queue()
    processes = [
        context.Process(
            target=_loop_process, args=(settings, expected, consumed, (index, loops), runs)
        )
        for index in range(loops)
    ]
    for process in processes:
        process.start()
    try:
        return [runs.get(timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(60)


async def database_alone(database_url: str, run_ids: list[str], batch: int = 2000) -> float:
    """The worker's own database calls for `run_ids` (one read, one compare-and-swap write of
    the runs with their remembered outcomes), in batches of the worker's default size, no
    Kafka. Returns the seconds it took."""
    pool = await create_pool(database_url, max_size=4)
    store = PostgresCommandStore(pool, rate_window_seconds=1, rate_limit=0)
    started = time.monotonic()
    try:
        for start in range(0, len(run_ids), batch):
            ids = run_ids[start : start + batch]
            commands = [(ACCOUNT, uuid.uuid4().hex) for _ in ids]
            snapshot = await store.load(ids, [], commands)
            now = datetime.now(UTC)
            changes = [
                RunChange(
                    RunState(run.key, RunStatus.COMPLETED, run.version + 1),
                    run.version,
                    now,
                    uuid.uuid4(),
                )
                for run in snapshot.runs.values()
            ]
            outcomes = [
                RememberedOutcome(
                    account_id,
                    command_id,
                    bytes(16),
                    204,
                    RESULT,
                    (Output(b"01BTGNYV6HRNK8K8VKZASZCFP1", EVENT),),
                    RecordOrigin("bench", 0, offset),
                )
                for offset, (account_id, command_id) in enumerate(commands)
            ]
            await store.save(changes, outcomes, [])
        return time.monotonic() - started
    finally:
        await pool.close()


async def bench_kafka_ceiling(
    base: Settings, database_url: str, runs: Runs, n: int
) -> KafkaCeiling:
    """One loop, as the issue asks; then two loop processes on as many commands again."""
    settings = await backlog_scenario(base, database_url, "kafka", runs, range(n))
    machine_before = cpu_jiffies()
    one = await kafka_consume_produce(settings, n)
    busy = busy_cores(machine_before, cpu_jiffies())
    settings = await backlog_scenario(base, database_url, "kafka-2", runs, range(n))
    loops = await asyncio.to_thread(kafka_loops, settings, 2, n)
    if sum(loop.records for loop in loops) != n:
        raise RuntimeError(f"two loops consumed {[loop.records for loop in loops]} of {n} commands")
    busy_loops = [loop for loop in loops if loop.records]  # at tiny sizes one loop may take all
    span = max(loop.last for loop in busy_loops) - min(loop.first for loop in busy_loops)
    return KafkaCeiling(
        commands=n,
        commands_per_second=n / (one.last - one.first),
        cpu_us_per_command=one.cpu_seconds * 1e6 / n,
        busy_cores=busy,
        two_loops_commands_per_second=n / span,
    )


async def bench_database_ceiling(database_url: str, runs: Runs, offset: int, n: int) -> Throughput:
    seconds = await database_alone(database_url, runs.ids[offset : offset + n])
    return Throughput(commands=n, commands_per_second=n / seconds)
