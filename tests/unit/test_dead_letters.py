"""Working the DLQ: what a dead letter says of itself, which may be re-driven and why not,
and the headers a re-driven record carries. Dead letters are built by the worker's own
`outputs.dlq_copy` and `outputs.dlq_stub`, so they are what the worker writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from tests.support.commands import auth_headers, command, encode
from worker.entrypoints.cli import main
from worker.service import outputs
from worker.service.dead_letters import (
    REDRIVES,
    DeadLetter,
    DeadLetterRecord,
    Planned,
    Redrive,
    Selection,
    describe,
    later_redrive,
    plan,
    read_dead_letter,
    redriven_headers,
    refusal,
)
from worker.service.ports import RecordOrigin
from worker.settings import Settings

TOPIC = "fielding-run-commands"
ORIGIN = RecordOrigin(TOPIC, 2, 417)
AT = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
REASON = "unexpected_internal_error: RuntimeError: boom"


def dead_letter_record(emission: outputs.Emission, offset: int = 5) -> DeadLetterRecord:
    """The DLQ record the worker writes for `emission`, as `dlq list` reads it back."""
    return DeadLetterRecord(
        1, offset, int(AT.timestamp() * 1000), emission.key, emission.value, emission.headers
    )


def copy_of(
    value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None, offset: int = 5
) -> DeadLetterRecord:
    headers = headers if headers is not None else [("x-origin", b"upstream")]
    return dead_letter_record(outputs.dlq_copy(ORIGIN, b"run-key", value, headers, REASON), offset)


def letter_of(
    value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None, offset: int = 5
) -> DeadLetter:
    return read_dead_letter(copy_of(value, headers, offset))


def test_a_copy_of_a_command_reads_its_command_reason_origin_and_size() -> None:
    body = command(account_id=101, command_id="cmd-1")
    letter = read_dead_letter(copy_of(encode(body)))
    assert letter.command == (101, "cmd-1")
    assert letter.reason == REASON
    assert letter.original == ("fielding-run-commands", 2, 417)
    assert letter.size == len(encode(body))
    assert letter.dead_lettered_at == AT
    assert (letter.stub, letter.redrives) == (False, 0)


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe garbage",
        b"{not json",
        b"[1, 2]",
        b'{"command_id": 7}',
        b'{"command_id": ""}',
        None,
    ],
)
def test_a_copy_of_an_unreadable_record_has_no_command_and_may_be_re_driven(
    value: bytes | None,
) -> None:
    letter = letter_of(value)
    assert letter.command_id is None and letter.command is None
    assert (
        refusal(letter, commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None) is None
    )


def test_a_stub_is_not_re_drivable_and_says_why() -> None:
    stub = outputs.dlq_stub(ORIGIN, b"run-key", b"x" * 5000, "a dlq record does not fit")
    letter = read_dead_letter(dead_letter_record(stub))
    assert letter.stub and letter.size == 5000 and letter.command_id is None
    refused = refusal(letter, commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None)
    assert refused is not None and not refused.forceable
    assert "stub" in refused.why and "does not fit" in refused.why
    assert plan(
        [letter], commands_topic=TOPIC, max_redrives=3, redrives={}, answered={}, force=True
    )[0].refused


def test_a_record_the_worker_did_not_write_is_not_re_drivable() -> None:
    record = DeadLetterRecord(0, 0, 0, b"k", encode(command()), [("x", b"y")])
    refused = refusal(
        read_dead_letter(record), commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None
    )
    assert refused is not None and "dlq.original" in refused.why


def test_re_driven_headers_drop_the_dlq_ones_keep_the_rest_in_order_and_count_one() -> None:
    headers = [*auth_headers([101]), ("traceparent", b"00-abc"), ("x-origin", b"upstream")]
    record = copy_of(encode(command()), headers)
    assert any(key.startswith("dlq.") for key, _ in record.headers)
    assert redriven_headers(record.headers, 0) == [*headers, (REDRIVES, b"1")]


def test_the_count_survives_the_round_trip_through_the_dlq() -> None:
    first = copy_of(encode(command()))
    resent = redriven_headers(first.headers, read_dead_letter(first).redrives)
    # The worker dead-letters the re-driven record again, copying its headers byte for byte.
    again = copy_of(encode(command()), resent)
    assert read_dead_letter(again).redrives == 1
    twice = redriven_headers(again.headers, read_dead_letter(again).redrives)
    assert [v for k, v in twice if k == REDRIVES] == [b"2"]
    assert sum(1 for k, _ in twice if k == outputs.DLQ_REASON) == 0


@pytest.mark.parametrize("written", [b"x", b"-1", b"", None, "٣".encode()])
def test_a_count_that_is_not_a_number_reads_as_zero(written: bytes | None) -> None:
    assert letter_of(encode(command()), headers=[(REDRIVES, written)]).redrives == 0


def test_a_count_of_thousands_of_digits_reads_as_over_every_limit() -> None:
    letter = letter_of(encode(command()), headers=[(REDRIVES, b"9" * 5000)])
    refused = refusal(letter, commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None)
    assert refused is not None and refused.forceable


def test_over_the_limit_only_force_re_drives() -> None:
    letter = letter_of(encode(command()), headers=[(REDRIVES, b"3")])
    refused = refusal(letter, commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None)
    assert refused is not None and refused.forceable and "3 times" in refused.why
    assert (
        refusal(letter, commands_topic=TOPIC, max_redrives=4, redriven=None, answered=None) is None
    )
    assert plan(
        [letter], commands_topic=TOPIC, max_redrives=3, redrives={}, answered={}, force=True
    )[0].goes
    assert not plan([letter], commands_topic=TOPIC, max_redrives=3, redrives={}, answered={})[
        0
    ].goes


def test_a_dead_letter_re_driven_and_confirmed_never_goes_again_even_forced() -> None:
    letter = letter_of(encode(command()))
    done = {letter.coordinates: Redrive(AT, (0, 99))}
    (planned,) = plan(
        [letter], commands_topic=TOPIC, max_redrives=3, redrives=done, answered={}, force=True
    )
    assert planned.refused is not None and "0:99" in planned.refused.why
    assert not planned.refused.forceable


def test_an_unconfirmed_re_drive_goes_again_only_when_forced() -> None:
    letter = letter_of(encode(command()))
    begun = {letter.coordinates: Redrive(AT, None)}
    assert not plan([letter], commands_topic=TOPIC, max_redrives=3, redrives=begun, answered={})[
        0
    ].goes
    assert plan(
        [letter], commands_topic=TOPIC, max_redrives=3, redrives=begun, answered={}, force=True
    )[0].goes


def test_a_command_whose_outcome_is_remembered_is_never_re_driven() -> None:
    letter = letter_of(encode(command(account_id=101, command_id="cmd-1")))
    answered = {(101, "cmd-1"): 204}
    (planned,) = plan(
        [letter], commands_topic=TOPIC, max_redrives=3, redrives={}, answered=answered, force=True
    )
    assert planned.refused is not None and "answered 204" in planned.refused.why


def test_of_two_dead_letters_of_one_command_only_the_first_goes() -> None:
    body = encode(command(account_id=101, command_id="cmd-1"))
    first, second = letter_of(body, offset=5), letter_of(body, offset=6)
    other = letter_of(encode(command(account_id=101, command_id="cmd-2")), offset=7)
    planned = plan(
        [first, second, other], commands_topic=TOPIC, max_redrives=3, redrives={}, answered={}
    )
    assert [p.goes for p in planned] == [True, False, True]


def test_a_selection_takes_partitions_offsets_inclusive_and_reasons_in_any_case() -> None:
    letter = letter_of(encode(command()))  # partition 1, offset 5
    assert Selection().takes(letter)
    assert Selection(frozenset({1}), 5, 5, "RUNTIMEERROR").takes(letter)
    assert not Selection(frozenset({0})).takes(letter)
    assert not Selection(from_offset=6).takes(letter)
    assert not Selection(to_offset=4).takes(letter)
    assert not Selection(reason="not json").takes(letter)


@pytest.mark.parametrize("given", ["3", "3:", ":4", "a:1", "1:-2", "1:2:3"])
def test_dlq_show_refuses_what_is_not_partition_colon_offset(given: str) -> None:
    outcome = CliRunner().invoke(main, ["dlq", "show", given])
    assert outcome.exit_code == 2
    assert "PARTITION:OFFSET" in outcome.output


def test_redrive_refuses_an_offset_range_that_ends_before_it_starts() -> None:
    outcome = CliRunner().invoke(main, ["dlq", "redrive", "--from-offset", "9", "--to-offset", "3"])
    assert outcome.exit_code == 2
    assert "--from-offset is after --to-offset" in outcome.output


def test_describe_is_json() -> None:
    from worker.service.dead_letters import describe

    shown = json.loads(json.dumps(describe(letter_of(encode(command(command_id="c"))))))
    assert shown["command_id"] == "c" and shown["original"]["offset"] == 417


@pytest.mark.parametrize(
    "topic", ["fielding-run-command-results", "other-deployment.fielding-run-commands"]
)
def test_a_dead_letter_read_from_another_topic_is_refused_even_forced(topic: str) -> None:
    # Only the commands topic's records are copied to the DLQ: one naming another topic was
    # written by another deployment sharing the DLQ, or forged; re-driving it would send it to
    # this deployment's commands topic, whose store knows nothing of its outcome.
    other = outputs.dlq_copy(RecordOrigin(topic, 0, 3), b"k", encode(command()), [], REASON)
    letter = read_dead_letter(dead_letter_record(other))
    refused = refusal(letter, commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None)
    assert refused is not None and not refused.forceable
    assert topic in refused.why and TOPIC in refused.why
    assert not plan(
        [letter], commands_topic=TOPIC, max_redrives=3, redrives={}, answered={}, force=True
    )[0].goes


def test_a_sender_s_own_dlq_original_headers_do_not_count_the_worker_s_do() -> None:
    forged = [("dlq.original.topic", b"fielding-run-command-results"), ("dlq.stub", b"false")]
    letter = letter_of(encode(command()), headers=forged)
    assert letter.original == ("fielding-run-commands", 2, 417)
    assert (
        refusal(letter, commands_topic=TOPIC, max_redrives=3, redriven=None, answered=None) is None
    )


@pytest.mark.parametrize("timestamp_ms", [2**63 - 1, -(2**63), 253402300800000])
def test_a_dead_letter_with_any_timestamp_is_read(timestamp_ms: int) -> None:
    record = copy_of(encode(command()))
    letter = read_dead_letter(
        DeadLetterRecord(1, 5, timestamp_ms, None, record.value, record.headers)
    )
    assert letter.dead_lettered_at.year in (1, 9999)
    assert json.loads(json.dumps(describe(letter)))["dead_lettered_at"]


@pytest.mark.parametrize("command_id", ["a\x00b", "\ud800"])
def test_a_command_id_the_store_cannot_hold_reads_as_none(command_id: str) -> None:
    # The store is asked for the outcomes of dead letters' commands: an id Postgres cannot
    # take (a NUL; a lone surrogate, which asyncpg cannot encode) would stop `dlq list` and
    # `redrive` for the whole DLQ. The worker refuses such an id, so it has no outcome.
    value = json.dumps({**command(), "command_id": command_id}).encode()
    letter = letter_of(value)
    assert letter.command_id is None and letter.command is None


class ClaimsTable:
    """dlq_redrives as `store.claim` uses it: (began_at, sent_to) by coordinates, and each
    claim's command, checked as the claim checks it (`later_redrive`)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], tuple[datetime, tuple[int, int] | None]] = {}
        self.commands: dict[tuple[int, int], tuple[int, str] | None] = {}
        self.clock = AT

    def claim_by_another_run(
        self, coordinates: tuple[int, int], command: tuple[int, str] | None = None
    ) -> None:
        self.clock += timedelta(seconds=1)
        self.rows[coordinates] = (self.clock, None)
        self.commands[coordinates] = command

    async def claim(self, _pool, _topic, letter, *, take_over=None):  # type: ignore[no-untyped-def]
        from worker.adapters.postgres.redrives import Claim

        coordinates = letter.coordinates
        recorded = {
            at: Redrive(began_at, sent_to, self.commands.get(at))
            for at, (began_at, sent_to) in self.rows.items()
        }
        if (found := later_redrive(letter, recorded)) is not None:
            return Claim(None, found)
        row = self.rows.get(coordinates)
        # (take_over=True: the SQL before the plan's claim was checked, any unconfirmed one.)
        seen = take_over is True or (
            take_over is not None and row is not None and row[0] == take_over
        )
        if row is not None and (row[1] is not None or not seen):
            return Claim(None)
        self.clock += timedelta(seconds=1)
        self.rows[coordinates] = (self.clock, None)
        self.commands[coordinates] = letter.command
        return Claim(self.clock)

    async def confirm(self, _pool, _topic, coordinates, sent_to) -> None:  # type: ignore[no-untyped-def]
        self.rows[coordinates] = (self.rows[coordinates][0], sent_to)

    async def release(self, _pool, _topic, coordinates, began_at, *, taken_over=None) -> None:  # type: ignore[no-untyped-def]
        # RELEASE and RESTORE: only the claim that began at `began_at`, never confirmed.
        row = self.rows.get(coordinates)
        if row is None or row != (began_at, None):
            return
        if taken_over is None:
            del self.rows[coordinates]
            self.commands.pop(coordinates, None)
        else:
            self.rows[coordinates] = (taken_over, None)


