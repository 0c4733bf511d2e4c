"""Publishes one batch's outputs and its consumer offsets in one Kafka transaction.

Each group assignment has an owner id of its own and publishes under the transactional ids
derived from it (`producer_ids`). aiokafka has no KIP-447 group-metadata fencing, so the new
owner of a partition fences the earlier owners' producers itself (`fence`, using the claims
registry): their epoch is bumped, their open transaction aborted, and a zombie's next commit
fails with ProducerFenced. A reader with isolation_level=read_committed sees a batch's
results, events, DLQ copies and offset commits all together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.partitioning import partition_for
from worker.service.cooperative import take_turn
from worker.service.outputs import Channel, Emission

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 5

# Transactions take turns between two producers. A commit returns once the coordinator has
# decided it, before it has written the markers; a new transaction of the same producer in
# that window is refused (CONCURRENT_TRANSACTIONS) and retried 20 ms later, which one in five
# batches met. Transactions still run one after another, never overlapping, and the group
# coordinator keeps whichever offset commit was appended last, so the order in which the two
# producers' markers land does not matter.
PRODUCERS_PER_OWNER = 2


def producer_ids(owner_id: str) -> list[str]:
    """The transactional ids an owner publishes under, and a new owner fences."""
    return [f"{owner_id}-{n}" for n in range(PRODUCERS_PER_OWNER)]


class TransactionalPublisher:
    def __init__(self, bootstrap_servers: str, owner_id: str, group_id: str,
                 topics: dict[Channel, str]) -> None:
        self._group_id = group_id
        self._topics = topics
        self._producers = [self._new_producer(bootstrap_servers, transactional_id)
                           for transactional_id in producer_ids(owner_id)]
        self._turn = 0

    @staticmethod
    def _new_producer(bootstrap_servers: str, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            transactional_id=transactional_id,
            enable_idempotence=True,
            linger_ms=0,
            max_batch_size=1 << 20,
            # A partition whose previous transaction's marker is not yet written answers a
            # produce with a retriable error (KIP-890 verification, as old clients see it);
            # the marker lands within milliseconds, so retry soon rather than after 100 ms.
            retry_backoff_ms=10,
        )

    async def start(self) -> None:
        # init_transactions: fences any earlier holder of these ids and aborts its open work.
        await asyncio.gather(*(producer.start() for producer in self._producers))

    async def stop(self) -> None:
        for outcome in await asyncio.gather(*(p.stop() for p in self._producers), return_exceptions=True):
            if isinstance(outcome, KafkaError):
                log.debug("producer stop failed", exc_info=outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    async def publish(self, emissions: Sequence[Emission], offsets: Mapping[TopicPartition, int]) -> None:
        """Sends `emissions` and commits `offsets` (the next offset to read, per partition).
        Never called again before it has returned: transactions do not overlap."""
        producer = self._producers[self._turn]
        self._turn = (self._turn + 1) % len(self._producers)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await producer.begin_transaction()
            except KafkaError as error:
                raise PartitionLost(f"cannot begin a transaction: {error!r}") from error
            try:
                # The records first, the offsets once they are written: aiokafka would add the
                # offsets to the transaction while the records are in flight, and the broker's
                # check of a transactional write (KIP-890) answers those records with a
                # retriable error when it meets the coordinator mid-change: a 10 ms retry in
                # most batches.
                await asyncio.gather(*await self._send_all(producer, emissions))
                await producer.send_offsets_to_transaction(dict(offsets), self._group_id)
            except (TimeoutError, KafkaError) as error:
                # Nothing is committed before commit_transaction: abort and send again.
                try:
                    await producer.abort_transaction()
                except Exception as abort_error:  # aiokafka asserts when its state is fatal
                    raise PartitionLost(f"abort failed: {abort_error!r}") from error
                log.warning("publish failed; retrying", extra={"attempt": attempt, "error": repr(error)})
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
                continue
            try:
                await producer.commit_transaction()
            except KafkaError as error:
                # Fenced, or committed-or-not unknown: never guess, never send twice.
                raise PartitionLost(f"commit failed: {error!r}") from error
            return
        raise PartitionLost(f"publish failed {SEND_ATTEMPTS} times")

    async def _send_all(self, producer: AIOKafkaProducer, emissions: Sequence[Emission]) -> list[asyncio.Future[Any]]:
        """Hands the records to the producer one batch per partition, and returns the batches'
        delivery futures. Per-record `send()` costs
        a future, a metadata check and a partitioner call each, which was a fifth of the
        worker's CPU. Partitions are Kafka's default for the key (murmur2), so keys land where
        any Kafka client would put them."""
        partitions = {topic: sorted(await producer.partitions_for(topic)) for topic in
                      {self._topics[e.channel] for e in emissions}}
        builders: dict[tuple[str, int], BatchBuilder] = {}
        deliveries: list[asyncio.Future[Any]] = []
        for done, emission in enumerate(emissions):
            await take_turn(done)
            topic = self._topics[emission.channel]
            partition = partition_for(emission.key, partitions[topic])
            builder = builders.get((topic, partition))
            if builder is None or builder.append(key=emission.key, value=emission.value, timestamp=None,
                                                 headers=emission.headers) is None:
                if builder is not None:  # full: send it and start another
                    deliveries.append(await producer.send_batch(builder, topic, partition=partition))
                builder = builders[(topic, partition)] = producer.create_batch()
                # aiokafka's batch always takes its first record, whatever its size.
                builder.append(key=emission.key, value=emission.value, timestamp=None, headers=emission.headers)
        for (topic, partition), builder in builders.items():
            deliveries.append(await producer.send_batch(builder, topic, partition=partition))
        return deliveries


async def fence(bootstrap_servers: str, owner_ids: Iterable[str]) -> None:
    """Fences earlier owners' producers: initialising their transactional ids bumps the epoch
    and completes (aborts) whatever transaction they had open, before this returns."""

    async def one(transactional_id: str) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=transactional_id,
                                    enable_idempotence=True)
        try:
            await producer.start()
        finally:
            await producer.stop()

    await asyncio.gather(*(one(t) for owner_id in sorted(owner_ids) for t in producer_ids(owner_id)))
