"""The consume loop: fetches command records, hands them to the pipeline of the current
assignment, and follows the group as partitions come and go.

Offsets are never committed here: the pipeline commits each batch's offsets inside the Kafka
transaction that publishes the batch's outputs, after the database transaction committed.
Record batches are read through `lenient_records`, so a record whose header key is not UTF-8
reaches the pipeline (and the DLQ) instead of stopping the fetcher; committed offsets are read
through `strict_offset_fetch`, so a coordinator still loading is not "nothing committed".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from worker.adapters.kafka import lenient_records, strict_offset_fetch
from worker.adapters.kafka.deadline import cancelled_from_outside, inline_within, within
from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.pipeline import AssignmentPipeline, Positions
from worker.observability import metrics
from worker.observability.health import Health

log = logging.getLogger(__name__)

LAG_REFRESH_SECONDS = 2.0
# How long stopping a consumer may take before it is abandoned.
STOP_SECONDS = 30.0

PipelineFactory = Callable[[frozenset[TopicPartition], Positions], AssignmentPipeline]


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    bootstrap_servers: str
    group_id: str
    topic: str
    session_timeout_ms: int
    max_poll_interval_ms: int
    # Fetched records waiting for the pipeline, at most: fetching pauses above either bound.
    max_buffered_records: int
    max_buffered_bytes: int
    shutdown_timeout_seconds: float


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stops the consumer, or abandons it after STOP_SECONDS: its group coordinator waits for
    its coordination task without a limit. An abandoned member leaves the group when its
    session times out."""
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_SECONDS)
    if not done:
        stopping.cancel()
        log.warning("the Kafka consumer did not stop in %.0fs; abandoned", STOP_SECONDS)
    elif stopping.cancelled():
        # aiokafka can let the cancellation of its own fetch task escape from stop() when the
        # broker went away.
        log.debug("consumer stop: internal task cancelled")
    elif (error := stopping.exception()) is not None:
        log.debug("consumer stop failed", exc_info=error)
        if not isinstance(error, KafkaError):
            raise error
    else:
        return
    await _close_what_stop_left(consumer)


async def _close_what_stop_left(consumer: AIOKafkaConsumer) -> None:
    """stop() closes the group coordinator first, which re-raises the error of a coordination
    task that has died, and then never closes the fetcher and the connections: closed here,
    best effort, so that each rejoin does not leak a client."""
    for part in (getattr(consumer, "_fetcher", None), getattr(consumer, "_client", None)):
        close = getattr(part, "close", None)
        if close is None:
            continue
        try:
            await within(STOP_SECONDS / 3, close(), f"closing the consumer's {type(part).__name__}")
        except Exception:
            log.debug("closing the consumer's %s failed", type(part).__name__, exc_info=True)


def _dead_client_task(consumer: AIOKafkaConsumer) -> str | None:
    """Which of aiokafka's background tasks has ended, if one has: a member whose fetch or
    coordination task is gone keeps its partitions (the heartbeat runs apart) and does nothing
    with them. Private attributes, read defensively: aiokafka is pinned below 0.15."""
    coordinator = getattr(consumer, "_coordinator", None)
    fetcher = getattr(consumer, "_fetcher", None)
    for name, task in (
        ("coordination", getattr(coordinator, "_coordination_task", None)),
        ("fetch", getattr(fetcher, "_fetch_task", None)),
    ):
        if isinstance(task, asyncio.Task) and task.done():
            return name
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: CommandConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await _shielded_from_library_cancellation(self._owner.release(revoked), "revoke")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await _shielded_from_library_cancellation(self._owner.adopt(assigned), "assign")


async def _shielded_from_library_cancellation(call: Awaitable[None], what: str) -> None:
    """aiokafka runs these callbacks in its coordination task and catches only Exception: a
    CancelledError escaping from a library call in them would end that task without a word,
    and the member would wait for an assignment forever. Only a shutdown may cancel them."""
    try:
        await call
    except asyncio.CancelledError:
        if cancelled_from_outside():
            raise
        log.error("the %s callback was cancelled inside a library; carrying on", what)


