"""Hanging transactions on output partitions: found, aborted, and what the abort hides
published again (the rules are in `worker.service.hanging`).

The calls are KIP-664's, as `kafka-transactions.sh` makes them: DescribeProducers (what a
partition leader holds open), ListTransactions and DescribeTransactions (what the coordinator
holds open), and WriteTxnMarkers (an abort marker written by an administrator). aiokafka's admin
client speaks none of them; kafka-python's does (synchronously: its calls run in a thread). The
partition's log is read uncommitted with aiokafka's own Fetch request, since a consumer does not
say which producer wrote a record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import COMMIT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords
from kafka import TopicPartition as SyncTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.admin._transactions import AbortTransactionSpec

from worker.observability import metrics
from worker.service.hanging import (
    HangingWatch,
    LogRecord,
    OpenTransaction,
    ended,
    to_publish_again,
)

log = logging.getLogger(__name__)

# The coordinator's states in which it still holds a transaction open (it will end it itself).
OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")
READ_UNCOMMITTED = 0
FETCH_BYTES = 8 << 20
# What a heal reads of a partition at most: more is left to an operator (`transactions abort`
# with `--no-publish-again` after a look at the log), not held in the worker's memory.
MAX_READ_BYTES = 256 << 20


class TooMuchToRead(Exception):
    """The partition holds more behind the hanging transaction than a heal reads."""


def _admin(bootstrap_servers: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers.split(","),
        client_id="fielding-worker-transactions",
        request_timeout_ms=15_000,
    )


def _open_at_leaders(bootstrap_servers: str, topics: Sequence[str]) -> list[OpenTransaction]:
    admin = _admin(bootstrap_servers)
    try:
        partitions = [
            SyncTopicPartition(described["name"], p["partition_index"])
            for described in admin.describe_topics(list(topics))
            if not described["error_code"]  # a topic not made (yet) holds nothing open
            for p in described["partitions"]
        ]
        states = admin.describe_producers(partitions)
    finally:
        admin.close()
    return sorted(
        (
            OpenTransaction(
                tp.topic,
                tp.partition,
                producer.producer_id,
                producer.producer_epoch,
                producer.coordinator_epoch,
                producer.current_transaction_start_offset,
                producer.last_timestamp,
            )
            for tp, state in states.items()
            for producer in state.active_producers
            if producer.current_transaction_start_offset >= 0
        ),
        key=lambda t: t.where,
    )


def _open_at_coordinator(
    bootstrap_servers: str, producer_ids: Iterable[int]
) -> set[tuple[int, str, int]]:
    wanted = sorted(set(producer_ids))
    if not wanted:
        return set()
    admin = _admin(bootstrap_servers)
    try:
        listed = admin.list_transactions(producer_id_filters=wanted, state_filters=OPEN_STATES)
        ids = [t.transactional_id for listings in listed.values() for t in listings]
        described = admin.describe_transactions(ids) if ids else {}
    finally:
        admin.close()
    return {
        (description.producer_id, tp.topic, tp.partition)
        for description in described.values()
        if description.state.value in OPEN_STATES
        for tp in description.topic_partitions
    }


def _abort(bootstrap_servers: str, transaction: OpenTransaction) -> None:
    admin = _admin(bootstrap_servers)
    try:
        admin.abort_transaction(
            AbortTransactionSpec(
                SyncTopicPartition(transaction.topic, transaction.partition),
                transaction.producer_id,
                transaction.producer_epoch,
                transaction.coordinator_epoch,
            )
        )
    finally:
        admin.close()


async def open_at_leaders(bootstrap_servers: str, topics: Sequence[str]) -> list[OpenTransaction]:
    """Every transaction a partition leader of `topics` holds open."""
    return await asyncio.to_thread(_open_at_leaders, bootstrap_servers, topics)


async def open_at_coordinator(
    bootstrap_servers: str, producer_ids: Iterable[int]
) -> set[tuple[int, str, int]]:
    """(producer id, topic, partition) of every transaction of `producer_ids` that its
    coordinator holds open."""
    return await asyncio.to_thread(_open_at_coordinator, bootstrap_servers, list(producer_ids))


async def abort(bootstrap_servers: str, transaction: OpenTransaction) -> None:
    """Writes an abort marker for `transaction` on its partition (the leader checks the
    producer's epoch and the coordinator's epoch against its own state)."""
    await asyncio.to_thread(_abort, bootstrap_servers, transaction)


async def read_log(
    bootstrap_servers: str, tp: TopicPartition, start: int, max_bytes: int = MAX_READ_BYTES
) -> list[LogRecord]:
    """The partition's records from `start` to its high watermark as the fetch found it,
    uncommitted, each with its producer; control records say whether they commit. Raises
    TooMuchToRead past `max_bytes` of keys and values."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers)
    await client.bootstrap()
    try:
        await client._wait_on_metadata(tp.topic)
        leader = client.cluster.leader_for_partition(tp)
        records: list[LogRecord] = []
        position, end, held = start, None, 0
        while end is None or position < end:
            request = FetchRequest(
                0,
                0,
                FETCH_BYTES,
                READ_UNCOMMITTED,
                [(tp.topic, [(tp.partition, position, FETCH_BYTES)])],
            )
            response = await client.send(leader, request)
            ((_, ((_, error_code, high, *rest),)),) = response.topics
            if error_code:
                raise for_code(error_code)(f"fetch {tp} at {position}")
            end = high if end is None else end
            batches = MemoryRecords(rest[-1])
            moved = position
            while batches.has_next():
                batch = batches.next_batch()
                if batch is None:
                    break
                for record in batch:
                    if record.offset < position or record.offset >= end:
                        continue
                    control = (
                        ControlRecord.parse(record.key) == COMMIT_MARKER
                        if batch.is_control_batch
                        else None
                    )
                    held += len(record.key or b"") + len(record.value or b"")
                    if held > max_bytes:
                        raise TooMuchToRead(f"{tp} holds over {max_bytes} bytes from {start}")
                    records.append(
                        LogRecord(
                            record.offset,
                            batch.producer_id,
                            batch.is_transactional,
                            record.key,
                            record.value,
                            tuple(record.headers),
                            control,
                        )
                    )
                moved = max(moved, batch.next_offset)
            if moved == position:  # nothing more to read below the high watermark
                break
            position = moved
        return records
    finally:
        await client.close()


