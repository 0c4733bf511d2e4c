"""What the worker does when the Kafka client misbehaves around a broker restart: a call that
never returns, a CancelledError escaping from the client's own tasks, a background task of the
client that has ended. Each must end in a lost partition (the member rejoins with a fresh
consumer and producers), never in a member that keeps its partitions and does nothing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.test_pipeline import (
    AnswerEachRecord,
    RecordingPublisher,
    pipeline_with,
    record,
)
from worker.adapters.kafka import consumer as consumer_module
from worker.adapters.kafka.consumer import CommandConsumer, ConsumerConfig, _Rebalance
from worker.adapters.kafka.deadline import inline_within, within
from worker.adapters.kafka.errors import PartitionLost
from worker.observability.health import Health
from worker.observability.tracing import BatchTracer, Tracing

TOPIC = "commands"


async def cancelled_inside() -> None:
    """What aiokafka does when a task of its own that a call waits on is cancelled."""
    raise asyncio.CancelledError


async def test_a_cancellation_escaping_from_the_client_is_a_lost_partition() -> None:
    with pytest.raises(PartitionLost, match="publishing a batch was cancelled inside"):
        await within(5, cancelled_inside(), "publishing a batch")


@pytest.mark.parametrize("bounded", [within, inline_within])
async def test_a_cancellation_escaping_from_the_client_is_a_lost_partition_in_either_bound(
    bounded: Any,
) -> None:
    with pytest.raises(PartitionLost, match="fetching was cancelled inside"):
        await bounded(5, cancelled_inside(), "fetching")


@pytest.mark.parametrize("bounded", [within, inline_within])
async def test_a_call_past_its_bound_is_a_lost_partition(bounded: Any) -> None:
    with pytest.raises(PartitionLost, match="fetching did not finish in 0s"):
        await bounded(0.01, asyncio.sleep(60), "fetching")


@pytest.mark.parametrize("bounded", [within, inline_within])
async def test_a_shutdown_still_cancels_a_call_under_a_time_limit(bounded: Any) -> None:
    waiting = asyncio.create_task(bounded(60, asyncio.sleep(60), "fetching"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


class PublisherCancelledInside(RecordingPublisher):
    async def publish(self, transaction: Any, emissions: Any) -> None:
        await cancelled_inside()


def consumer_config() -> ConsumerConfig:
    return ConsumerConfig("localhost:1", "group", TOPIC, 6000, 60000, 100, 1 << 20, 1.0)


async def test_a_pipeline_whose_publish_is_cancelled_inside_the_client_fails_and_is_reported() -> (
    None
):
    pipeline = pipeline_with(PublisherCancelledInside(expected=1))
    pipeline.start()
    pipeline.submit([record(0, 0)])
    assert pipeline.task is not None
    await asyncio.wait({pipeline.task}, timeout=5)
    assert not pipeline.task.cancelled()
    assert isinstance(pipeline.task.exception(), PartitionLost)

    health = Health(stall_seconds=60)
    member = CommandConsumer(consumer_config(), lambda *_: pipeline, health)
    member._pipeline = pipeline  # as after an assignment
    with pytest.raises(PartitionLost, match="cancelled inside the Kafka client"):
        member._check_pipeline()
    assert health.consecutive_failures == 1
    await pipeline.close(timeout=1)  # closing a failed pipeline does not raise


async def test_a_pipeline_task_cancelled_by_a_library_loses_the_partitions() -> None:
    pipeline = pipeline_with(RecordingPublisher(expected=1))
    pipeline.task = asyncio.create_task(cancelled_inside())
    await asyncio.wait({pipeline.task})
    member = CommandConsumer(consumer_config(), lambda *_: pipeline, Health(stall_seconds=60))
    member._pipeline = pipeline
    with pytest.raises(PartitionLost, match="pipeline cancelled"):
        member._check_pipeline()
    await pipeline.close(timeout=1)  # and closing it does not raise either


class Owner:
    """Stands in for the CommandConsumer behind the rebalance listener."""

    def __init__(self) -> None:
        self.released: list[TopicPartition] = []

    async def release(self, revoked: list[TopicPartition]) -> None:
        self.released.extend(revoked)
        await cancelled_inside()

    async def adopt(self, assigned: list[TopicPartition]) -> None:
        await asyncio.sleep(60)


async def test_a_rebalance_callback_never_ends_the_clients_coordination_task() -> None:
    owner = Owner()
    listener = _Rebalance(cast(CommandConsumer, owner))
    # aiokafka's coordination task would end, and the member wait for an assignment forever.
    await listener.on_partitions_revoked([TopicPartition(TOPIC, 0)])
    assert owner.released == [TopicPartition(TOPIC, 0)]

    assigning = asyncio.create_task(listener.on_partitions_assigned([TopicPartition(TOPIC, 0)]))
    await asyncio.sleep(0.01)
    assigning.cancel()  # a shutdown still goes through
    with pytest.raises(asyncio.CancelledError):
        await assigning


class ConsumerThatNeverStops:
    async def stop(self) -> None:
        await asyncio.Event().wait()


async def test_a_consumer_that_does_not_stop_is_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "STOP_SECONDS", 0.05)
    stopping = asyncio.create_task(
        consumer_module._stop_quietly(cast(AIOKafkaConsumer, ConsumerThatNeverStops()))
    )
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done and stopping.exception() is None


async def test_a_member_whose_client_tasks_ended_is_told_apart_from_a_live_one() -> None:
    running = asyncio.create_task(asyncio.sleep(60))
    ended = asyncio.create_task(asyncio.sleep(0))
    await ended

    def client(coordination: asyncio.Task[None], fetch: asyncio.Task[None]) -> AIOKafkaConsumer:
        return cast(
            AIOKafkaConsumer,
            SimpleNamespace(
                _coordinator=SimpleNamespace(_coordination_task=coordination),
                _fetcher=SimpleNamespace(_fetch_task=fetch),
            ),
        )

    assert consumer_module._dead_client_task(client(running, running)) is None
    assert consumer_module._dead_client_task(client(ended, running)) == "coordination"
    assert consumer_module._dead_client_task(client(running, ended)) == "fetch"
    # before start() there are no tasks yet: nothing to report
    assert consumer_module._dead_client_task(cast(AIOKafkaConsumer, SimpleNamespace())) is None
    running.cancel()


class DecisionsCancelledInside(AnswerEachRecord):
    """A database client letting a cancellation of its own escape a query."""

    async def process(self, records: Any) -> Any:
        await cancelled_inside()


async def test_a_pipeline_cancelled_inside_its_database_client_fails_as_a_lost_partition() -> None:
    exported = InMemorySpanExporter()
    tracing = Tracing.create("test", [SimpleSpanProcessor(exported)])
    try:
        pipeline = pipeline_with(RecordingPublisher(expected=1), BatchTracer(tracing))
        pipeline._processor = DecisionsCancelledInside()
        pipeline.start()
        pipeline.submit([record(0, 0)])
        assert pipeline.task is not None
        await asyncio.wait({pipeline.task}, timeout=5)
        assert not pipeline.task.cancelled()
        error = pipeline.task.exception()
        assert isinstance(error, PartitionLost)
        assert str(error) == "pipeline cancelled inside a library"
        # and the batch it was deciding has its span ended, not left open
        [batch] = [s for s in exported.get_finished_spans() if s.name == "fielding batch"]
        assert batch.status.description == "not committed: CancelledError"
    finally:
        tracing.shutdown()


async def test_a_pipeline_closed_past_its_timeout_is_still_cancelled() -> None:
    class Stuck(RecordingPublisher):
        async def publish(self, transaction: Any, emissions: Any) -> None:
            await asyncio.sleep(60)

    pipeline = pipeline_with(Stuck(expected=1))
    pipeline.start()
    pipeline.submit([record(0, 0)])
    await asyncio.sleep(0.2)  # its batch is being published
    await pipeline.close(timeout=0.05)
    assert pipeline.task is not None and pipeline.task.cancelled()