class CommandsTopicStandIn:
    """The commands topic as `dlq.redrive` writes to it: keeps what is sent. With a `limit`,
    refuses (TooLarge) a value that the fielding-redrives header and the record's overhead,
    counted as 100 bytes, would take over it, as the producer does."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.sent: list[bytes | None] = []

    async def __aenter__(self) -> CommandsTopicStandIn:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def send(self, key: bytes | None, value: bytes, headers: object) -> tuple[int, int]:
        from worker.adapters.kafka.dead_letters import TooLarge

        if self.limit is not None and len(value) > self.limit - 100:
            raise TooLarge(len(value) + 100, self.limit)
        self.sent.append(value)
        return 0, len(self.sent)


def patch_redrive(
    monkeypatch: pytest.MonkeyPatch,
    table: ClaimsTable,
    commands: object,
    dlq_records: list[DeadLetterRecord],
) -> None:
    """`dlq.redrive` against `table` for dlq_redrives, `commands` for the commands topic and
    `dlq_records` for the DLQ; no outcome remembered."""
    from worker.adapters.postgres import redrives as store
    from worker.entrypoints import dlq

    class Pool:
        async def close(self) -> None:
            return None

    async def pool(*_: object, **__: object) -> Pool:
        return Pool()

    async def records(*_: object) -> AsyncIterator[DeadLetterRecord]:
        for record in dlq_records:
            yield record

    async def nothing_answered(*_: object) -> dict[tuple[int, str], int]:
        return {}

    monkeypatch.setattr(dlq, "create_pool", pool)
    monkeypatch.setattr(dlq, "CommandsTopic", lambda *_: commands)
    monkeypatch.setattr(dlq, "read_dlq", records)
    monkeypatch.setattr(store, "answered", nothing_answered)
    monkeypatch.setattr(store, "claim", table.claim)
    monkeypatch.setattr(store, "confirm", table.confirm)
    monkeypatch.setattr(store, "release", table.release)


def test_force_takes_over_only_the_unconfirmed_claim_its_plan_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run B plans with --force; run A, started earlier, then claims a dead letter B planned
    and is sending it. B must skip that one (A's send is the answer), and still take over the
    claim its plan reported as never confirmed."""
    from worker.entrypoints import dlq

    stale, fresh = copy_of(encode(command()), offset=5), copy_of(encode(command()), offset=6)
    table = ClaimsTable()
    table.rows[(1, 5)] = (AT, None)  # a tool stopped between claim and confirm, long ago
    planned = plan(
        [read_dead_letter(stale), read_dead_letter(fresh)],
        commands_topic=TOPIC,
        max_redrives=3,
        redrives={(1, 5): Redrive(AT, None)},
        answered={},
        force=True,
    )
    assert [p.goes for p in planned] == [True, True]
    table.claim_by_another_run((1, 6))  # run A, after B's plan

    commands = CommandsTopicStandIn()
    patch_redrive(monkeypatch, table, commands, [stale, fresh])
    settings = Settings()
    report = asyncio.run(dlq.redrive(settings, planned, force=True))

    assert [letter.coordinates for letter, _ in report.sent] == [(1, 5)]
    assert [(letter.coordinates, why) for letter, why in report.skipped] == [
        ((1, 6), "another re-drive sent it meanwhile")
    ]
    assert len(commands.sent) == 1