class CommandConsumer:
    def __init__(
        self, config: ConsumerConfig, make_pipeline: PipelineFactory, health: Health
    ) -> None:
        lenient_records.install()
        strict_offset_fetch.install()
        self._config = config
        self._make_pipeline = make_pipeline
        self._health = health
        self._pipeline: AssignmentPipeline | None = None
        self._paused = False
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set; rejoins the group after losing a partition, and keeps
        trying while the broker cannot be reached (nothing is committed meanwhile)."""
        while not stop.is_set():
            try:
                await self._run_member(stop)
            except PartitionLost as lost:
                log.warning("partition lost (%s); rejoining the group", lost)
                await asyncio.sleep(1.0)
            except KafkaError as error:
                log.warning("kafka unreachable (%r); retrying", error)
                await asyncio.sleep(2.0)

    async def _run_member(self, stop: asyncio.Event) -> None:
        c = self._config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=c.bootstrap_servers,
            group_id=c.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=c.session_timeout_ms,
            heartbeat_interval_ms=max(500, c.session_timeout_ms // 5),
            max_poll_interval_ms=c.max_poll_interval_ms,
            rebalance_timeout_ms=c.max_poll_interval_ms,
            # What the fetcher may hold unread, whatever the backlog: at aiokafka's 50 MB per
            # fetch, the worker's memory would depend on how far ahead it happened to read.
            # A partition's fetch returns a batch as large as the topic's default limit
            # (1,048,588 bytes) whichever partition comes first in the fetch.
            max_partition_fetch_bytes=(1 << 20) + (64 << 10),
            fetch_max_bytes=8 << 20,
        )
        consumer.subscribe([c.topic], listener=_Rebalance(self))
        self._consumer = consumer
        next_lag_refresh = 0.0
        # start() and getmany() wait for an assignment without a limit while the group
        # rebalances; a rebalance takes at most the rebalance timeout plus a revoke.
        bound = c.max_poll_interval_ms / 1000 + c.shutdown_timeout_seconds + STOP_SECONDS
        try:
            # inside: a start that fails still closes what it opened
            await inline_within(bound, consumer.start(), "joining the group")
            while not stop.is_set():
                # In this task: the records and the assignment they are checked against below
                # are read with no rebalance callback run in between.
                fetched = await inline_within(
                    bound,
                    consumer.getmany(timeout_ms=100, max_records=c.max_buffered_records),
                    "fetching",
                )
                if dead := _dead_client_task(consumer):
                    raise PartitionLost(f"the Kafka consumer's {dead} task has ended")
                assignment = consumer.assignment()
                for tp, records in fetched.items():
                    if tp in assignment:  # never act for a partition that has moved on
                        self._pipeline_for(assignment).submit(records)
                self._check_pipeline()
                self._apply_backpressure(consumer)
                if time.monotonic() >= next_lag_refresh:
                    self._refresh_lag(consumer)
                    next_lag_refresh = time.monotonic() + LAG_REFRESH_SECONDS
        finally:
            await self.release(list(self._pipeline.partitions) if self._pipeline else [])
            await _stop_quietly(consumer)
            self._consumer = None
            self._health.in_group = False

    def _check_pipeline(self) -> None:
        pipeline = self._pipeline
        task = pipeline.task if pipeline else None
        if pipeline is None or task is None or not task.done():
            return
        # Only `release` cancels a pipeline, and it forgets the pipeline first: a cancelled one
        # here was cancelled inside a library, and holds its partitions while doing nothing.
        error = PartitionLost("pipeline cancelled") if task.cancelled() else task.exception()
        if error is None:
            return
        lost = (
            error
            if isinstance(error, PartitionLost)
            else PartitionLost(f"pipeline failed: {error!r}")
        )
        self._health.failed(str(lost), pipeline.waiting())
        pipeline.failure_reported = True  # logged by `run` as the partition lost
        raise lost from error

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        c = self._config
        records, size = pipeline.backlog, pipeline.backlog_bytes
        if not self._paused and (records >= c.max_buffered_records or size >= c.max_buffered_bytes):
            consumer.pause(*pipeline.partitions)
            self._paused = True
        elif (
            self._paused
            and records < c.max_buffered_records // 2
            and size < c.max_buffered_bytes // 2
        ):
            consumer.resume(*pipeline.partitions)
            self._paused = False

    def _refresh_lag(self, consumer: AIOKafkaConsumer) -> None:
        pipeline = self._pipeline
        if pipeline is None or len(pipeline.committed) < len(pipeline.partitions):
            return  # between assignments, or not ready: nothing is known, nothing is idle
        total = 0
        now_ms = time.time() * 1000
        oldest = pipeline.oldest_waiting_ms()
        for tp in pipeline.partitions:
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            committed = pipeline.committed.get(tp)
            if end is None or committed is None:
                continue
            lag = max(0, end - committed)
            total += lag
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(lag)
            age = max(0.0, (now_ms - oldest[tp]) / 1000) if tp in oldest and lag else 0.0
            metrics.CONSUMER_LAG_SECONDS.labels(*labels).set(age)
        self._health.total_lag = total
        if total == 0:
            self._health.idle()  # nothing to do is not a stall

    def _pipeline_for(self, assignment: set[TopicPartition]) -> AssignmentPipeline:
        """The assignment's pipeline; made here too, since records can arrive before the
        rebalance listener has run."""
        pipeline = self._pipeline
        if pipeline is None:
            assert self._consumer is not None
            pipeline = self._make_pipeline(frozenset(assignment), self._consumer)
            pipeline.start()
            self._pipeline = pipeline
        return pipeline

    async def adopt(self, assigned: list[TopicPartition]) -> None:
        if self._pipeline is not None and self._pipeline.partitions != frozenset(assigned):
            # never expected with eager rebalancing
            await self.release(list(self._pipeline.partitions))
        if assigned:
            self._pipeline_for(set(assigned))
        metrics.REBALANCES.labels("assigned").inc(len(assigned))
        metrics.ASSIGNED_PARTITIONS.set(len(assigned))
        self._health.in_group = True
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )

    async def release(self, revoked: list[TopicPartition]) -> None:
        """Closes the pipeline if it owns any revoked partition: the group protocol here is
        eager, so a rebalance takes every partition back at once."""
        pipeline = self._pipeline
        if pipeline is None or not pipeline.partitions & set(revoked):
            return
        self._pipeline = None
        self._paused = False
        await pipeline.close(self._config.shutdown_timeout_seconds)
        for tp in pipeline.partitions:
            labels = (tp.topic, str(tp.partition))
            for gauge in (metrics.CONSUMER_LAG, metrics.CONSUMER_LAG_SECONDS):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        metrics.REBALANCES.labels("revoked").inc(len(pipeline.partitions))
        metrics.ASSIGNED_PARTITIONS.set(0)
        log.info(
            "partitions revoked",
            extra={"partitions": sorted(tp.partition for tp in pipeline.partitions)},
        )
