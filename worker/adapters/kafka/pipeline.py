"""The pipeline of one group assignment: every command record of the partitions this member
owns waits here, is decided in batches, and each batch is published with its offsets in one
Kafka transaction.

One pipeline, not one per partition: each batch costs a database transaction and a Kafka
transaction whatever its size, so one stream of batches across all partitions keeps both few
and large. Records of a partition keep their order; those of different partitions may
share a batch. A batch is bounded in records and in bytes, so a partition of huge records
makes smaller batches, not larger transactions. A batch that is not full gathers records for
a bounded time after its oldest arrived (`Limits.gather_seconds`), so that at low rates a
transaction carries several commands rather than one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

from worker.adapters.kafka.deadline import cancelled_from_outside, within
from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.lenient_records import UNREADABLE_BATCH
from worker.observability import metrics
from worker.observability.health import Health
from worker.observability.tracing import BatchTimes, BatchTracer
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import PartitionClaims, RecordOrigin, TransientFailure

log = logging.getLogger(__name__)

# Should a step that waits on the broker hang (seen after a broker restart), the pipeline
# fails and the member rejoins, rather than stall unnoticed.
OWNERSHIP_TIMEOUT_SECONDS = 30.0
PUBLISH_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# While a batch publishes, a next batch smaller than this waits for the commit and takes in
# what arrives meanwhile: one transaction for several commands instead of one each, for what
# would have overlapped the commit (its decision, ~0.1 ms a record, and its transaction's two
# prepare round trips). A larger batch is decided at once: there the overlap pays. Measured on
# one machine (docs/decisions/lone-command-cost.md).
HOLD_BEHIND_PUBLISH = 16

Record: TypeAlias = ConsumerRecord[bytes, bytes]
T = TypeVar("T")
Transaction = TypeVar("Transaction")


class Publisher(Protocol[Transaction]):
    """The Kafka side of a pipeline (`TransactionalPublisher`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def fence(self, owner_ids: Iterable[str]) -> None: ...

    async def prepare(self, offsets: Mapping[TopicPartition, int]) -> Transaction: ...

    async def renew(
        self, transaction: Transaction, offsets: Mapping[TopicPartition, int]
    ) -> Transaction: ...

    async def publish(self, transaction: Transaction, emissions: Sequence[Emission]) -> None: ...


class Processor(Protocol):
    """Decides a batch (`BatchProcessor`): one output at least per record, and never raises."""

    async def process(self, records: Sequence[CommandRecord]) -> list[Emission]: ...


class Positions(Protocol):
    """What the pipeline reads of the consumer's positions (`AIOKafkaConsumer`)."""

    async def committed(self, tp: TopicPartition) -> int | None: ...

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...


# What a record costs in memory beyond its bytes: the record object, and each header's tuple.
RECORD_OVERHEAD = 200
HEADER_OVERHEAD = 64


def record_size(record: Record) -> int:
    """What a fetched record weighs in memory: its bytes, and the objects that hold them (a
    record of half a million empty headers is small on the topic and large here)."""
    size: int = RECORD_OVERHEAD + max(0, record.serialized_key_size)
    size += max(0, record.serialized_value_size)
    for key, value in record.headers:  # a plain loop: a generator's frame costs more
        size += HEADER_OVERHEAD + len(key) + (len(value) if value else 0)
    return size


def command_record(record: Record) -> CommandRecord:
    origin = RecordOrigin(record.topic, record.partition, record.offset)
    headers = record.headers
    if headers and headers[0][0] == UNREADABLE_BATCH:
        return CommandRecord(
            origin, None, None, (), record.timestamp, unreadable=headers[0][1].decode()
        )
    return CommandRecord(origin, record.key, record.value, tuple(headers), record.timestamp)


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
    span: Any = None  # the batch's span, when tracing is on
    taken: int = 0  # time.time_ns() when the batch was taken, and when it was decided
    decided: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """How much a pipeline takes at once."""

    max_batch: int  # records per batch
    max_batch_bytes: int  # bytes per batch (a record larger than this goes alone)
    # While a batch takes this long to decide, its transaction is opened afresh, well inside
    # the transaction timeout (a third of it).
    renew_after_seconds: float = 20.0
    # How long a batch that is not full waits for more records after its oldest arrived; 0
    # takes whatever is waiting at once. Nothing is opened meanwhile: no transaction, no lock.
    gather_seconds: float = 0.0


class AssignmentPipeline:
    """Starts by taking ownership: starts its producers, claims the partitions, fences their
    earlier owners' producers, and only then reads the committed offsets, which no earlier
    owner can move any more. The producers start first so that a later claimant's fence
    always lands after them: an owner superseded while it started can never commit.

    Two stages, so the database decides batch k+1 while Kafka commits batch k (when batch k+1
    is smaller than HOLD_BEHIND_PUBLISH, it waits for that commit instead). This is safe
    because the database side is idempotent by record: should batch k's publish fail after
    batch k+1 was decided, both are fetched again from the committed offsets and replayed from
    what the database remembers, byte for byte.
    """

    def __init__(
        self,
        partitions: Iterable[TopicPartition],
        owner_id: str,
        publisher: Publisher[Any],
        claims: PartitionClaims,
        processor: Processor,
        positions: Positions,
        limits: Limits,
        health: Health,
        tracer: BatchTracer | None = None,
    ) -> None:
        self.partitions = frozenset(partitions)
        self.owner_id = owner_id
        # Per partition: the next offset to process, as the group knows it once committed.
        self.committed: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}  # the next offset to take into a batch
        self._publisher = publisher
        self._claims = claims
        self._positions = positions
        self._processor = processor
        self._limits = limits
        self._health = health
        self._tracer = tracer
        # Records, their sizes, and when each arrived (time.monotonic()).
        self._queue: deque[tuple[Record, int, float]] = deque()
        self._queued_bytes = 0
        self._in_flight: deque[list[Record]] = deque()  # decided or deciding
        self._wake = asyncio.Event()
        self._closing = False
        self.task: asyncio.Task[None] | None = None
        self.failure_reported = False  # the consume loop has logged why it failed

    @staticmethod
    def new_owner_id(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:16]}"

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pipeline-{self.owner_id}")

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def backlog_bytes(self) -> int:
        return self._queued_bytes

    def oldest_waiting_ms(self) -> dict[TopicPartition, int]:
        """Per partition, the timestamp of its oldest record not yet committed."""
        oldest: dict[TopicPartition, int] = {}
        for record in (r for batch in self._in_flight for r in batch):
            oldest.setdefault(TopicPartition(record.topic, record.partition), int(record.timestamp))
        for record, _, _ in self._queue:
            oldest.setdefault(TopicPartition(record.topic, record.partition), int(record.timestamp))
            if len(oldest) == len(self.partitions):
                break
        return oldest

    def waiting(self) -> dict[str, int]:
        """The committed offset of each partition with records waiting (queued or in flight)."""
        partitions = {
            TopicPartition(r.topic, r.partition) for batch in self._in_flight for r in batch
        }
        partitions |= {TopicPartition(r.topic, r.partition) for r, _, _ in self._queue}
        return {f"{tp.topic}:{tp.partition}": self.committed.get(tp, -1) for tp in partitions}

    def submit(self, records: list[Record]) -> None:
        arrived = time.monotonic()
        for record in records:
            size = record_size(record)
            self._queue.append((record, size, arrived))
            self._queued_bytes += size
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Finishes the batches in flight (their offsets are committed with them) and drops the
        rest, which the partitions' next owners fetch again from the committed offsets."""
        self._closing = True
        self._queue.clear()
        self._queued_bytes = 0
        self._wake.set()
        task = self.task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.warning("pipeline did not finish in %.0fs; abandoning its batches", timeout)
                task.cancel()
                # Bounded: a task stuck in code that swallows the cancellation is left behind.
                await asyncio.wait({task}, timeout=STOP_TIMEOUT_SECONDS)
            elif task.cancelled():
                log.warning("pipeline was cancelled inside the Kafka client")
            elif task.exception() is not None and not self.failure_reported:
                # e.g. its last commit fenced: never committed. A failure the consume loop
                # has not reported (the group took the partitions back first) is said here.
                log.warning("pipeline failed while closing: %r", task.exception())
        try:
            await within(STOP_TIMEOUT_SECONDS, self._publisher.stop(), "stopping the producer")
        except PartitionLost:
            log.warning("producer did not stop; abandoned (the next owner fences it)")

    async def _take_ownership(self) -> None:
        await self._publisher.start()
        by_topic: dict[str, list[int]] = {}
        for tp in self.partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, numbers in by_topic.items():
            earlier = await _retrying(partial(self._claims.claim, topic, numbers, self.owner_id))
            await self._publisher.fence(earlier)
            still_owner = await _retrying(
                partial(self._claims.confirm_fenced, topic, numbers, self.owner_id)
            )
            if not still_owner:
                raise PartitionLost("another owner claimed the partitions meanwhile")
            if earlier:
                log.info("fenced earlier owners", extra={"owner_ids": sorted(earlier)})
        for tp in self.partitions:
            self.committed[tp] = self._next[tp] = await self._positions.committed(tp) or 0
        await self._check_log_ends()
        log.info(
            "pipeline ready",
            extra={
                "owner_id": self.owner_id,
                "offsets": {tp.partition: o for tp, o in self.committed.items()},
            },
        )

    async def _check_log_ends(self) -> None:
        """A committed offset above the log's end means the topic was deleted and made again
        (or its log truncated): the records there now are new. Policy: read the partition
        from its log start; a command id the store remembers is answered by replay, never
        applied twice."""
        tps = sorted(self.partitions)
        ends = await self._positions.end_offsets(tps)
        above = [tp for tp in tps if self.committed[tp] > ends[tp]]
        if not above:
            return
        starts = await self._positions.beginning_offsets(above)
        for tp in above:
            log.error(
                "committed offset above the log end: was the topic recreated? reading the "
                "partition from its log start",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": self.committed[tp],
                    "log_end": ends[tp],
                    "log_start": starts[tp],
                },
            )
            metrics.OFFSET_RESETS.inc()
            self.committed[tp] = self._next[tp] = starts[tp]
            self._positions.seek(tp, starts[tp])

    async def _run(self) -> None:
        try:
            await self._own_and_process()
        except asyncio.CancelledError as cancelled:
            if cancelled_from_outside():  # closed past its timeout
                raise
            # A CancelledError from a library's own task (a database or Kafka client's) would
            # end this task as cancelled: say where it came from, and fail as a lost partition.
            log.error("the pipeline was cancelled inside a library", exc_info=True)
            raise PartitionLost("pipeline cancelled inside a library") from cancelled

    async def _own_and_process(self) -> None:
        await within(OWNERSHIP_TIMEOUT_SECONDS, self._take_ownership(), "taking ownership")
        publishing: asyncio.Task[None] | None = None
        preparing: asyncio.Task[Any] | None = None
        try:
            while not self._closing:
                if publishing is not None and publishing.done():
                    publishing.result()  # raises if the publish failed
                    publishing = None
                if (gathering := self._gathering_left()) > 0:
                    await self._woken_within(gathering)  # more records, closing, or a publish
                    continue
                if publishing is not None and self._holding_behind(publishing):
                    await self._wake.wait()  # the publish ending, more records, or closing
                    self._wake.clear()
                    continue
                batch, offsets = self._take_batch()
                if not batch:
                    await self._wake.wait()  # new records, closing, or a publish ending
                    self._wake.clear()
                    continue
                self._in_flight.append(batch)
                # Kafka opens the batch's transaction with its offsets while the database
                # decides it; offset commits go out in batch order.
                preparing = asyncio.create_task(self._prepare(offsets, after=preparing))
                taken = time.time_ns()
                span = self._tracer.start_batch(len(batch)) if self._tracer else None
                with self._ended_if_failing(span):
                    with metrics.DECIDE_SECONDS.time(), self._current(span):
                        emissions, preparing = await self._decide(batch, offsets, preparing)
                    # Batches commit in order. The next batch is taken only once this one is
                    # handed over, so records wait in one growing batch, not in many small ones.
                    if publishing is not None:
                        await publishing
                decided = Decided(batch, offsets, emissions, span, taken, time.time_ns())
                publishing = asyncio.create_task(self._publish(decided, preparing))
                publishing.add_done_callback(lambda _: self._wake.set())
            if publishing is not None:
                await publishing
        finally:
            for task in (publishing, preparing):
                if task is not None:
                    task.cancel()  # no-op when done; gather retrieves a failure either way
                    await asyncio.gather(task, return_exceptions=True)

    async def _prepare(
        self, offsets: dict[TopicPartition, int], after: asyncio.Task[Any] | None
    ) -> Any:
        if after is not None:
            await after  # the previous batch's offsets reach the coordinator first
        return await within(
            PUBLISH_TIMEOUT_SECONDS, self._publisher.prepare(offsets), "preparing a transaction"
        )

    async def _decide(
        self, batch: list[Record], offsets: dict[TopicPartition, int], preparing: asyncio.Task[Any]
    ) -> tuple[list[Emission], asyncio.Task[Any]]:
        """The batch's outputs, and its transaction: renewed every `renew_after_seconds` while the
        database takes long (an outage, statement timeouts), so the broker never times it out.
        Renewals happen before the next batch's offsets join: commits stay in order."""
        deciding = asyncio.create_task(self._processor.process([command_record(r) for r in batch]))
        try:
            while True:
                done, _ = await asyncio.wait({deciding}, timeout=self._limits.renew_after_seconds)
                if done:
                    return deciding.result(), preparing
                log.warning(
                    "a batch took long to decide; opening its transaction afresh",
                    extra={"awaiting": awaiting(deciding)},
                )
                preparing = asyncio.create_task(self._renew(preparing, offsets))
        finally:
            if not deciding.done():
                deciding.cancel()
                await asyncio.gather(deciding, return_exceptions=True)

    async def _renew(self, preparing: asyncio.Task[Any], offsets: dict[TopicPartition, int]) -> Any:
        return await within(
            PUBLISH_TIMEOUT_SECONDS,
            self._publisher.renew(await preparing, offsets),
            "renewing a transaction",
        )

    def _gathering_left(self) -> float:
        """Seconds the next batch still waits for more records: until its oldest record has
        waited `gather_seconds`, unless the batch is already full. Counted from arrival, so
        records that waited while the batch before was decided are not held again."""
        limits = self._limits
        if limits.gather_seconds <= 0 or not self._queue:
            return 0.0
        if len(self._queue) >= limits.max_batch or self._queued_bytes >= limits.max_batch_bytes:
            return 0.0
        return self._queue[0][2] + limits.gather_seconds - time.monotonic()

    def _holding_behind(self, publishing: asyncio.Task[None]) -> bool:
        """Whether the next batch waits for the batch publishing now (HOLD_BEHIND_PUBLISH)."""
        if publishing.done() or self._closing:
            return False
        limits = self._limits
        held = min(limits.max_batch, HOLD_BEHIND_PUBLISH)
        return len(self._queue) < held and self._queued_bytes < limits.max_batch_bytes

    async def _woken_within(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    def _take_batch(self) -> tuple[list[Record], dict[TopicPartition, int]]:
        """The next batch, and the offsets committing it: per partition, the next to read."""
        batch: list[Record] = []
        offsets: dict[TopicPartition, int] = {}
        size = 0
        limits = self._limits
        while self._queue and len(batch) < limits.max_batch:
            record, record_bytes, _ = self._queue[0]
            if batch and size + record_bytes > limits.max_batch_bytes:
                break
            self._queue.popleft()
            self._queued_bytes -= record_bytes
            tp = TopicPartition(record.topic, record.partition)
            # Fetched before this member knew the committed offset: an earlier owner did it.
            if record.offset < self._next[tp]:
                continue
            self._next[tp] = offsets[tp] = record.offset + 1
            batch.append(record)
            size += record_bytes
        return batch, offsets

    async def _publish(self, decided: Decided, preparing: asyncio.Task[Any]) -> None:
        with self._ended_if_failing(decided.span), metrics.PUBLISH_SECONDS.time():
            transaction = await preparing
            publishing = time.time_ns()
            await within(
                PUBLISH_TIMEOUT_SECONDS,
                self._publisher.publish(transaction, decided.emissions),
                "publishing a batch",
            )
        self._in_flight.popleft()
        self.committed.update(decided.offsets)
        self._health.progressed(f"{tp.topic}:{tp.partition}" for tp in decided.offsets)
        self._observe(decided.batch, decided.emissions)
        if self._tracer is not None and decided.span is not None:
            times = BatchTimes(decided.taken, decided.decided, publishing, time.time_ns())
            try:  # the batch is committed: its spans must not undo that
                self._tracer.committed(decided.span, decided.batch, decided.emissions, times)
            except Exception:
                log.exception("could not record the batch's spans")

    @contextmanager
    def _ended_if_failing(self, span: Any) -> Iterator[None]:
        """A batch that fails here (a cancellation too) is never committed: its span ends with
        the error, rather than staying open."""
        try:
            yield
        except BaseException as error:
            if self._tracer is not None and span is not None:
                self._tracer.failed(span, error)
            raise

    def _current(self, span: Any) -> AbstractContextManager[Any]:
        """The batch's span as the current one while it is decided (its store calls' parent)."""
        return self._tracer.deciding(span) if self._tracer and span else nullcontext()

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
                metrics.COMMANDS.labels(command_type or "unknown", str(int(status or 0))).inc(count)
            elif channel is Channel.EVENT:
                metrics.EVENTS.inc(count)
            elif channel is Channel.STATE:
                metrics.RUN_STATES.inc(count)
            else:
                metrics.DLQ_RECORDS.inc(count)


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where `task` waits, outermost first (function, file:line of each coroutine it awaits
    through): the evidence for a batch that takes long to decide."""
    where: list[str] = []
    awaited: Any = task.get_coro()
    try:
        while awaited is not None and len(where) < 40:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                where.append(type(awaited).__name__)
                break
            where.append(f"{frame.f_code.co_name} {frame.f_code.co_filename}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    except Exception as error:  # evidence only: never the pipeline's end
        where.append(repr(error))
    return where