def test_a_dead_letter_too_large_for_the_commands_topic_is_skipped_and_the_rest_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fielding-redrives header takes a record near the commands topic's limit over it:
    the producer refuses it and nothing is written. The operator sees it skipped with its size
    and the limit, the others sent; its claim is undone (a fresh one removed, one --force took
    over put back as the plan saw it), so it is not labelled as perhaps sent."""
    from worker.entrypoints import dlq

    small, big, taken = (
        copy_of(encode(command()), offset=5),
        copy_of(encode({**command(), "pad": "x" * 900}), offset=6),
        copy_of(encode({**command(), "pad": "y" * 900}), offset=7),
    )
    limit = 1000
    table = ClaimsTable()
    table.rows[(1, 7)] = (AT, None)  # an earlier run stopped between claim and confirm
    planned = plan(
        [read_dead_letter(r) for r in (big, small, taken)],
        commands_topic=TOPIC,
        max_redrives=3,
        redrives={(1, 7): Redrive(AT, None)},
        answered={},
        force=True,
    )
    commands = CommandsTopicStandIn(limit)
    patch_redrive(monkeypatch, table, commands, [big, small, taken])
    report = asyncio.run(dlq.redrive(Settings(), planned, force=True))

    assert [letter.coordinates for letter, _ in report.sent] == [(1, 5)]
    assert commands.sent == [small.value]
    skipped = dict((letter.coordinates, why) for letter, why in report.skipped)
    assert set(skipped) == {(1, 6), (1, 7)}
    assert "too large" in skipped[(1, 6)] and "limit of 1000" in skipped[(1, 6)]
    assert str(len(big.value or b"")) in skipped[(1, 6)]
    assert (1, 6) not in table.rows  # nothing claims it: a later run may send it
    assert table.rows[(1, 7)] == (AT, None)  # the earlier run's claim, as it was
    assert table.rows[(1, 5)][1] == (0, 1)


class BrokerGoneAt(CommandsTopicStandIn):
    """The commands topic whose broker goes away at the `nth` send: that send and every later
    one time out."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.tries = 0

    async def send(self, key: bytes | None, value: bytes, headers: object) -> tuple[int, int]:
        from aiokafka.errors import KafkaTimeoutError

        self.tries += 1
        if self.tries >= self.nth:
            raise KafkaTimeoutError()
        return await super().send(key, value, headers)


