"""The assignment pipeline's bookkeeping, with the broker and the database faked: which records
it decides once it owns its partitions, and which offsets each batch commits. (Over the real
services, the fault tests check the same end to end.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.pipeline import AssignmentPipeline, Limits
from worker.observability.health import Health
from worker.observability.tracing import BatchTracer, Tracing
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import TransientFailure

TOPIC = "commands"


class RecordingPublisher:
    def __init__(self, expected: int, log: list[str] | None = None) -> None:
        self.batches: list[tuple[list[bytes], dict[TopicPartition, int]]] = []
        self.expected = expected
        self.all_published = asyncio.Event()
        self.log = log if log is not None else []
        self.renewed: list[dict[TopicPartition, int]] = []

    async def start(self) -> None:
        self.log.append("producers started")

    async def stop(self) -> None: ...

    async def fence(self, owner_ids: Iterable[str]) -> None:
        self.log.append("fenced " + ",".join(sorted(owner_ids)))

    async def renew(
        self, transaction: dict[TopicPartition, int], offsets: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        self.renewed.append(dict(offsets))
        return transaction

    async def prepare(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        return dict(offsets)  # stands in for the open transaction holding them

    async def publish(
        self, transaction: dict[TopicPartition, int], emissions: Sequence[Emission]
    ) -> None:
        self.batches.append(([e.value for e in emissions], transaction))
        if sum(len(values) for values, _ in self.batches) >= self.expected:
            self.all_published.set()


class SlowTimedPublisher(RecordingPublisher):
    """Notes when each batch's transaction is prepared and published; both take a while, so
    steps that could overlap would."""

    def __init__(self, expected: int, log: list[str] | None = None) -> None:
        super().__init__(expected, log)
        self.steps: list[tuple[str, int, str]] = []  # (step, batch number, start|end)
        self.prepared = 0

    async def prepare(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        batch, self.prepared = self.prepared, self.prepared + 1
        self.steps.append(("prepare", batch, "start"))
        await asyncio.sleep(0.003 if batch % 2 else 0.012)
        self.steps.append(("prepare", batch, "end"))
        return {**offsets, TopicPartition("batch", batch): 0}

    async def publish(
        self, transaction: dict[TopicPartition, int], emissions: Sequence[Emission]
    ) -> None:
        [batch] = [tp.partition for tp in transaction if tp.topic == "batch"]
        self.steps.append(("publish", batch, "start"))
        await asyncio.sleep(0.008)
        self.steps.append(("publish", batch, "end"))
        await super().publish(transaction, emissions)


class NoEarlierOwners:
    def __init__(
        self, outages: int = 0, log: list[str] | None = None, superseded: bool = False
    ) -> None:
        self.claimed: list[tuple[str, list[int], str]] = []
        self.outages = outages  # the first calls fail as if the database were restarting
        self.log = log if log is not None else []
        self.superseded = superseded  # another owner claims right after this one

    async def claim(self, topic: str, partitions: Sequence[int], owner_id: str) -> set[str]:
        if self.outages:
            self.outages -= 1
            raise TransientFailure("database: connection refused")
        self.claimed.append((topic, sorted(partitions), owner_id))
        self.log.append("claimed")
        return {"earlier-owner"}

    async def confirm_fenced(self, topic: str, partitions: Sequence[int], owner_id: str) -> bool:
        return not self.superseded


class Positions:
    """The consumer's committed offsets and log ends, as a dict."""

    def __init__(self, committed: dict[int, int | None], log_end: int = 1000) -> None:
        self._committed = committed
        self.log_end = log_end
        self.seeks: dict[TopicPartition, int] = {}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._committed[tp.partition]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log_end for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


class AnswerEachRecord:
    """Stands in for the BatchProcessor: one result per record, naming where it came from."""

    async def process(self, records: Sequence[CommandRecord]) -> list[Emission]:
        return [
            Emission(Channel.RESULT, r.key, f"{r.origin.partition}:{r.origin.offset}".encode())
            for r in records
        ]


