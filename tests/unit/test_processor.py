"""Failure classification: transient failures wait, a poison command alone gets a 500."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tests.support.commands import SECRET, auth_headers, command, encode
from tests.support.fakes import InMemoryStore
from worker.service.auth import TokenVerifier
from worker.service.handler import CommandHandler
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin, TransientFailure
from worker.service.processor import Backoff, BatchProcessor

NO_WAIT = Backoff(first=0, most=0)


def record(offset: int, body: dict[str, object]) -> CommandRecord:
    return CommandRecord(
        RecordOrigin("commands", 0, offset), None, encode(body), tuple(auth_headers([101])), 0
    )


class FlakyHandler(CommandHandler):
    """Fails the way it is told to, then behaves."""

    def __init__(self, transient_failures: int = 0, poison_command_id: str | None = None) -> None:
        super().__init__(InMemoryStore(), TokenVerifier(SECRET), rate_limit_per_account=0)
        self.transient_failures = transient_failures
        self.poison = poison_command_id
        self.calls = 0

    async def handle(self, records: Sequence[CommandRecord]) -> list[Emission]:
        self.calls += 1
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientFailure("database unreachable")
        if self.poison and any(self.poison.encode() in (r.value or b"") for r in records):
            raise RuntimeError("a bug this command triggers")
        return await super().handle(records)


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