def three_going() -> tuple[list[DeadLetterRecord], list[Planned]]:
    """Three dead letters of three commands, each planned to go."""
    records = [copy_of(encode(command()), offset=offset) for offset in (5, 6, 7)]
    planned = plan(
        [read_dead_letter(r) for r in records],
        commands_topic=TOPIC,
        max_redrives=3,
        redrives={},
        answered={},
    )
    assert [p.goes for p in planned] == [True, True, True]
    return records, planned


def test_a_send_the_broker_never_answers_stops_the_re_drive_with_what_was_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker goes away in the middle of a re-drive: the dead letter already sent is
    reported sent and confirmed; the one being sent keeps its unconfirmed claim (the record
    may have been written, so no later run sends it again without --force); the rest are
    reported not tried, and nothing of them is claimed."""
    from worker.entrypoints import dlq

    table = ClaimsTable()
    records, planned = three_going()
    patch_redrive(monkeypatch, table, BrokerGoneAt(2), records)
    report = asyncio.run(dlq.redrive(Settings(), planned))

    assert [(letter.coordinates, to) for letter, to in report.sent] == [((1, 5), (0, 1))]
    assert report.stopped is not None and report.stopped.letter is not None
    assert report.stopped.letter.coordinates == (1, 6)
    assert report.stopped.state == dlq.MAYBE_SENT
    assert report.stopped.error.startswith("KafkaTimeoutError")
    assert [(letter.coordinates, why) for letter, why in report.skipped] == [
        ((1, 7), "not tried: the re-drive stopped")
    ]
    assert table.rows[(1, 5)][1] == (0, 1)
    assert table.rows[(1, 6)][1] is None  # claimed, never confirmed
    assert (1, 7) not in table.rows


def test_a_confirmation_the_database_refuses_stops_the_re_drive_saying_where_it_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database goes away once the broker has the record: the report says where the
    record went, and its claim stays unconfirmed."""
    from worker.adapters.postgres import redrives as store
    from worker.entrypoints import dlq

    table = ClaimsTable()
    records, planned = three_going()
    patch_redrive(monkeypatch, table, CommandsTopicStandIn(), records)

    async def database_gone(*_: object) -> None:
        raise ConnectionResetError("connection lost")

    monkeypatch.setattr(store, "confirm", database_gone)
    report = asyncio.run(dlq.redrive(Settings(), planned))

    assert report.sent == []
    assert report.stopped is not None and report.stopped.letter is not None
    assert report.stopped.letter.coordinates == (1, 5)
    assert report.stopped.state.startswith("sent to the commands topic at 0:1, but")
    assert [letter.coordinates for letter, _ in report.skipped] == [(1, 6), (1, 7)]