def record(partition: int, offset: int, value: bytes = b"{}") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=[],
    )


class FencedPublisher(RecordingPublisher):
    """A publisher whose commit is refused: a newer owner fenced its producer."""

    async def publish(
        self, transaction: dict[TopicPartition, int], emissions: Sequence[Emission]
    ) -> None:
        raise PartitionLost("publish failed: ProducerFenced")


def pipeline_with(
    publisher: RecordingPublisher, tracer: BatchTracer | None = None
) -> AssignmentPipeline:
    return AssignmentPipeline(
        [TopicPartition(TOPIC, 0)],
        AssignmentPipeline.new_owner_id("group.commands"),
        publisher,
        NoEarlierOwners(),
        AnswerEachRecord(),
        Positions({0: 0}),
        Limits(100, 1 << 20),
        Health(stall_seconds=60),
        tracer,
    )


async def failed(pipeline: AssignmentPipeline) -> BaseException | None:
    """Starts `pipeline` with one record and returns how its task ended (5 s at most)."""
    pipeline.start()
    pipeline.submit([record(0, 0)])
    assert pipeline.task is not None
    await asyncio.wait({pipeline.task}, timeout=5)
    return pipeline.task.exception()


async def run_pipeline(
    committed: dict[int, int | None],
    records: list[ConsumerRecord[bytes, bytes]],
    max_batch: int = 100,
    claim_outages: int = 0,
    publisher_type: type[RecordingPublisher] = RecordingPublisher,
    max_batch_bytes: int = 1 << 20,
    positions: Positions | None = None,
    processor: object | None = None,
    renew_after_seconds: float = 20.0,
) -> tuple[AssignmentPipeline, RecordingPublisher, NoEarlierOwners]:
    positions = positions or Positions(committed)
    expected = len([r for r in records if r.offset >= (committed[r.partition] or 0)])
    log: list[str] = []
    publisher = publisher_type(expected, log)
    claims = NoEarlierOwners(claim_outages, log)
    pipeline = AssignmentPipeline(
        [TopicPartition(TOPIC, p) for p in committed],
        AssignmentPipeline.new_owner_id("group.commands"),
        publisher,
        claims,
        processor or AnswerEachRecord(),  # type: ignore[arg-type]
        positions,
        Limits(max_batch, max_batch_bytes, renew_after_seconds),
        Health(stall_seconds=60),
    )
    pipeline.start()
    pipeline.submit(records)  # before it has read the committed offsets, as after a rebalance
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    return pipeline, publisher, claims


def decided(publisher: RecordingPublisher) -> list[bytes]:
    return [value for values, _ in publisher.batches for value in values]


async def test_records_below_the_committed_offset_are_not_decided_again() -> None:
    # An earlier owner committed partition 0 up to offset 5 after these were fetched.
    records = [record(0, o) for o in range(3, 8)] + [record(1, o) for o in range(0, 2)]
    pipeline, publisher, _ = await run_pipeline({0: 5, 1: None}, records)
    assert sorted(decided(publisher)) == [b"0:5", b"0:6", b"0:7", b"1:0", b"1:1"]
    assert pipeline.committed == {TopicPartition(TOPIC, 0): 8, TopicPartition(TOPIC, 1): 2}


async def test_a_batch_commits_the_next_offset_of_every_partition_in_it() -> None:
    records = [record(0, 0), record(1, 0), record(0, 1), record(2, 0), record(1, 1)]
    _, publisher, claims = await run_pipeline({0: None, 1: None, 2: None}, records, max_batch=3)
    assert [offsets for _, offsets in publisher.batches] == [
        {TopicPartition(TOPIC, 0): 2, TopicPartition(TOPIC, 1): 1},
        {TopicPartition(TOPIC, 2): 1, TopicPartition(TOPIC, 1): 2},
    ]
    assert decided(publisher) == [b"0:0", b"1:0", b"0:1", b"2:0", b"1:1"]  # each partition in order
    [(topic, partitions, owner_id)] = claims.claimed
    assert (topic, partitions) == (TOPIC, [0, 1, 2]) and owner_id.startswith("group.commands-")


