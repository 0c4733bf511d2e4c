"""The consume loop: fetches command records, hands each partition's records to its lane,
and follows the group as partitions come and go.

Offsets are never committed here: each lane commits its batch's offset inside the Kafka
transaction that publishes the batch's outputs, after the database transaction committed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from worker.adapters.kafka.lane import PartitionLane
from worker.adapters.kafka.publisher import PartitionLost, TransactionalPublisher
from worker.observability import metrics
from worker.observability.health import Health
from worker.service.outputs import Channel
from worker.service.processor import BatchProcessor
from worker.settings import Settings

log = logging.getLogger(__name__)

LAG_REFRESH_SECONDS = 2.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: CommandConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._owner.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._owner.adopt(assigned)


class CommandConsumer:
    def __init__(self, settings: Settings, processor: BatchProcessor, health: Health) -> None:
        self._settings = settings
        self._processor = processor
        self._health = health
        self._lanes: dict[TopicPartition, PartitionLane] = {}
        self._paused: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._topics = {
            Channel.RESULT: settings.results_topic,
            Channel.EVENT: settings.events_topic,
            Channel.DLQ: settings.dlq_topic,
        }

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
        s = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(500, s.session_timeout_ms // 5),
            max_poll_interval_ms=s.max_poll_interval_ms,
            rebalance_timeout_ms=s.max_poll_interval_ms,
            max_partition_fetch_bytes=4 << 20,
        )
        consumer.subscribe([s.commands_topic], listener=_Rebalance(self))
        self._consumer = consumer
        await consumer.start()
        next_lag_refresh = 0.0
        try:
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=100, max_records=s.max_batch * 4)
                assignment = consumer.assignment()
                for tp, records in fetched.items():
                    if tp in assignment:  # never act for a partition that has moved on
                        self._lane(tp).submit(records)
                self._check_lanes()
                self._apply_backpressure(consumer)
                if time.monotonic() >= next_lag_refresh:
                    self._refresh_lag(consumer)
                    next_lag_refresh = time.monotonic() + LAG_REFRESH_SECONDS
        finally:
            await self.release(list(self._lanes))
            try:
                await consumer.stop()
            except KafkaError:
                log.debug("consumer stop failed", exc_info=True)
            self._consumer = None
            self._health.in_group = False

    def _check_lanes(self) -> None:
        for lane in self._lanes.values():
            if lane.task.done() and not lane.task.cancelled():
                error = lane.task.exception()
                if isinstance(error, PartitionLost):
                    raise error
                if error is not None:
                    raise PartitionLost(f"lane failed: {error!r}") from error

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        high = self._settings.max_batch * 4
        for tp, lane in self._lanes.items():
            if tp not in self._paused and lane.backlog >= high:
                consumer.pause(tp)
                self._paused.add(tp)
            elif tp in self._paused and lane.backlog < high // 2:
                consumer.resume(tp)
                self._paused.discard(tp)

    def _refresh_lag(self, consumer: AIOKafkaConsumer) -> None:
        total = 0
        now_ms = time.time() * 1000
        for tp, lane in self._lanes.items():
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is None:
                continue
            lag = max(0, end - lane.committed)
            total += lag
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(lag)
            oldest = lane.oldest_waiting_ms()
            age = max(0.0, (now_ms - oldest) / 1000) if oldest is not None and lag else 0.0
            metrics.CONSUMER_LAG_SECONDS.labels(*labels).set(age)
        self._health.total_lag = total
        if total == 0:
            self._health.progressed()  # nothing to do is not a stall

    def _lane(self, tp: TopicPartition) -> PartitionLane:
        """The partition's lane; made here too, since records can arrive before the rebalance
        listener has run."""
        lane = self._lanes.get(tp)
        if lane is None:
            consumer, s = self._consumer, self._settings
            assert consumer is not None
            publisher = TransactionalPublisher(
                s.kafka_bootstrap_servers, f"{s.transactional_id_prefix}-{tp.partition}",
                s.consumer_group, self._topics,
            )
            lane = PartitionLane(tp, publisher, self._processor, s.max_batch, consumer.committed,
                                 self._health)
            self._lanes[tp] = lane
        return lane

    async def adopt(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._lane(tp)
        metrics.REBALANCES.labels("assigned").inc(len(assigned))
        metrics.ASSIGNED_PARTITIONS.set(len(self._lanes))
        self._health.in_group = True
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})

    async def release(self, revoked: list[TopicPartition]) -> None:
        lanes = [self._lanes.pop(tp) for tp in revoked if tp in self._lanes]
        await asyncio.gather(*(lane.close(self._settings.shutdown_timeout_seconds) for lane in lanes))
        for lane in lanes:
            self._paused.discard(lane.tp)
            labels = (lane.tp.topic, str(lane.tp.partition))
            for gauge in (metrics.CONSUMER_LAG, metrics.CONSUMER_LAG_SECONDS):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        if revoked:
            metrics.REBALANCES.labels("revoked").inc(len(revoked))
            log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})
        metrics.ASSIGNED_PARTITIONS.set(len(self._lanes))