def test_the_cli_prints_what_a_stopped_re_drive_did_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.entrypoints import dlq

    table = ClaimsTable()
    records, planned = three_going()
    patch_redrive(monkeypatch, table, BrokerGoneAt(2), records)

    async def the_plan(*_: object, **__: object) -> dlq.Plan:
        return dlq.Plan(planned, [])

    monkeypatch.setattr(dlq, "make_plan", the_plan)
    outcome = CliRunner().invoke(main, ["dlq", "redrive", "--yes"])
    assert outcome.exit_code == 1
    lines = outcome.output.splitlines()
    assert lines[0] == "1:5 re-driven to fielding-run-commands 0:1"
    assert lines[1] == "1:7 skipped: not tried: the re-drive stopped"
    assert lines[2] == f"1:6 {dlq.MAYBE_SENT}"
    assert lines[3].startswith("1 re-driven, 1 skipped; stopped by KafkaTimeoutError")


def test_a_record_at_a_planned_place_that_is_not_the_one_planned_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DLQ topic was deleted and made again between the plan and the send: another record
    stands at a planned place. It was not judged (its command, its count), so it is not sent."""
    from worker.entrypoints import dlq

    table = ClaimsTable()
    records, planned = three_going()
    other = copy_of(encode(command()), offset=6)  # at 1:6, another command
    commands = CommandsTopicStandIn()
    patch_redrive(monkeypatch, table, commands, [records[0], other, records[2]])
    report = asyncio.run(dlq.redrive(Settings(), planned))

    assert [letter.coordinates for letter, _ in report.sent] == [(1, 5), (1, 7)]
    assert [(letter.coordinates, why) for letter, why in report.skipped] == [((1, 6), dlq.REPLACED)]
    assert commands.sent == [records[0].value, records[2].value]
    assert (1, 6) not in table.rows


@pytest.mark.parametrize("where", ["claim", "read"])
def test_a_database_connection_lost_in_a_claim_or_a_dlq_read_stuck_stops_with_the_report(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """asyncpg raises InterfaceError (not a PostgresError) for a connection lost inside the
    claim's transaction; the DLQ's read can get stuck when the topic is deleted meanwhile.
    Either stops the re-drive with what it did, not a traceback."""
    import asyncpg

    from worker.adapters.kafka.dead_letters import DlqReadStuck
    from worker.adapters.postgres import redrives as store
    from worker.entrypoints import dlq

    table = ClaimsTable()
    records, planned = three_going()
    patch_redrive(monkeypatch, table, CommandsTopicStandIn(), records)
    if where == "claim":
        claims = table.claim

        async def lost_at_the_second(pool, topic, letter, *, take_over=None):  # type: ignore[no-untyped-def]
            if letter.coordinates == (1, 6):
                raise asyncpg.InterfaceError("the underlying connection is closed")
            return await claims(pool, topic, letter, take_over=take_over)

        monkeypatch.setattr(store, "claim", lost_at_the_second)
    else:

        async def stuck_after_the_first(*_: object) -> AsyncIterator[DeadLetterRecord]:
            yield records[0]
            raise DlqReadStuck("the DLQ could not be read to its end")

        monkeypatch.setattr(dlq, "read_dlq", stuck_after_the_first)
    report = asyncio.run(dlq.redrive(Settings(), planned))

    assert [letter.coordinates for letter, _ in report.sent] == [(1, 5)]
    assert report.stopped is not None
    if where == "claim":
        assert report.stopped.letter is not None and report.stopped.letter.coordinates == (1, 6)
        assert report.stopped.state == dlq.NOT_SENT
        assert "InterfaceError" in report.stopped.error
    else:
        assert report.stopped.letter is None and "DlqReadStuck" in report.stopped.error
    assert (1, 7) in {letter.coordinates for letter, _ in report.skipped}


@pytest.mark.parametrize("command_line", [["dlq", "list"], ["dlq", "redrive", "--yes"]])
def test_the_broker_away_at_the_plan_is_said_in_one_line(
    monkeypatch: pytest.MonkeyPatch, command_line: list[str]
) -> None:
    from aiokafka.errors import KafkaConnectionError

    from worker.entrypoints import dlq

    async def unreachable(*_: object, **__: object) -> dlq.Plan:
        raise KafkaConnectionError("Unable to bootstrap from [('localhost', 9092)]")

    monkeypatch.setattr(dlq, "make_plan", unreachable)
    outcome = CliRunner().invoke(main, command_line)
    assert outcome.exit_code == 1
    assert outcome.output == (
        "Error: KafkaConnectionError: Unable to bootstrap from [('localhost', 9092)]\n"
    )


def test_the_commands_topic_says_too_large_when_the_producer_refuses_a_record() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    from worker.adapters.kafka.dead_letters import CommandsTopic, TooLarge

    class Producer:
        async def send_and_wait(self, *_: object, **__: object) -> None:
            raise MessageSizeTooLargeError("The message is 1048700 bytes when serialized")

    topic = CommandsTopic("localhost:9092", TOPIC)
    topic._producer = Producer()  # type: ignore[assignment]
    topic.limit = 1048576
    with pytest.raises(TooLarge) as raised:
        asyncio.run(topic.send(b"k", b"v" * 1048600, [(REDRIVES, b"1")]))
    assert raised.value.limit == 1048576 and raised.value.size > 1048600


def test_a_command_re_driven_in_an_earlier_run_is_refused_for_its_other_dead_letters() -> None:
    """D1 and D2 are dead letters of one command; run 1 re-drove D1 (the worker has not
    answered it yet, or its outcome is not one it remembers). Run 2 must not send D2: the
    command would be answered twice. The refusal names the earlier re-drive, even forced."""
    body = encode(command(account_id=101, command_id="cmd-1"))
    d1, d2 = letter_of(body, offset=5), letter_of(body, offset=6)
    other = letter_of(encode(command(account_id=101, command_id="cmd-2")), offset=7)
    run_1 = AT + timedelta(minutes=5)  # after both were dead-lettered (at AT)
    for sent_to, says in [((0, 99), "to commands 0:99"), (None, "never confirmed")]:
        recorded = {d1.coordinates: Redrive(run_1, sent_to, (101, "cmd-1"))}
        planned = plan(
            [d1, d2, other],
            commands_topic=TOPIC,
            max_redrives=3,
            redrives=recorded,
            answered={},
            force=True,
        )
        # (D1's own claim: never again when confirmed; forced when not, as always.)
        assert [p.goes for p in planned] == [sent_to is None, False, True]
        refused = planned[1].refused
        assert refused is not None and not refused.forceable
        assert "1:5" in refused.why and says in refused.why and "answered twice" in refused.why


def test_a_newer_dead_letter_of_a_re_driven_command_stays_re_drivable() -> None:
    """D1 was re-driven and failed again: D2 is its dead letter, written after the re-drive
    began. D2 is the command's latest failure and may go."""
    body = encode(command(account_id=101, command_id="cmd-1"))
    d1 = letter_of(body, offset=5)
    d1_headers = list(copy_of(body).headers)
    d2 = read_dead_letter(
        DeadLetterRecord(
            1, 6, int((AT + timedelta(minutes=10)).timestamp() * 1000), b"k", body, d1_headers
        )
    )
    recorded = {d1.coordinates: Redrive(AT + timedelta(minutes=5), (0, 99), (101, "cmd-1"))}
    planned = plan([d1, d2], commands_topic=TOPIC, max_redrives=3, redrives=recorded, answered={})
    assert [p.goes for p in planned] == [False, True]