async def test_each_assignment_publishes_under_an_owner_id_of_its_own() -> None:
    first, _, _ = await run_pipeline({0: None}, [record(0, 0)])
    second, _, _ = await run_pipeline({0: 1}, [record(0, 1)])
    assert first.owner_id != second.owner_id


async def test_a_database_outage_while_claiming_is_waited_out() -> None:
    _, publisher, claims = await run_pipeline({0: None}, [record(0, 0)], claim_outages=2)
    assert decided(publisher) == [b"0:0"] and len(claims.claimed) == 1


async def test_transactions_are_prepared_and_published_strictly_in_batch_order() -> None:
    # Prepared ahead (while the database decides), but: a batch's offsets join after the
    # previous batch's, its outputs go out after the previous commit, and a producer is reused
    # (every second batch) only after its last transaction was published.
    records = [record(p, o) for o in range(4) for p in range(3)]
    _, publisher, _ = await run_pipeline(
        {0: None, 1: None, 2: None}, records, max_batch=2, publisher_type=SlowTimedPublisher
    )
    steps = cast(SlowTimedPublisher, publisher).steps
    at = {step: i for i, step in enumerate(steps)}
    batches = publisher.prepared if isinstance(publisher, SlowTimedPublisher) else 0
    assert batches == 6
    for k in range(batches):
        assert at[("prepare", k, "end")] < at[("publish", k, "start")]
        if k >= 1:
            assert at[("prepare", k - 1, "end")] < at[("prepare", k, "start")]
            assert at[("publish", k - 1, "end")] < at[("publish", k, "start")]
        if k >= 2:
            assert at[("publish", k - 2, "end")] < at[("prepare", k, "start")]
    # and preparing did overlap publishing somewhere, or it would gain nothing
    assert any(
        at[("prepare", k, "start")] < at[("publish", k - 1, "end")] for k in range(1, batches)
    )


async def test_producers_start_before_the_claim_so_a_later_claimants_fence_wins() -> None:
    _, publisher, _ = await run_pipeline({0: None}, [record(0, 0)])
    assert publisher.log == ["producers started", "claimed", "fenced earlier-owner"]


async def test_an_owner_superseded_while_it_started_never_publishes() -> None:
    claims = NoEarlierOwners(superseded=True)
    publisher = RecordingPublisher(1)
    pipeline = AssignmentPipeline(
        [TopicPartition(TOPIC, 0)],
        "owner",
        publisher,
        claims,
        AnswerEachRecord(),
        Positions({0: None}),
        Limits(100, 1 << 20),
        Health(stall_seconds=60),
    )
    pipeline.start()
    pipeline.submit([record(0, 0)])
    assert pipeline.task is not None
    with pytest.raises(PartitionLost):
        await asyncio.wait_for(pipeline.task, 5)
    assert publisher.batches == []


async def test_a_batch_is_bounded_in_bytes_and_a_huge_record_goes_alone() -> None:
    records = [
        record(0, 0, b"a" * 400),
        record(0, 1, b"b" * 400),
        record(0, 2, b"c" * 2000),
        record(0, 3, b"d" * 10),
    ]
    _, publisher, _ = await run_pipeline({0: None}, records, max_batch_bytes=1500)
    assert [len(values) for values, _ in publisher.batches] == [2, 1, 1]


async def test_a_committed_offset_above_the_log_end_reads_the_partition_from_its_start() -> None:
    # The topic was deleted and made again: 3 records now, the group committed 500 before.
    positions = Positions({0: 500}, log_end=3)
    records = [record(0, o) for o in range(3)]
    pipeline, publisher, _ = await run_pipeline({0: 0}, records, positions=positions)
    assert decided(publisher) == [b"0:0", b"0:1", b"0:2"]
    assert positions.seeks == {TopicPartition(TOPIC, 0): 0}
    assert pipeline.committed == {TopicPartition(TOPIC, 0): 3}


