"""Failure classification: transient failures wait, a poison command alone gets a 500, quota is
taken once per command, and every record ends in an output whatever fails."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from tests.support.commands import SECRET, auth_headers, command, encode
from tests.support.fakes import InMemoryStore
from worker.service.auth import TokenVerifier
from worker.service.handler import CommandHandler, QuotaLedger
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin, StatementTimeout, TransientFailure
from worker.service.processor import Backoff, BatchProcessor

NO_WAIT = Backoff(first=0, most=0)


def record(offset: int, body: dict[str, object]) -> CommandRecord:
    return CommandRecord(
        RecordOrigin("commands", 0, offset), None, encode(body), tuple(auth_headers([101])), 0
    )


class FlakyHandler(CommandHandler):
    """Fails the way it is told to, then behaves."""

    def __init__(
        self,
        transient_failures: int = 0,
        poison_command_id: str | None = None,
        failure: Exception | None = None,
        store: InMemoryStore | None = None,
        rate_limit: int = 0,
    ) -> None:
        super().__init__(store or InMemoryStore(rate_limit), TokenVerifier(SECRET), rate_limit)
        self.transient_failures = transient_failures
        self.failure = failure or TransientFailure("database unreachable")
        self.poison = poison_command_id
        self.calls = 0
        self.sizes: list[int] = []

    async def handle(
        self, records: Sequence[CommandRecord], ledger: QuotaLedger | None = None
    ) -> list[Emission]:
        self.calls += 1
        self.sizes.append(len(records))
        if self.transient_failures:
            self.transient_failures -= 1
            raise self.failure
        if self.poison and any(self.poison.encode() in (r.value or b"") for r in records):
            raise RuntimeError("a bug this command triggers")
        return await super().handle(records, ledger)


def statuses(out: list[Emission]) -> list[int]:
    return [json.loads(e.value)["status"] for e in out if e.channel is Channel.RESULT]


async def test_transient_failures_are_retried_until_they_pass() -> None:
    handler = FlakyHandler(transient_failures=4)
    out = await BatchProcessor(handler, 3, NO_WAIT).process([record(0, command())])
    assert handler.calls == 5
    assert [json.loads(e.value)["status"] for e in out if e.channel is Channel.RESULT] == [404]


async def test_a_poison_command_gets_500_and_a_dlq_copy_and_the_rest_go_on() -> None:
    poison = command()
    handler = FlakyHandler(poison_command_id=poison["command_id"])
    records = [record(0, command()), record(1, poison), record(2, command())]
    out = await BatchProcessor(handler, 2, NO_WAIT).process(records)
    statuses = [json.loads(e.value)["status"] for e in out if e.channel is Channel.RESULT]
    assert statuses == [404, 500, 404]
    [copy] = [e for e in out if e.channel is Channel.DLQ]
    assert copy.value == records[1].value
    assert dict(copy.headers)["dlq.reason"].startswith(b"unexpected_internal_error")
    [internal] = [
        json.loads(e.value) for e in out if e.channel is Channel.RESULT and e.status == 500
    ]
    assert internal["error"]["object"] == "unexpected_internal_error"
    assert internal["command_id"] == poison["command_id"]


async def test_a_poison_command_in_a_large_batch_is_isolated_by_halving() -> None:
    bodies = [command() for _ in range(64)]
    handler = FlakyHandler(poison_command_id=bodies[37]["command_id"])
    out = await BatchProcessor(handler, 1, NO_WAIT).process(
        [record(i, b) for i, b in enumerate(bodies)]
    )
    assert statuses(out) == [404] * 37 + [500] + [404] * 26
    # Halving finds it in about 2 log2(64) tries, where one by one would take 64 more.
    assert handler.calls <= 2 * 6 + 1


async def test_statement_timeouts_split_the_batch_rather_than_retry_it_forever() -> None:
    handler = FlakyHandler(transient_failures=3, failure=StatementTimeout("canceling statement"))
    out = await BatchProcessor(handler, 2, NO_WAIT).process(
        [record(i, command()) for i in range(8)]
    )
    assert statuses(out) == [404] * 8
    assert handler.sizes[:3] == [8, 8, 4]


async def test_a_command_takes_quota_once_however_often_its_batch_is_tried() -> None:
    class LosesRaces(InMemoryStore):
        """Every save loses a compare-and-swap race, twice, as if another worker won."""

        def __init__(self) -> None:
            super().__init__(rate_limit=2)
            self.lost = 0

        async def save(
            self, changes: Sequence[Any], outcomes: Sequence[Any], jobs: Sequence[Any] = ()
        ) -> None:
            if self.lost < 2:
                self.lost += 1
                raise TransientFailure("a lost race")
            await super().save(changes, outcomes, jobs)

    store = LosesRaces()
    handler = FlakyHandler(store=store, rate_limit=2)
    out = await BatchProcessor(handler, 3, NO_WAIT).process(
        [record(i, command()) for i in range(3)]
    )
    assert statuses(out) == [404, 404, 429] and handler.calls == 3
    assert store.used == {101: 2}, (
        "two commands charged once each over three tries, none for the refused"
    )


async def test_a_repeat_within_a_batch_is_replayed_and_takes_one_unit_once() -> None:
    store = InMemoryStore(rate_limit=5)
    body = command()
    out = await BatchProcessor(FlakyHandler(store=store, rate_limit=5), 3, NO_WAIT).process(
        [record(0, body), record(1, body)]
    )
    assert statuses(out) == [404, 404]
    # One unit each: the second is a replay of the first, and counts too.
    assert store.used == {101: 2}


async def test_one_command_that_keeps_timing_out_is_answered_500_not_retried_forever() -> None:
    handler = FlakyHandler(transient_failures=99, failure=StatementTimeout("lock timeout"))
    poisoned = record(0, command())
    out = await BatchProcessor(handler, 3, NO_WAIT).process([poisoned])
    assert statuses(out) == [500] and handler.calls == 3
    assert [e.channel for e in out] == [Channel.RESULT, Channel.DLQ]


async def test_a_record_whose_answer_cannot_be_built_still_leaves_a_dlq_stub() -> None:
    class Broken(FlakyHandler):
        @property
        def verifier(self) -> TokenVerifier:
            raise RuntimeError("even triage fails")

    body = command()
    handler = Broken(poison_command_id=body["command_id"])
    poisoned = record(5, body)
    [stub] = await BatchProcessor(handler, 1, NO_WAIT).process([poisoned])
    assert stub.channel is Channel.DLQ and stub.origin == poisoned.origin
    body = json.loads(stub.value)
    assert body["original"] == {"topic": "commands", "partition": 0, "offset": 5}
    assert body["value_sha256"] == hashlib.sha256(poisoned.value or b"").hexdigest()