def test_the_dead_letter_of_a_re_driven_record_goes_whatever_the_clocks_say() -> None:
    """D1 was re-driven to commands 0:99 and that record failed again: D2 is its dead letter.
    The worker's host runs 50 ms behind the database, so D2's timestamp is before the re-drive
    began. D2 is still known as that record's failure by its place, and may go; D3, a dead
    letter of another record of the command with the same timestamp, stays."""
    body = encode(command(account_id=101, command_id="cmd-1"))
    d1 = letter_of(body, offset=5)
    began = AT + timedelta(minutes=5)
    skewed = int((began - timedelta(milliseconds=50)).timestamp() * 1000)

    def dead_letter_of(original: RecordOrigin, offset: int) -> DeadLetter:
        copy = outputs.dlq_copy(original, b"k", body, [], REASON)
        return read_dead_letter(DeadLetterRecord(1, offset, skewed, b"k", body, copy.headers))

    d2 = dead_letter_of(RecordOrigin(TOPIC, 0, 99), 6)
    d3 = dead_letter_of(RecordOrigin(TOPIC, 0, 98), 7)
    recorded = {d1.coordinates: Redrive(began, (0, 99), (101, "cmd-1"))}
    planned = plan(
        [d1, d2, d3], commands_topic=TOPIC, max_redrives=3, redrives=recorded, answered={}
    )
    assert [p.goes for p in planned] == [False, True, False]
    assert later_redrive(d3, recorded) == (d1.coordinates, recorded[d1.coordinates])