async def test_a_transaction_opened_long_before_its_batch_was_decided_is_renewed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class SlowDecisions(AnswerEachRecord):
        async def process(self, records: Sequence[CommandRecord]) -> list[Emission]:
            await self.slow_store_call()
            return await super().process(records)

        async def slow_store_call(self) -> None:
            await asyncio.sleep(0.1)

    with caplog.at_level(logging.WARNING):
        _, publisher, _ = await run_pipeline(
            {0: None}, [record(0, 0)], processor=SlowDecisions(), renew_after_seconds=0.05
        )
    assert publisher.renewed == [{TopicPartition(TOPIC, 0): 1}]
    assert decided(publisher) == [b"0:0"]
    # The warning says where the batch waits: the evidence when a call never returns.
    [warning] = [r for r in caplog.records if "took long to decide" in r.getMessage()]
    waits = [where.split()[0] for where in warning.__dict__["awaiting"]]
    assert waits[:3] == ["process", "slow_store_call", "sleep"], waits


async def test_a_batch_whose_publish_failed_has_its_span_ended_with_the_error() -> None:
    exported = InMemorySpanExporter()
    tracing = Tracing.create("test", [SimpleSpanProcessor(exported)])
    try:
        pipeline = pipeline_with(FencedPublisher(expected=1), BatchTracer(tracing))
        assert isinstance(await failed(pipeline), PartitionLost)
        [batch] = [s for s in exported.get_finished_spans() if s.name == "fielding batch"]
        assert batch.status.status_code is StatusCode.ERROR
        assert batch.status.description == "not committed: PartitionLost"
    finally:
        tracing.shutdown()


async def test_a_failure_the_group_took_the_partitions_away_before_reporting_is_logged_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A zombie woken after its partitions moved: its commit is refused, and the rebalance
    # closes the pipeline before the consume loop has looked at it.
    pipeline = pipeline_with(FencedPublisher(expected=1))
    await failed(pipeline)
    await pipeline.close(timeout=1)
    assert "pipeline failed while closing" in caplog.text
    assert "publish failed: ProducerFenced" in caplog.text


class TimedPublisher(RecordingPublisher):
    """Notes when each batch was published (time.monotonic())."""

    def __init__(self, expected: int, log: list[str] | None = None) -> None:
        super().__init__(expected, log)
        self.published_at: list[float] = []

    async def publish(
        self, transaction: dict[TopicPartition, int], emissions: Sequence[Emission]
    ) -> None:
        self.published_at.append(time.monotonic())
        await super().publish(transaction, emissions)


class ReadyPositions(Positions):
    """Says when the pipeline has read its log ends: the last step of taking ownership."""

    def __init__(self, committed: dict[int, int | None]) -> None:
        super().__init__(committed)
        self.ready = asyncio.Event()

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.ready.set()
        return await super().end_offsets(tps)


def gathering_pipeline(
    publisher: RecordingPublisher,
    gather_seconds: float,
    max_batch: int = 100,
    processor: object | None = None,
) -> tuple[AssignmentPipeline, asyncio.Event]:
    """A pipeline over partitions 0 and 1, and the event set once it owns them."""
    positions = ReadyPositions({0: None, 1: None})
    pipeline = AssignmentPipeline(
        [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)],
        AssignmentPipeline.new_owner_id("group.commands"),
        publisher,
        NoEarlierOwners(),
        processor or AnswerEachRecord(),  # type: ignore[arg-type]
        positions,
        Limits(max_batch, 1 << 20, gather_seconds=gather_seconds),
        Health(stall_seconds=60),
    )
    return pipeline, positions.ready


