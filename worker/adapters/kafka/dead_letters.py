"""Reading the DLQ topic and sending dead letters back to the commands topic, for
`fielding-worker dlq`.

The DLQ is read without a consumer group (nothing is committed, nothing rebalances), as a
`read_committed` reader, from the beginning up to the end offsets taken when the read starts:
a read ends even while the worker keeps writing. Records go back through an idempotent
producer keyed as they were, so Kafka's default partitioner (murmur2 of the key, as
`worker.adapters.kafka.partitioning`) puts each on the partition of its run's other commands.
Records are read through `lenient_records`, as the worker reads commands: a record another
producer wrote with a header key that is not UTF-8 is listed (and refused, having no
`dlq.original.*` headers) instead of stopping every read of the DLQ at its offset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from worker.adapters.kafka import lenient_records
from worker.adapters.kafka.admin import admin_client
from worker.adapters.kafka.lag import topic_partitions
from worker.adapters.kafka.topics import message_limits
from worker.service.dead_letters import DeadLetterRecord
from worker.service.trace_context import Headers

FETCH_MS = 500
# A partition whose position stops short of the end this long (its records deleted under the
# reader, say) ends the read with an error rather than a wait without end.
STUCK_FETCHES = 20


class DlqReadStuck(RuntimeError):
    """The DLQ could not be read up to the end offset taken at the start."""


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets [start, end) of one DLQ partition to read."""

    partition: int
    start: int
    end: int


async def dlq_spans(
    bootstrap_servers: str,
    topic: str,
    partitions: frozenset[int] = frozenset(),
    from_offset: int | None = None,
    to_offset: int | None = None,
) -> list[Span]:
    """What to read of `topic` (of `partitions`, all when empty; `to_offset` inclusive): from
    each partition's first kept offset, or `from_offset`, to its last stable offset now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, isolation_level="read_committed"
    )
    async with admin_client(bootstrap_servers) as admin:
        await consumer.start()
        try:
            tps = [
                tp
                for tp in await topic_partitions(admin, topic)
                if not partitions or tp.partition in partitions
            ]
            if not tps:
                return []
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
    spans = []
    for tp in tps:
        start = max(starts[tp], from_offset or 0)
        end = ends[tp] if to_offset is None else min(ends[tp], to_offset + 1)
        if start < end:
            spans.append(Span(tp.partition, start, end))
    return spans


async def read_dlq(
    bootstrap_servers: str, topic: str, spans: Sequence[Span]
) -> AsyncIterator[DeadLetterRecord]:
    """The records of `spans`, partition by partition, in offset order. Offsets inside a span
    with no record (transaction markers, aborted records, compaction) are skipped."""
    if not spans:  # an empty DLQ: no consumer (aiokafka's stop right after its start raises)
        return
    lenient_records.install()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        for span in spans:
            tp = TopicPartition(topic, span.partition)
            consumer.assign([tp])
            consumer.seek(tp, span.start)
            idle = 0
            while (position := await consumer.position(tp)) < span.end:
                batch = await consumer.getmany(tp, timeout_ms=FETCH_MS)
                idle = 0 if batch or await consumer.position(tp) != position else idle + 1
                if idle >= STUCK_FETCHES:
                    raise DlqReadStuck(
                        f"{topic} partition {span.partition} stays at offset {position}, "
                        f"short of {span.end}"
                    )
                for record in batch.get(tp, []):
                    if record.offset >= span.end:
                        break
                    yield DeadLetterRecord(
                        record.partition,
                        record.offset,
                        record.timestamp,
                        record.key,
                        record.value,
                        list(record.headers),
                    )
    finally:
        await consumer.stop()


async def read_one(
    bootstrap_servers: str, topic: str, partition: int, offset: int
) -> DeadLetterRecord | None:
    """The record at `partition`:`offset` of `topic`, or None when there is none there."""
    spans = await dlq_spans(bootstrap_servers, topic, frozenset({partition}), offset, offset)
    async for record in read_dlq(bootstrap_servers, topic, spans):
        return record
    return None


# aiokafka's default max_request_size: the limit when the topic's cannot be read.
DEFAULT_LIMIT = 1024 * 1024


class TooLarge(Exception):
    """A record the commands topic does not take: nothing of it was written (the producer
    refused it before sending, or the broker rejected its batch whole)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes as a record, over the commands topic's limit of {limit}")
        self.size = size
        self.limit = limit


class CommandsTopic:
    """Sends records to the commands topic and says where each landed. The producer's
    max_request_size is the topic's max.message.bytes, read when it starts (aiokafka's
    default, 1 MiB, when it cannot be read)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self.limit = DEFAULT_LIMIT
        self._producer: AIOKafkaProducer | None = None

    async def _read_limit(self) -> int:
        try:
            async with admin_client(self._bootstrap_servers) as admin:
                limits = await message_limits(admin, [self._topic])
        except (KafkaError, RuntimeError, ValueError):
            return DEFAULT_LIMIT
        return limits.get(self._topic, DEFAULT_LIMIT)

    async def __aenter__(self) -> CommandsTopic:
        self.limit = await self._read_limit()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=self.limit,
        )
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send(
        self, key: bytes | None, value: bytes | None, headers: Headers
    ) -> tuple[int, int]:
        """Sends one record, waits for the broker's acknowledgement: (partition, offset).
        TooLarge: the record is over the topic's limit and nothing of it was written."""
        assert self._producer is not None, "send() outside `async with`"
        try:
            metadata = await self._producer.send_and_wait(
                self._topic, value, key=key, headers=list(headers)
            )
        except (MessageSizeTooLargeError, RecordListTooLargeError):
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))
            raise TooLarge(size, self.limit) from None
        return metadata.partition, metadata.offset