class SendingWhileAnotherRuns(CommandsTopicStandIn):
    """The commands topic while two re-drives run: the first send waits for `meanwhile`
    (another run, from its claims to its sends) before the broker acknowledges it."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: list[Awaitable[object]] = []

    async def send(self, key: bytes | None, value: bytes, headers: object) -> tuple[int, int]:
        while self.meanwhile:
            await self.meanwhile.pop()
        return await super().send(key, value, headers)


@pytest.mark.parametrize("force", [False, True])
def test_two_re_drives_planned_at_once_send_one_dead_letter_of_a_command(
    monkeypatch: pytest.MonkeyPatch, force: bool
) -> None:
    """D1 and D2 are dead letters of one command. Runs A (selecting D1) and B (selecting D2)
    plan at the same moment: neither plan sees a re-drive of the command, so each lets its
    dead letter go. A claims D1 and, while it sends, B claims D2: B's claim is refused with
    the plan's reason, forced or not, and only D1 reaches the commands topic."""
    from worker.entrypoints import dlq

    body = encode(command(account_id=101, command_id="cmd-1"))
    d1, d2 = copy_of(body, offset=5), copy_of(body, offset=6)
    plan_a, plan_b = (
        plan(
            [read_dead_letter(record)],
            commands_topic=TOPIC,
            max_redrives=3,
            redrives={},
            answered={},
            force=force,
        )
        for record in (d1, d2)
    )
    assert [p.goes for p in plan_a + plan_b] == [True, True]
    table = ClaimsTable()
    commands = SendingWhileAnotherRuns()
    patch_redrive(monkeypatch, table, commands, [d1, d2])

    async def both() -> tuple[dlq.Report, dlq.Report]:
        run_b = asyncio.ensure_future(dlq.redrive(Settings(), plan_b, force=force))
        commands.meanwhile.append(run_b)
        run_a = await dlq.redrive(Settings(), plan_a, force=force)
        return run_a, await run_b

    run_a, run_b = asyncio.run(both())

    assert [letter.coordinates for letter, _ in run_a.sent] == [(1, 5)]
    assert run_b.sent == [] and commands.sent == [d1.value]
    ((letter, why),) = run_b.skipped
    # What B's plan would have said, had it been made once A's claim stood (unconfirmed).
    claimed_at = table.rows[(1, 5)][0]
    planned_later = refusal(
        read_dead_letter(d2),
        commands_topic=TOPIC,
        max_redrives=3,
        redriven=None,
        answered=None,
        command_redriven=((1, 5), Redrive(claimed_at, None, (101, "cmd-1"))),
    )
    assert planned_later is not None and not planned_later.forceable
    assert letter.coordinates == (1, 6) and why == planned_later.why
    assert "1:5" in why and "never confirmed" in why and "answered twice" in why
    assert (1, 6) not in table.rows  # B holds no claim: D2 is not labelled as perhaps sent


