"""One command partition's pipeline: fetched records wait here, are decided in batches, and
each batch is published with its offset in one transaction. Lanes of different partitions
run concurrently; within a lane, commands keep their order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

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
        self._in_flight: Sequence[ConsumerRecord[bytes, bytes]] = ()
        self._wake = asyncio.Event()
        self._closing = False
        self._labels = (tp.topic, str(tp.partition))
        self.task = asyncio.create_task(self._run(), name=f"lane-{tp.topic}-{tp.partition}")

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def oldest_waiting_ms(self) -> int | None:
        oldest = self._in_flight[0] if self._in_flight else self._queue[0] if self._queue else None
        return None if oldest is None else int(oldest.timestamp)

    def submit(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self._queue.extend(records)
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Finishes the batch in flight (its offset is committed with it) and drops the rest,
        which the partition's next owner fetches again from the committed offset."""
        self._closing = True
        self._queue.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            log.warning("lane did not finish in %.0fs; abandoning its batch", timeout,
                        extra={"partition": self.tp.partition})
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        except Exception:
            pass
        await self._publisher.stop()

    async def _run(self) -> None:
        # The producer starts (fencing any earlier owner of this partition) before any batch.
        await self._publisher.start()
        self.committed = await self._committed_offset(self.tp) or 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self._closing:
                count = min(self._max_batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                self._in_flight = batch
                await self._process(batch)
                self._in_flight = ()
            if self._closing:
                return

    async def _process(self, batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        emissions = await self._processor.process([command_record(r) for r in batch])
        next_offset = batch[-1].offset + 1
        await self._publisher.publish(emissions, self.tp, next_offset)
        self.committed = next_offset
        self._health.progressed()
        self._observe(batch, emissions)

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
