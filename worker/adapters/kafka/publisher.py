"""Publishes one batch's outputs and its consumer offset in one Kafka transaction.

One transactional producer per command partition (transactional.id = prefix-partition),
created only when the group assigns the partition: aiokafka has no KIP-447 group-metadata
fencing, so fencing comes from the id. When a partition moves, the new owner's producer
bumps the epoch, and a zombie's next commit fails with ProducerFenced. A reader with
isolation_level=read_committed sees a batch's results, events, DLQ copies and offset commit
all together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from worker.service.outputs import Channel, Emission

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 5


class PartitionLost(Exception):
    """This worker can no longer publish for the partition safely (fenced, or a commit whose
    outcome is unknown). The consumer must rejoin the group; the committed offset then tells
    what is done."""


class TransactionalPublisher:
    def __init__(self, bootstrap_servers: str, transactional_id: str, group_id: str,
                 topics: dict[Channel, str]) -> None:
        self._group_id = group_id
        self._topics = topics
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

    async def publish(self, emissions: Sequence[Emission], tp: TopicPartition, next_offset: int) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            producer = self._producer
            try:
                await producer.begin_transaction()
            except KafkaError as error:
                raise PartitionLost(f"cannot begin a transaction: {error!r}") from error
            try:
                for emission in emissions:
                    await producer.send(self._topics[emission.channel], emission.value,
                                        key=emission.key, headers=emission.headers)
                await producer.send_offsets_to_transaction({tp: next_offset}, self._group_id)
            except (TimeoutError, KafkaError) as error:
                # Nothing is committed before commit_transaction: abort and send again.
                try:
                    await producer.abort_transaction()
                except KafkaError as abort_error:
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