@dataclass(frozen=True)
class Healed:
    transaction: OpenTransaction
    published_again: int
    aborted: bool = True  # False: it had ended meanwhile, or was no longer open


async def still_open(bootstrap_servers: str, transaction: OpenTransaction) -> bool:
    """Whether the partition's leader still holds `transaction` open, as it was found: the
    last look before an abort marker is written."""
    return any(
        t.where == transaction.where and t.producer_epoch == transaction.producer_epoch
        for t in await open_at_leaders(bootstrap_servers, [transaction.topic])
    )


def healer_id(transaction: OpenTransaction) -> str:
    """One transactional id per partition: a second healer of the same partition fences the
    first, whose copies are then aborted, before it reads the log."""
    return f"fielding-heal-{transaction.topic}-{transaction.partition}"


async def heal(
    bootstrap_servers: str, transaction: OpenTransaction, *, publish_again: bool = True
) -> Healed:
    """Publishes again, in a transaction of its own, what the abort of `transaction` would hide
    and nothing visible stands for; then aborts it. The copies land after the hanging
    transaction, so a read_committed reader sees them once it is aborted. A healer that stops
    between the two leaves the copies committed, and its next run finds them standing."""
    tp = TopicPartition(transaction.topic, transaction.partition)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        transactional_id=healer_id(transaction),
        enable_idempotence=True,
    )
    await producer.start()
    try:
        due: list[LogRecord] = []
        if publish_again:
            records = await read_log(bootstrap_servers, tp, transaction.start_offset)
            if ended(records, transaction):
                log.info(
                    "transaction ended before it was healed",
                    extra={"transaction": transaction.describe()},
                )
                return Healed(transaction, 0, aborted=False)
            due = await asyncio.to_thread(to_publish_again, records, transaction)
        if due:
            async with producer.transaction():
                sent = [
                    await producer.send(
                        tp.topic,
                        record.value,
                        key=record.key,
                        headers=list(record.headers),
                        partition=tp.partition,
                    )
                    for record in due
                ]
                await asyncio.gather(*sent)
        if not await still_open(bootstrap_servers, transaction):
            # Its marker came while the copies were written: where it was a commit, the
            # copies stand twice (a window of milliseconds, for a transaction no coordinator
            # held for over the transaction timeout).
            log.warning(
                "hanging transaction ended while it was healed",
                extra=_healed_fields(transaction, len(due)),
            )
            return Healed(transaction, len(due), aborted=False)
        await abort(bootstrap_servers, transaction)
    finally:
        await producer.stop()
    log.warning(
        "hanging transaction aborted",
        extra=_healed_fields(transaction, len(due)),
    )
    return Healed(transaction, len(due))


