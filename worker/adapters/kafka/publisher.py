"""Publishes one batch's outputs and its consumer offsets in one Kafka transaction.

Each group assignment has an owner id of its own and publishes under the transactional ids
derived from it (`producer_ids`). aiokafka has no KIP-447 group-metadata fencing, so the new
owner of a partition fences the earlier owners' producers itself (`fence_owners`, using the claims
registry): their epoch is bumped, their open transaction aborted, and a zombie's next commit
fails with ProducerFenced. A reader with isolation_level=read_committed sees a batch's
results, events, DLQ copies and offset commits all together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from worker import failpoints
from worker.adapters.kafka.admin import admin_client
from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.partitioning import partition_for
from worker.adapters.kafka.topics import message_limits
from worker.service import outputs
from worker.service.cooperative import take_turn
from worker.service.hanging import COMMAND_ORIGIN
from worker.service.outputs import Channel, Emission, Headers
from worker.service.ports import RecordOrigin
from worker.service.replies import origin_text, reply_headers

log = logging.getLogger(__name__)

# Transactions take turns between three producers, so that a producer's next transaction does
# not start while its last commit's markers are still being written (CONCURRENT_TRANSACTIONS).
# Why the order in which their markers land does not matter: docs/decisions/three-producers.md.
PRODUCERS_PER_OWNER = 3


def producer_ids(owner_id: str) -> list[str]:
    """The transactional ids an owner publishes under, and a new owner fences."""
    return [f"{owner_id}-{n}" for n in range(PRODUCERS_PER_OWNER)]


@dataclass(frozen=True, slots=True)
class Transaction:
    """An open transaction holding a batch's offsets, waiting for the batch's outputs."""

    producer: AIOKafkaProducer


# How often a worker looks for a missing replies topic again.
REPLIES_LOOK_SECONDS = 30.0
# How long a batch waits for the replies topic's metadata before publishing without its copies.
REPLIES_METADATA_SECONDS = 5.0


class TransactionalPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        owner_id: str,
        group_id: str,
        topics: dict[Channel, str],
        replies_topic: str | None = None,
        transaction_timeout_ms: int = 60_000,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._transaction_timeout_ms = transaction_timeout_ms
        self._owner_id = owner_id
        self._group_id = group_id
        self._topics = topics
        self._replies_wanted = replies_topic
        self._replies_topic: str | None = None  # once it is known to exist
        self._replies_next_look = 0.0
        self._limits: dict[Channel, int] = {}
        self._producers: list[AIOKafkaProducer] = []
        self._turn = 0

    def _new_producer(self, transactional_id: str, batch_bytes: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            transactional_id=transactional_id,
            transaction_timeout_ms=self._transaction_timeout_ms,
            enable_idempotence=True,
            linger_ms=0,
            max_batch_size=batch_bytes,
            # A partition whose previous transaction's marker is not yet written answers a
            # produce with a retriable error (KIP-890 verification, as old clients see it);
            # the marker lands within milliseconds, so retry soon rather than after 100 ms.
            retry_backoff_ms=10,
        )

    async def start(self) -> None:
        """Reads the largest record each output topic takes, then starts the producers.
        init_transactions fences any earlier holder of these ids and aborts its open work."""
        async with admin_client(self._bootstrap_servers) as admin:
            limits = await message_limits(admin, self._topics.values())
        await self._look_for_replies_topic()
        self._limits = {channel: limits[topic] for channel, topic in self._topics.items()}
        # A batch of many records stays under every topic's limit; a record larger than the
        # batch size still goes, alone in its batch, if its own topic takes it.
        batch_bytes = min(1 << 20, min(self._limits.values()) - outputs.RECORD_OVERHEAD)
        self._producers = [
            self._new_producer(transactional_id, batch_bytes)
            for transactional_id in producer_ids(self._owner_id)
        ]
        await asyncio.gather(*(producer.start() for producer in self._producers))

    async def _look_for_replies_topic(self) -> None:
        """Whether the replies topic exists, looked up again at most every
        REPLIES_LOOK_SECONDS while it does not (it may be made after the worker started). A
        command naming a replies partition never fails its batch for want of it."""
        wanted = self._replies_wanted
        if not wanted or self._replies_topic or time.monotonic() < self._replies_next_look:
            return
        self._replies_next_look = time.monotonic() + REPLIES_LOOK_SECONDS
        try:
            async with admin_client(self._bootstrap_servers) as admin:
                found = wanted in await admin.list_topics()
        except Exception:  # the broker away: the batch meets that anyway
            log.debug("could not list topics", exc_info=True)
            return
        if found:
            self._replies_topic = wanted
        else:
            log.warning("no replies topic %s: results go to the results topic only", wanted)

    async def stop(self) -> None:
        for outcome in await asyncio.gather(
            *(p.stop() for p in self._producers), return_exceptions=True
        ):
            if isinstance(outcome, KafkaError):
                log.debug("producer stop failed", exc_info=outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    async def prepare(self, offsets: Mapping[TopicPartition, int]) -> Transaction:
        """Opens the next batch's transaction on the producer whose turn it is and adds the
        batch's offsets (the next offset to read, per partition) to it, while the database is
        still deciding the batch: two of a transaction's five round trips off the critical path.

        Called only once the previous batch's `prepare` has returned and the batch before that
        is published, so offset commits reach the group coordinator in batch order."""
        producer = self._producers[self._turn]
        self._turn = (self._turn + 1) % len(self._producers)
        try:
            await producer.begin_transaction()
            await producer.send_offsets_to_transaction(dict(offsets), self._group_id)
        except KafkaError as error:
            raise PartitionLost(f"cannot prepare a transaction: {error!r}") from error
        return Transaction(producer)

    async def renew(
        self, transaction: Transaction, offsets: Mapping[TopicPartition, int]
    ) -> Transaction:
        """Aborts a prepared transaction and opens it again with the same offsets on the same
        producer, before the broker's transaction timeout would abort (and fence) it."""
        producer = transaction.producer
        try:
            await producer.abort_transaction()
            await producer.begin_transaction()
            await producer.send_offsets_to_transaction(dict(offsets), self._group_id)
        except KafkaError as error:
            raise PartitionLost(f"cannot renew a transaction: {error!r}") from error
        return Transaction(producer)

    async def fence(self, owner_ids: Iterable[str]) -> None:
        """Fences earlier owners' producers (see `fence_owners`)."""
        await fence_owners(self._bootstrap_servers, owner_ids)

    async def publish(self, transaction: Transaction, emissions: Sequence[Emission]) -> None:
        """Sends `emissions` in the prepared transaction and commits it. Only once the previous
        batch's transaction has committed: outputs keep their order.

        Any failure loses the partitions; nothing is retried here. The next batch's
        transaction may already hold its offsets, and a retried offset commit appended after
        them would win and move the group's offsets back; the next owner fences all the producers
        and starts from the committed offsets instead."""
        producer = transaction.producer
        try:
            await asyncio.gather(*await self._send_all(producer, emissions))
            failpoints.freeze_once(failpoints.FREEZE_BEFORE_KAFKA_COMMIT)
            await producer.commit_transaction()
        except (TimeoutError, KafkaError) as error:
            # Fenced, failed, or committed-or-not unknown: never guess, never send twice.
            raise PartitionLost(f"publish failed: {error!r}") from error

    async def _send_all(
        self, producer: AIOKafkaProducer, emissions: Sequence[Emission]
    ) -> list[asyncio.Future[Any]]:
        """Hands the records to the producer one batch per partition, and returns the batches'
        delivery futures. Per-record `send()` costs a future, a metadata check and a partitioner
        call each (docs/decisions/batch-per-partition.md). Partitions are Kafka's default for the
        key (murmur2), so keys land where any Kafka client would put them; a result's copy for
        `serve` goes to the replies partition its command named."""
        emissions = [self._fit(emission) for emission in emissions]
        topics = {self._topics[e.channel] for e in emissions}
        partitions = {topic: sorted(await producer.partitions_for(topic)) for topic in topics}
        if any(e.reply for e in emissions):
            await self._look_for_replies_topic()
            if self._replies_topic:
                await self._replies_partitions(producer, partitions)
        builders: dict[tuple[str, int], BatchBuilder] = {}
        deliveries: list[asyncio.Future[Any]] = []

        async def append(
            topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Headers
        ) -> None:
            builder = builders.get((topic, partition))
            if (
                builder is None
                or builder.append(key=key, value=value, timestamp=None, headers=headers) is None
            ):
                if builder is not None:  # full: send it and start another
                    deliveries.append(
                        await producer.send_batch(builder, topic, partition=partition)
                    )
                builder = builders[(topic, partition)] = producer.create_batch()
                # aiokafka's batch always takes its first record, whatever its size.
                builder.append(key=key, value=value, timestamp=None, headers=headers)

        replies = self._replies_topic if self._replies_topic in partitions else None
        for done, emission in enumerate(emissions):
            await take_turn(done)
            topic = self._topics[emission.channel]
            partition = partition_for(emission.key, partitions[topic])
            await append(topic, partition, emission.key, emission.value, with_origin(emission))
            if emission.reply and replies and emission.reply[0] in partitions[replies]:
                reply_partition, reply_id = emission.reply
                await append(
                    replies, reply_partition, reply_id, emission.value, reply_headers(emission)
                )
        for (topic, partition), builder in builders.items():
            deliveries.append(await producer.send_batch(builder, topic, partition=partition))
        return deliveries

    async def _replies_partitions(
        self, producer: AIOKafkaProducer, partitions: dict[str, list[int]]
    ) -> None:
        """Adds the replies topic's partitions to `partitions`. A replies topic deleted after it
        was found would make the producer wait for its metadata past the publish deadline, batch
        after batch: instead its copies are dropped and it is looked for again later."""
        topic = self._replies_topic
        assert topic is not None
        try:
            found = await asyncio.wait_for(producer.partitions_for(topic), REPLIES_METADATA_SECONDS)
        except (TimeoutError, KafkaError):
            log.warning("replies topic %s unavailable: results go to the results topic only", topic)
            self._replies_topic = None
            self._replies_next_look = time.monotonic() + REPLIES_LOOK_SECONDS
            return
        partitions[topic] = sorted(found)

    def _fit(self, emission: Emission) -> Emission:
        """The emission, or a DLQ stub in its place where it is larger than its topic takes (a
        copy of a record near the commands topic's limit; never a result or an event, which
        are bounded, but if one were, the stub in the DLQ says so)."""
        limit = self._limits[emission.channel]
        # Results and events are bounded by construction (a few KB): only a copy needs counting.
        if emission.channel is not Channel.DLQ and len(emission.value or b"") < limit // 2:
            return emission
        if emission.size <= limit:
            return emission
        topic = self._topics[emission.channel]
        reason = (
            f"a {emission.channel.value} record of about {emission.size} bytes does not fit "
            f"{topic} (max.message.bytes {limit})"
        )
        log.warning("output too large; a DLQ stub goes instead", extra={"reason": reason})
        origin = emission.origin or RecordOrigin(topic, -1, -1)
        return outputs.dlq_stub(origin, emission.key, emission.value, reason)


def with_origin(emission: Emission) -> Headers:
    """A result's or event's headers and the command record it answers (`COMMAND_ORIGIN`): an
    output is told from a repeated command's by it, when a hanging transaction is healed."""
    origin = emission.origin
    if emission.channel is Channel.DLQ or origin is None or origin.partition < 0:
        return emission.headers
    return [*emission.headers, (COMMAND_ORIGIN, origin_text(origin.partition, origin.offset))]


async def fence_owners(bootstrap_servers: str, owner_ids: Iterable[str]) -> None:
    """Fences earlier owners' producers: initialising their transactional ids bumps the epoch
    and completes (aborts) whatever transaction they had open, before this returns."""

    async def one(transactional_id: str) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            transactional_id=transactional_id,
            enable_idempotence=True,
        )
        try:
            await producer.start()
        finally:
            await producer.stop()

    await asyncio.gather(
        *(one(t) for owner_id in sorted(owner_ids) for t in producer_ids(owner_id))
    )
