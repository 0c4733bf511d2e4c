"""The pipeline of one group assignment: every command record of the partitions this member
owns waits here, is decided in batches, and each batch is published with its offsets in one
Kafka transaction.

One pipeline, not one per partition: each batch costs a database transaction and a Kafka
transaction whatever its size, so one stream of batches across all partitions keeps both few
and large. Records of a partition keep their order; those of different partitions may
share a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from worker.adapters.kafka.deadline import within
from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.publisher import Transaction, TransactionalPublisher, fence
from worker.observability import metrics
from worker.observability.health import Health
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import PartitionClaims, RecordOrigin, TransientFailure
from worker.service.processor import BatchProcessor

log = logging.getLogger(__name__)

# Should a step that waits on the broker hang (seen after a broker restart), the pipeline
# fails and the member rejoins, rather than stall unnoticed.
OWNERSHIP_TIMEOUT_SECONDS = 30.0
PUBLISH_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0

Record: TypeAlias = ConsumerRecord[bytes, bytes]
T = TypeVar("T")


def command_record(record: Record) -> CommandRecord:
    return CommandRecord(
        origin=RecordOrigin(record.topic, record.partition, record.offset),
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
        timestamp_ms=record.timestamp,
    )


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """Retries a database call through a short outage (the ownership deadline still holds),
    so that a database restart does not turn into a round of rebalances."""
    while True:
        try:
            return await call()
        except TransientFailure as failure:
            log.warning("claiming partitions failed; retrying", extra={"error": str(failure)})
            await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class Decided:
    """A batch the database has decided, waiting to be published with its offsets."""

    batch: list[Record]
    offsets: dict[TopicPartition, int]
    emissions: list[Emission]


class AssignmentPipeline:
    """Starts by taking ownership: claims the partitions, fences their earlier owners'
    producers, starts its own, and only then reads the committed offsets, which no earlier
    owner can move any more.

    Two stages, so the database decides batch k+1 while Kafka commits batch k. This is safe
    because the database side is idempotent by record: should batch k's publish fail after
    batch k+1 was decided, both are fetched again from the committed offsets and replayed from
    what the database remembers, byte for byte.
    """

    def __init__(
        self,
        partitions: Iterable[TopicPartition],
        bootstrap_servers: str,
        owner_id_prefix: str,
        make_publisher: Callable[[str], TransactionalPublisher],
        claims: PartitionClaims,
        processor: BatchProcessor,
        max_batch: int,
        committed_offset: Callable[[TopicPartition], Awaitable[int | None]],
        health: Health,
    ) -> None:
        self.partitions = frozenset(partitions)
        self.owner_id = f"{owner_id_prefix}-{uuid.uuid4().hex[:16]}"
        # Per partition: the next offset to process, as the group knows it once committed.
        self.committed: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}  # the next offset to take into a batch
        self._bootstrap_servers = bootstrap_servers
        self._publisher = make_publisher(self.owner_id)
        self._claims = claims
        self._committed_offset = committed_offset
        self._processor = processor
        self._max_batch = max_batch
        self._health = health
        self._queue: deque[Record] = deque()
        self._in_flight: deque[list[Record]] = deque()  # decided or deciding
        self._wake = asyncio.Event()
        self._closing = False
        self.task = asyncio.create_task(self._run(), name=f"pipeline-{self.owner_id}")

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def oldest_waiting_ms(self) -> dict[TopicPartition, int]:
        """Per partition, the timestamp of its oldest record not yet committed."""
        oldest: dict[TopicPartition, int] = {}
        for record in (r for batch in self._in_flight for r in batch):
            oldest.setdefault(TopicPartition(record.topic, record.partition), int(record.timestamp))
        for record in self._queue:
            oldest.setdefault(TopicPartition(record.topic, record.partition), int(record.timestamp))
            if len(oldest) == len(self.partitions):
                break
        return oldest

    def submit(self, records: list[Record]) -> None:
        self._queue.extend(records)
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Finishes the batches in flight (their offsets are committed with them) and drops the
        rest, which the partitions' next owners fetch again from the committed offsets."""
        self._closing = True
        self._queue.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            log.warning("pipeline did not finish in %.0fs; abandoning its batches", timeout)
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        except Exception:  # a failed pipeline has already reported its failure
            pass
        try:
            await within(STOP_TIMEOUT_SECONDS, self._publisher.stop(), "stopping the producer")
        except PartitionLost:
            log.warning("producer did not stop; abandoned (the next owner fences it)")

    async def _take_ownership(self) -> None:
        by_topic: dict[str, list[int]] = {}
        for tp in self.partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, numbers in by_topic.items():
            earlier = await _retrying(partial(self._claims.claim, topic, numbers, self.owner_id))
            await fence(self._bootstrap_servers, earlier)
            await _retrying(partial(self._claims.confirm_fenced, topic, numbers, self.owner_id))
            if earlier:
                log.info("fenced earlier owners", extra={"owner_ids": sorted(earlier)})
        await self._publisher.start()
        for tp in self.partitions:
            self.committed[tp] = self._next[tp] = await self._committed_offset(tp) or 0
        log.info(
            "pipeline ready",
            extra={
                "owner_id": self.owner_id,
                "offsets": {tp.partition: o for tp, o in self.committed.items()},
            },
        )

    async def _run(self) -> None:
        await within(OWNERSHIP_TIMEOUT_SECONDS, self._take_ownership(), "taking ownership")
        publishing: asyncio.Task[None] | None = None
        preparing: asyncio.Task[Transaction] | None = None
        try:
            while not self._closing:
                if publishing is not None and publishing.done():
                    publishing.result()  # raises if the publish failed
                    publishing = None
                batch, offsets = self._take_batch()
                if not batch:
                    await self._wake.wait()  # new records, closing, or a publish ending
                    self._wake.clear()
                    continue
                self._in_flight.append(batch)
                # Kafka opens the batch's transaction with its offsets while the database
                # decides it; offset commits go out in batch order.
                preparing = asyncio.create_task(self._prepare(offsets, after=preparing))
                with metrics.DECIDE_SECONDS.time():
                    emissions = await self._processor.process([command_record(r) for r in batch])
                # Batches commit in order. The next batch is taken only once this one is
                # handed over, so records wait in one growing batch, not in a queue of small ones.
                if publishing is not None:
                    await publishing
                publishing = asyncio.create_task(
                    self._publish(Decided(batch, offsets, emissions), preparing)
                )
                publishing.add_done_callback(lambda _: self._wake.set())
            if publishing is not None:
                await publishing
        finally:
            for task in (publishing, preparing):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    async def _prepare(
        self, offsets: dict[TopicPartition, int], after: asyncio.Task[Transaction] | None
    ) -> Transaction:
        if after is not None:
            await after  # the previous batch's offsets reach the coordinator first
        return await within(
            PUBLISH_TIMEOUT_SECONDS, self._publisher.prepare(offsets), "preparing a transaction"
        )

    def _take_batch(self) -> tuple[list[Record], dict[TopicPartition, int]]:
        """The next batch, and the offsets committing it: per partition, the next to read."""
        batch: list[Record] = []
        offsets: dict[TopicPartition, int] = {}
        while self._queue and len(batch) < self._max_batch:
            record = self._queue.popleft()
            tp = TopicPartition(record.topic, record.partition)
            # Fetched before this member knew the committed offset: an earlier owner did it.
            if record.offset < self._next[tp]:
                continue
            self._next[tp] = offsets[tp] = record.offset + 1
            batch.append(record)
        return batch, offsets

    async def _publish(self, decided: Decided, preparing: asyncio.Task[Transaction]) -> None:
        with metrics.PUBLISH_SECONDS.time():
            transaction = await preparing
            await within(
                PUBLISH_TIMEOUT_SECONDS,
                self._publisher.publish(transaction, decided.emissions),
                "publishing a batch",
            )
        self._in_flight.popleft()
        self.committed.update(decided.offsets)
        self._health.progressed()
        self._observe(decided.batch, decided.emissions)

    @staticmethod
    def _observe(batch: list[Record], emissions: list[Emission]) -> None:
        now = time.time()
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.LAST_PROGRESS.set(now)
        for record in batch:
            metrics.LATENCY.observe(max(0.0, now - record.timestamp / 1000))
        published = Counter((e.channel, e.command_type, e.status) for e in emissions)
        for (channel, command_type, status), count in published.items():
            if channel is Channel.RESULT:
                metrics.COMMANDS.labels(command_type or "unknown", str(status)).inc(count)
            elif channel is Channel.EVENT:
                metrics.EVENTS.inc(count)
            else:
                metrics.DLQ_RECORDS.inc(count)