def _healed_fields(transaction: OpenTransaction, published_again: int) -> dict[str, object]:
    """A healed transaction's log fields: where it was (the fault suite reads these), and how
    many records were published again."""
    return {
        "transaction": transaction.describe(),
        "topic": transaction.topic,
        "partition": transaction.partition,
        "start_offset": transaction.start_offset,
        "published_again": published_again,
    }


class TransactionWatch:
    """Looks at the output partitions every so often for hanging transactions, reports each
    (a log line naming the producer, a gauge per partition) and, if told to, heals it. Every
    replica watches; two healers of one partition fence each other (`healer_id`)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        *,
        after_seconds: float,
        heal: bool,
        copies_only: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topics = list(topics)
        self._watch = HangingWatch(after_seconds)
        self._heal = heal
        # Replies are copies for requests long since answered 504: aborted, never sent again.
        self._copies_only = set(copies_only)
        self._clock = clock
        self._reported: set[tuple[str, int]] = set()

    async def check(self) -> list[OpenTransaction]:
        """One look; returns the hanging transactions it found (and healed, if told to)."""
        opened = await open_at_leaders(self._bootstrap_servers, self._topics)
        at_coordinator = (
            await open_at_coordinator(self._bootstrap_servers, (t.producer_id for t in opened))
            if opened
            else set()
        )
        hanging = self._watch.observe(self._clock(), opened, at_coordinator)
        self._report(hanging)
        for transaction in hanging if self._heal else ():
            try:  # one that cannot be healed holds no other back
                healed = await heal(
                    self._bootstrap_servers,
                    transaction,
                    publish_again=transaction.topic not in self._copies_only,
                )
            except Exception as error:
                log.warning(
                    "could not heal a hanging transaction: %r",
                    error,
                    extra={"transaction": transaction.describe()},
                )
                continue
            if healed.aborted:
                metrics.HANGING_ABORTED.labels(transaction.topic).inc()
            metrics.PUBLISHED_AGAIN.labels(transaction.topic).inc(healed.published_again)
        return hanging

    def _report(self, hanging: Sequence[OpenTransaction]) -> None:
        counts: dict[tuple[str, int], int] = {}
        for transaction in hanging:
            where = (transaction.topic, transaction.partition)
            counts[where] = counts.get(where, 0) + 1
            log.warning(
                "hanging transaction",
                extra={
                    "transaction": transaction.describe(),
                    "producer_id": transaction.producer_id,
                    "producer_epoch": transaction.producer_epoch,
                    "heal": self._heal,
                },
            )
        for topic, partition in self._reported | set(counts):
            metrics.HANGING_TRANSACTIONS.labels(topic, str(partition)).set(
                counts.get((topic, partition), 0)
            )
        self._reported |= set(counts)

    async def run(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.check()
            except Exception as error:  # the broker away or restarting: the next look tries again
                log.warning("could not look for hanging transactions: %r", error)
                log.debug("could not look for hanging transactions", exc_info=True)
            await asyncio.sleep(interval_seconds)
