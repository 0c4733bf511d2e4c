"""Publishes one batch's outputs and its consumer offsets in one Kafka transaction.

One transactional producer per group assignment, under a fresh transactional id. aiokafka
has no KIP-447 group-metadata fencing, so the new owner of a partition fences the earlier
owners' ids itself (`fence`, using the claims registry): their epoch is bumped, their open
transaction aborted, and a zombie's next commit fails with ProducerFenced. A reader with
isolation_level=read_committed sees a batch's results, events, DLQ copies and offset commits
all together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from worker.adapters.kafka.errors import PartitionLost
from worker.service.outputs import Channel, Emission

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 5


class TransactionalPublisher:
    def __init__(self, bootstrap_servers: str, transactional_id: str, group_id: str,
                 topics: dict[Channel, str]) -> None:
        self._group_id = group_id
        self._topics = topics
        self._partitioner = DefaultPartitioner()
        self._producer = AIOKafkaProducer(
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
        # init_transactions: fences any earlier holder of this id and aborts its open work.
        await self._producer.start()

    async def stop(self) -> None:
        try:
            await self._producer.stop()
        except KafkaError:
            log.debug("producer stop failed", exc_info=True)

    async def publish(self, emissions: Sequence[Emission], offsets: Mapping[TopicPartition, int]) -> None:
        """Sends `emissions` and commits `offsets` (the next offset to read, per partition)."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            producer = self._producer
            try:
                await producer.begin_transaction()
            except KafkaError as error:
                raise PartitionLost(f"cannot begin a transaction: {error!r}") from error
            try:
                await self._send_all(producer, emissions)
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

    async def _send_all(self, producer: AIOKafkaProducer, emissions: Sequence[Emission]) -> None:
        """Hands the records to the producer one batch per partition: per-record `send()` costs
        a future, a metadata check and a partitioner call each, which was a fifth of the
        worker's CPU. Partitions come from the producer's own default (murmur2) partitioner,
        so keys land where any Kafka client would put them."""
        partitions = {topic: sorted(await producer.partitions_for(topic)) for topic in
                      {self._topics[e.channel] for e in emissions}}
        builders: dict[tuple[str, int], BatchBuilder] = {}
        for emission in emissions:
            topic = self._topics[emission.channel]
            partition = self._partitioner(emission.key, partitions[topic], partitions[topic])
            builder = builders.get((topic, partition))
            if builder is None or builder.append(key=emission.key, value=emission.value, timestamp=None,
                                                 headers=emission.headers) is None:
                if builder is not None:  # full: send it and start another
                    await producer.send_batch(builder, topic, partition=partition)
                builder = builders[(topic, partition)] = producer.create_batch()
                # aiokafka's batch always takes its first record, whatever its size.
                builder.append(key=emission.key, value=emission.value, timestamp=None, headers=emission.headers)
        for (topic, partition), builder in builders.items():
            await producer.send_batch(builder, topic, partition=partition)


async def fence(bootstrap_servers: str, transactional_ids: Iterable[str]) -> None:
    """Fences earlier producers: initialising their transactional ids bumps the epoch and
    completes (aborts) whatever transaction they had open, before this returns."""

    async def one(transactional_id: str) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=transactional_id,
                                    enable_idempotence=True)
        try:
            await producer.start()
        finally:
            await producer.stop()

    await asyncio.gather(*(one(t) for t in sorted(transactional_ids)))
