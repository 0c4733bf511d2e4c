"""One command partition's pipeline: fetched records wait here, are decided in batches, and
each batch is published with its offset in one transaction. Lanes of different partitions
run concurrently; within a lane, commands keep their order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRecord, TopicPartition

from worker.adapters.kafka.publisher import TransactionalPublisher
from worker.observability import metrics
from worker.observability.health import Health
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin
from worker.service.processor import BatchProcessor

log = logging.getLogger(__name__)


def command_record(record: ConsumerRecord[bytes, bytes]) -> CommandRecord:
    return CommandRecord(
        origin=RecordOrigin(record.topic, record.partition, record.offset),
        key=record.key, value=record.value, headers=tuple(record.headers),
        timestamp_ms=record.timestamp,
    )


class PartitionLane:
    """Two stages, so the database decides batch k+1 while Kafka commits batch k.

    This is safe because the database side is idempotent by record: should batch k's publish
    fail after batch k+1 was decided, both are fetched again from the committed offset and
    replayed from what the database remembers, byte for byte.
    """

    def __init__(
        self,
        tp: TopicPartition,
        publisher: TransactionalPublisher,
        processor: BatchProcessor,
        max_batch: int,
        committed_offset: Callable[[TopicPartition], Awaitable[int | None]],
        health: Health,
    ) -> None:
        self.tp = tp
        self.committed = 0  # the next offset to process, as the group knows it
        self._committed_offset = committed_offset
        self._publisher = publisher
        self._processor = processor
        self._max_batch = max_batch
        self._health = health
        self._queue: deque[ConsumerRecord[bytes, bytes]] = deque()
        self._in_flight: deque[list[ConsumerRecord[bytes, bytes]]] = deque()  # decided or deciding
        self._decided: asyncio.Queue[tuple[list[ConsumerRecord[bytes, bytes]], list[Emission]] | None] = (
            asyncio.Queue(maxsize=1))
        self._wake = asyncio.Event()
        self._closing = False
        self.task = asyncio.create_task(self._run(), name=f"lane-{tp.topic}-{tp.partition}")

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def oldest_waiting_ms(self) -> int | None:
        oldest = self._in_flight[0][0] if self._in_flight else self._queue[0] if self._queue else None
        return None if oldest is None else int(oldest.timestamp)

    def submit(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self._queue.extend(records)
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Finishes the batches in flight (their offsets are committed with them) and drops the
        rest, which the partition's next owner fetches again from the committed offset."""
        self._closing = True
        self._queue.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            log.warning("lane did not finish in %.0fs; abandoning its batches", timeout,
                        extra={"partition": self.tp.partition})
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        except Exception:  # a failed lane has already reported its failure
            pass
        await self._publisher.stop()

    async def _run(self) -> None:
        # The producer starts (fencing any earlier owner of this partition) before any batch.
        await self._publisher.start()
        self.committed = await self._committed_offset(self.tp) or 0
        publishing = asyncio.create_task(self._publish_stage())
        try:
            await self._decide_stage(publishing)
            await self._decided.put(None)
            await publishing
        finally:
            if not publishing.done():
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)

    async def _decide_stage(self, publishing: asyncio.Task[None]) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self._closing and not publishing.done():
                count = min(self._max_batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                self._in_flight.append(batch)
                emissions = await self._processor.process([command_record(r) for r in batch])
                await self._decided.put((batch, emissions))
            if publishing.done():
                publishing.result()  # the publish stage failed: raise its error
            if self._closing:
                return

    async def _publish_stage(self) -> None:
        try:
            while (decided := await self._decided.get()) is not None:
                batch, emissions = decided
                next_offset = batch[-1].offset + 1
                await self._publisher.publish(emissions, self.tp, next_offset)
                self._in_flight.popleft()
                self.committed = next_offset
                self._health.progressed()
                self._observe(batch, emissions)
        finally:
            # Whatever ended this stage, the decide stage must not wait for it: wake it and
            # make room for a batch it may be handing over.
            self._wake.set()
            while not self._decided.empty():
                self._decided.get_nowait()

    def _observe(self, batch: list[ConsumerRecord[bytes, bytes]], emissions: list[Emission]) -> None:
        now = time.time()
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.LAST_PROGRESS.set(now)
        for record in batch:
            metrics.LATENCY.observe(max(0.0, now - record.timestamp / 1000))
        for emission in emissions:
            if emission.channel is Channel.RESULT:
                metrics.COMMANDS.labels(emission.command_type or "unknown", str(emission.status)).inc()
            elif emission.channel is Channel.EVENT:
                metrics.EVENTS.inc()
            else:
                metrics.DLQ_RECORDS.inc()