async def offered_apart(
    gather_seconds: float, records: list[ConsumerRecord[bytes, bytes]], apart: float
) -> RecordingPublisher:
    """Submits `records` one at a time, `apart` seconds from each other, to a pipeline that
    already owns its partitions; returns its publisher once all are published."""
    publisher = RecordingPublisher(len(records))
    pipeline, owned = gathering_pipeline(publisher, gather_seconds)
    pipeline.start()
    await asyncio.wait_for(owned.wait(), 5)
    for record_ in records:
        pipeline.submit([record_])
        await asyncio.sleep(apart)
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    return publisher


async def test_records_arriving_within_the_gathering_window_share_one_transaction() -> None:
    records = [record(0, 0), record(1, 0), record(0, 1), record(1, 1)]
    publisher = await offered_apart(1.0, records, apart=0.02)
    assert [offsets for _, offsets in publisher.batches] == [
        {TopicPartition(TOPIC, 0): 2, TopicPartition(TOPIC, 1): 2}
    ]
    assert decided(publisher) == [b"0:0", b"1:0", b"0:1", b"1:1"]


async def test_without_a_gathering_window_each_record_goes_as_soon_as_it_arrives() -> None:
    records = [record(0, 0), record(1, 0), record(0, 1), record(1, 1)]
    publisher = await offered_apart(0.0, records, apart=0.05)
    assert [len(values) for values, _ in publisher.batches] == [1, 1, 1, 1]


async def test_a_lone_record_waits_the_window_and_no_longer() -> None:
    publisher = TimedPublisher(1)
    pipeline, _ = gathering_pipeline(publisher, gather_seconds=0.2)
    pipeline.start()
    submitted = time.monotonic()
    pipeline.submit([record(0, 0)])  # before ownership is taken: the window still counts
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    [published] = publisher.published_at
    assert 0.2 <= published - submitted < 0.6
    assert pipeline.committed[TopicPartition(TOPIC, 0)] == 1


async def test_a_full_batch_does_not_wait_for_the_window() -> None:
    publisher = RecordingPublisher(3)
    pipeline, _ = gathering_pipeline(publisher, gather_seconds=60, max_batch=3)
    pipeline.start()
    pipeline.submit([record(0, 0), record(1, 0), record(0, 1)])
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    assert decided(publisher) == [b"0:0", b"1:0", b"0:1"]


async def test_records_that_waited_while_the_batch_before_was_decided_are_not_held_again() -> None:
    class SlowDecisions(AnswerEachRecord):
        async def process(self, records: Sequence[CommandRecord]) -> list[Emission]:
            await asyncio.sleep(0.4)
            return await super().process(records)

    publisher = TimedPublisher(2)
    pipeline, owned = gathering_pipeline(publisher, gather_seconds=0.2, processor=SlowDecisions())
    pipeline.start()
    await asyncio.wait_for(owned.wait(), 5)
    started = time.monotonic()
    pipeline.submit([record(0, 0)])  # taken at 0.2 s, decided at 0.6 s
    await asyncio.sleep(0.3)
    pipeline.submit([record(1, 0)])  # its window ends at 0.5 s, while the first is decided
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    assert [len(values) for values, _ in publisher.batches] == [1, 1]
    # Taken at hand-over (0.6 s) and decided by 1.0 s; held for another window, 1.2 s.
    assert publisher.published_at[1] - started < 1.15


async def test_closing_while_gathering_commits_nothing_and_does_not_wait_out_the_window() -> None:
    # The records gathering are dropped; the partitions' next owner fetches them again from
    # the committed offsets.
    publisher = RecordingPublisher(1)
    pipeline, owned = gathering_pipeline(publisher, gather_seconds=60)
    pipeline.start()
    await asyncio.wait_for(owned.wait(), 5)
    pipeline.submit([record(0, 0)])
    await asyncio.sleep(0.05)
    closing = time.monotonic()
    await pipeline.close(timeout=5)
    assert time.monotonic() - closing < 1
    assert publisher.batches == []
    assert pipeline.committed == {TopicPartition(TOPIC, 0): 0, TopicPartition(TOPIC, 1): 0}
    assert pipeline.task is not None and pipeline.task.exception() is None


