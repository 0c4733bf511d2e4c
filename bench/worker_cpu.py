"""The worker's CPU per command in process, with no service: `python -m bench.worker_cpu`.

A batch of `complete` commands (a token each, as the drain's) goes through what the worker
runs for it between the fetch and the socket, with its default settings (run states on): the
processor (triage, the decisions, the outputs) against a store that answers from memory, then the publisher's hand-over (partitions
by murmur2, aiokafka's record batches built) to a producer that keeps the batches. CPU is
`time.process_time` over the batches, after a warm-up, the least of a few rounds, with the
garbage collector tuned as the worker tunes it: a figure
steady enough to compare two trees for a change too small for a drain's noise. What it leaves
out (the consumer's fetch, the database's and the broker's round trips, the event loop's
waits) is measured by the drain (`python -m bench.run --only ceilings`).

`--profile` prints where the time goes (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

from bench.fixtures import ACCOUNT, SECRET, auth_header
from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from schemas.command import new_command
from schemas.result import Status
from schemas.types import new_ulid
from worker.adapters.kafka.publisher import TransactionalPublisher
from worker.entrypoints.cli import tune_garbage_collection
from worker.service import outputs
from worker.service.auth import TokenVerifier
from worker.service.handler import CommandHandler
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import (
    JobRecord,
    Quota,
    RecordOrigin,
    RememberedOutcome,
    RunChange,
    Snapshot,
)
from worker.service.processor import BatchProcessor

TOPICS = {
    Channel.RESULT: "results",
    Channel.EVENT: "events",
    Channel.STATE: "states",
    Channel.DLQ: "dlq",
}
# What the publisher gives aiokafka's producer for topics of the default 1 MiB records.
BATCH_BYTES = (1 << 20) - outputs.RECORD_OVERHEAD


class Store:
    """Every run live at version 1, nothing remembered; writes are dropped, so each round
    decides the same batch afresh."""

    def __init__(self, runs: dict[str, RunState]) -> None:
        self._runs = runs

    async def load(
        self,
        run_ids: Sequence[str],
        target_group_ids: Sequence[str],
        command_keys: Sequence[tuple[int, str]],
    ) -> Snapshot:
        return Snapshot({r: self._runs[r] for r in run_ids}, {}, datetime.now(UTC))

    async def save(
        self,
        changes: Sequence[RunChange],
        outcomes: Sequence[RememberedOutcome],
        jobs: Sequence[JobRecord],
    ) -> None:
        return None

    async def take_quota(self, requested: Any) -> dict[int, Quota]:
        raise AssertionError("the bench runs without a rate limit")

    async def give_back(self, units: Any, quotas: Any) -> None:
        raise AssertionError("the bench runs without a rate limit")


class Producer:
    """What the publisher's hand-over asks of aiokafka's producer; the batches are kept."""

    def __init__(self) -> None:
        self.batches: list[BatchBuilder] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(12))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(BATCH_BYTES, 0, is_transactional=True)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        builder.close()
        self.batches.append(builder)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def batch_of(size: int) -> tuple[list[CommandRecord], dict[str, RunState]]:
    headers = tuple(auth_header())
    project = new_ulid()
    started = datetime.now(UTC) - timedelta(hours=1)
    ends = started + timedelta(days=7)
    records, runs = [], {}
    for offset in range(size):
        key = RunKey(ACCOUNT, project, new_ulid(), new_ulid())
        runs[key.fielding_run_id] = RunState(key, RunStatus.LIVE, 1, started, ends)
        command = new_command(
            "complete_fielding_run",
            account_id=ACCOUNT,
            project_id=project,
            target_group_id=key.target_group_id,
            fielding_run_id=key.fielding_run_id,
            if_match='W/"1"',
        )
        value = command.model_dump_json().encode()
        origin = RecordOrigin("commands", offset % 12, offset)
        records.append(CommandRecord(origin, key.fielding_run_id.encode(), value, headers, 0))
    return records, runs


async def measure(batches: int, size: int, rounds: int, profile: bool) -> float:
    """The least CPU µs per command over `rounds` rounds of `batches` batches of `size`."""
    records, runs = batch_of(size)
    # Run states on, as the worker's settings have them by default.
    handler = CommandHandler(Store(runs), TokenVerifier(SECRET), 0, run_states=True)
    processor = BatchProcessor(handler, 3)
    publisher = TransactionalPublisher("unused:9092", "bench", "bench", TOPICS)
    publisher._limits = dict.fromkeys(TOPICS, 1 << 20)  # the topics' max.message.bytes
    producer = Producer()

    async def one_batch() -> list[Emission]:
        emissions = await processor.process(records)
        await publisher._send_all(producer, emissions)
        producer.batches.clear()
        return emissions

    # The warm-up (caches, the token's verification) checks that what is measured is the path
    # of a success: a 204, an event and a run state for every command, not a refusal's.
    answered = Counter((e.channel, e.status) for e in await one_batch())
    success = {(Channel.RESULT, Status.NO_CONTENT): size, (Channel.EVENT, None): size}
    if answered != success | {(Channel.STATE, None): size}:
        raise AssertionError(f"the batch was not answered 204 with an event each: {answered}")
    least = float("inf")
    profiler = cProfile.Profile() if profile else None
    for _ in range(rounds):
        if profiler:
            profiler.enable()
        started = time.process_time()
        for _ in range(batches):
            await one_batch()
        least = min(least, time.process_time() - started)
        if profiler:
            profiler.disable()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return least * 1e6 / (batches * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--size", type=int, default=2000, help="commands per batch")
    parser.add_argument("--rounds", type=int, default=5, help="the least of these is shown")
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    tune_garbage_collection()  # as `fielding-worker run` does
    cost = asyncio.run(
        measure(arguments.batches, arguments.size, arguments.rounds, arguments.profile)
    )
    print(
        f"CPU µs per command, in process: {cost:.1f} (batches of {arguments.size}, "
        f"the least of {arguments.rounds} rounds of {arguments.batches})"
    )


if __name__ == "__main__":
    main()