class Database:
    """dlq_redrives and Postgres's advisory locks as `store.claim`'s statements meet them at
    READ COMMITTED: a transaction's rows are seen by others once it commits (its locks are
    released then), and each statement is a round trip during which another claim runs."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, int], dict[str, object]] = {}
        self.locks: dict[tuple[object, ...], asyncio.Lock] = {}
        self.locked: list[tuple[object, ...]] = []
        self.isolations: list[str | None] = []
        self.lock_timeouts = 0
        self.clock = AT


class Connection:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.written: dict[tuple[str, int, int], dict[str, object]] = {}
        self.held: list[asyncio.Lock] = []

    @contextlib.asynccontextmanager
    async def transaction(self, isolation: str | None = None) -> AsyncIterator[None]:
        # What this stand-in models, and what the lock needs: a later statement sees what
        # another transaction committed (a REPEATABLE READ snapshot would predate the wait).
        self.database.isolations.append(isolation)
        try:
            yield
            self.database.rows.update(self.written)  # committed
        finally:
            self.written = {}
            while self.held:
                self.held.pop().release()

    async def execute(self, query: str, *args: object) -> None:
        from worker.adapters.postgres import redrives as store

        await asyncio.sleep(0)
        if query == store.LOCK_TIMEOUT:
            self.database.lock_timeouts += 1
            return
        assert query == store.LOCK_COMMAND, query
        self.database.locked.append(args)
        lock = self.database.locks.setdefault(args, asyncio.Lock())
        await lock.acquire()
        self.held.append(lock)

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        from worker.adapters.postgres import redrives as store

        await asyncio.sleep(0)
        assert query == store.COMMAND_REDRIVES, query
        topic, account_id, command_id = args
        return [
            row
            for (row_topic, _, _), row in self.database.rows.items()
            if (row_topic, row["account_id"], row["command_id"]) == (topic, account_id, command_id)
        ]

    async def fetchval(self, query: str, *args: object) -> datetime | None:
        from worker.adapters.postgres import redrives as store

        await asyncio.sleep(0)
        assert query == store.CLAIM, query
        topic, partition, offset, account_id, command_id = args
        key = (str(topic), int(partition), int(offset))  # type: ignore[call-overload]
        if key in self.database.rows or key in self.written:
            return None
        self.database.clock += timedelta(seconds=1)
        self.written[key] = {
            "dlq_partition": partition,
            "dlq_offset": offset,
            "began_at": self.database.clock,
            "sent_partition": None,
            "sent_offset": None,
            "account_id": account_id,
            "command_id": command_id,
        }
        return self.database.clock


def test_two_claims_of_one_command_at_once_take_turns_and_the_second_is_refused() -> None:
    """The claims of D1 and D2, dead letters of one command, made at once (two re-drives whose
    plans saw no re-drive of it): the command's lock makes the second read the command's
    re-drives only once the first has committed, so it finds D1's claim and holds none."""
    from worker.adapters.postgres import redrives as store

    body = encode(command(account_id=101, command_id="cmd-1"))
    d1, d2 = letter_of(body, offset=5), letter_of(body, offset=6)
    database = Database()

    async def both() -> list[store.Claim]:
        return await asyncio.gather(
            *(store.claim(Connection(database), "dlq", letter) for letter in (d1, d2))
        )

    first, second = asyncio.run(both())
    assert first.began_at is not None and first.command_redriven is None
    assert second.began_at is None
    assert second.command_redriven == ((1, 5), Redrive(first.began_at, None, (101, "cmd-1")))
    assert set(database.rows) == {("dlq", 1, 5)}
    assert database.locked == [(101, "cmd-1"), (101, "cmd-1")]
    # Whatever the database's default isolation, and never waiting on a lock without end.
    assert database.isolations == ["read_committed", "read_committed"]
    assert database.lock_timeouts == 2


def test_a_claim_lets_a_newer_dead_letter_go_and_locks_nothing_without_a_command() -> None:
    """The claim's rule is the plan's: a dead letter written after the command's re-drive
    began (that re-drive failed again) is claimed; one without a command takes no lock."""
    from worker.adapters.postgres import redrives as store

    body = encode(command(account_id=101, command_id="cmd-1"))
    d1 = letter_of(body, offset=5)
    later = AT + timedelta(minutes=10)
    d2 = read_dead_letter(
        DeadLetterRecord(1, 6, int(later.timestamp() * 1000), b"k", body, copy_of(body).headers)
    )
    unreadable = letter_of(b"{not json", offset=7)
    database = Database()

    async def in_turn() -> list[store.Claim]:
        return [
            await store.claim(Connection(database), "dlq", letter)
            for letter in (d1, d2, unreadable)
        ]

    claims = asyncio.run(in_turn())
    assert all(c.began_at is not None and c.command_redriven is None for c in claims)
    assert set(database.rows) == {("dlq", 1, 5), ("dlq", 1, 6), ("dlq", 1, 7)}
    assert database.locked == [(101, "cmd-1"), (101, "cmd-1")]