class FirstCommitHeld(RecordingPublisher):
    """The first batch's commit lasts until the test releases it. Logs when each starts and ends."""

    def __init__(self, expected: int, log: list[str]) -> None:
        super().__init__(expected, log)
        self.first_started = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(
        self, transaction: dict[TopicPartition, int], emissions: Sequence[Emission]
    ) -> None:
        first = not self.first_started.is_set()
        self.log.append("publish start")
        if first:
            self.first_started.set()
            await self.release.wait()
        await super().publish(transaction, emissions)
        self.log.append("publish end")


class LoggedDecisions(AnswerEachRecord):
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.decided = asyncio.Event()  # set at each decision

    async def process(self, records: Sequence[CommandRecord]) -> list[Emission]:
        self.log.append(f"decide {len(records)}")
        self.decided.set()
        return await super().process(records)

    async def batch_of(self, size: int) -> None:
        """Waits (5 s at most) until a batch of `size` records has been decided."""
        async with asyncio.timeout(5):
            while f"decide {size}" not in self.log:
                self.decided.clear()
                await self.decided.wait()


async def committing_first(
    expected: int,
) -> tuple[AssignmentPipeline, FirstCommitHeld, LoggedDecisions]:
    """A pipeline whose first batch, one record, is committing until the test releases it."""
    log: list[str] = []
    publisher = FirstCommitHeld(expected, log)
    processor = LoggedDecisions(log)
    pipeline, owned = gathering_pipeline(publisher, 0, processor=processor)
    pipeline.start()
    await asyncio.wait_for(owned.wait(), 5)
    pipeline.submit([record(0, 0)])
    await asyncio.wait_for(publisher.first_started.wait(), 5)
    return pipeline, publisher, processor


def decisions(log: list[str]) -> list[str]:
    return [line for line in log if line.startswith("decide")]


async def test_a_few_records_arriving_while_a_batch_commits_go_together_after_it() -> None:
    # Deciding them at once would give each a transaction of its own; waiting for the commit
    # costs them only what would have overlapped it.
    pipeline, publisher, processor = await committing_first(3)
    log = processor.log
    pipeline.submit([record(1, 0)])
    await asyncio.sleep(0.05)
    pipeline.submit([record(0, 1)])
    await asyncio.sleep(0.05)
    assert decisions(log) == ["decide 1"]  # held while the first commits
    publisher.release.set()
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    assert [len(values) for values, _ in publisher.batches] == [1, 2]
    assert log[log.index("publish end") + 1] == "decide 2"
    assert decided(publisher) == [b"0:0", b"1:0", b"0:1"]


async def test_a_held_batch_goes_once_it_reaches_the_hold_size_while_the_commit_lasts() -> None:
    pipeline, publisher, processor = await committing_first(17)
    log = processor.log
    pipeline.submit([record(1, 0)])
    await asyncio.sleep(0.05)
    assert decisions(log) == ["decide 1"]
    pipeline.submit([record(p, o) for o in range(1, 9) for p in (0, 1) if (p, o) != (1, 8)])
    await processor.batch_of(16)
    assert "publish end" not in log  # decided beside the commit
    publisher.release.set()
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
    assert [len(values) for values, _ in publisher.batches] == [1, 16]


async def test_a_next_batch_of_many_records_is_decided_while_the_one_before_commits() -> None:
    pipeline, publisher, processor = await committing_first(17)
    log = processor.log
    pipeline.submit([record(p, o) for o in range(1, 9) for p in (0, 1)])  # 16 records
    await processor.batch_of(16)
    assert "publish end" not in log
    publisher.release.set()
    await asyncio.wait_for(publisher.all_published.wait(), 5)
    await pipeline.close(timeout=5)
