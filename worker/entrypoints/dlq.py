"""`fielding-worker dlq`: the DLQ listed, one dead letter shown whole, dead letters re-driven.

A re-drive reads the DLQ twice: once to plan (what is selected, what may go and why not), and
once to send what the plan lets go, so that no more than one record's value is held at a time.
Each dead letter is claimed in the store before it is sent and confirmed once the broker has
it (docs/decisions/dlq-redrive.md).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from worker.adapters.kafka.dead_letters import (
    CommandsTopic,
    DlqReadStuck,
    Span,
    TooLarge,
    dlq_spans,
    read_dlq,
    read_one,
)
from worker.adapters.postgres import redrives as store
from worker.adapters.postgres.pool import close_pool, create_pool
from worker.service.dead_letters import (
    REDRIVES,
    DeadLetter,
    Planned,
    Refusal,
    Selection,
    command_redriven_why,
    describe,
    headers_as_text,
    later_redrive,
    plan,
    read_dead_letter,
    redriven_headers,
    refusal,
)
from worker.settings import Settings


@dataclass(frozen=True, slots=True)
class Plan:
    planned: list[Planned]
    spans: list[Span]

    @property
    def going(self) -> list[Planned]:
        return [p for p in self.planned if p.goes]


async def make_plan(settings: Settings, selection: Selection, *, force: bool = False) -> Plan:
    """The selected dead letters, each with whether it may be re-driven now."""
    server, topic = settings.kafka_bootstrap_servers, settings.dlq_topic
    spans = await dlq_spans(
        server, topic, selection.partitions, selection.from_offset, selection.to_offset
    )
    letters = []
    async for record in read_dlq(server, topic, spans):
        letter = read_dead_letter(record)
        if selection.takes(letter):
            letters.append(letter)
    pool = await create_pool(
        settings.database_url, max_size=1, statement_timeout=settings.statement_timeout_seconds
    )
    try:
        recorded = await store.redrives(pool, topic)
        remembered = await store.answered(
            pool, (c for c in (letter.command for letter in letters) if c is not None)
        )
    finally:
        await close_pool(pool)
    planned = plan(
        letters,
        commands_topic=settings.commands_topic,
        max_redrives=settings.dlq_max_redrives,
        redrives=recorded,
        answered=remembered,
        force=force,
    )
    return Plan(planned, spans)


@dataclass(frozen=True, slots=True)
class Stopped:
    """Where a failure (the broker or the database away) stopped a re-drive: the dead letter it
    was at (None: none was in flight), what became of that one, and the failure."""

    letter: DeadLetter | None
    state: str
    error: str


@dataclass
class Report:
    sent: list[tuple[DeadLetter, tuple[int, int]]]
    skipped: list[tuple[DeadLetter, str]]
    stopped: Stopped | None = None


# Failures that stop a re-drive with its report rather than a traceback; any other is a bug.
# (asyncpg raises InterfaceError, not a PostgresError, for a connection lost in a transaction.)
STOPPING = (
    KafkaError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    DlqReadStuck,
)
# What became of the dead letter a failure stopped a re-drive at, by how far it had got.
NOT_SENT = (
    "stopped before it was sent: nothing of it reached the commands topic; `dlq list` says "
    "whether it can go (a claim whose commit the failure cut short holds it until forced)"
)
MAYBE_SENT = (
    "stopped while sending it: its claim stays unconfirmed, and the record may have reached the "
    "commands topic; `dlq list` says what that allows"
)
NOT_RELEASED = (
    "too large for the commands topic, so nothing of it was written, but its claim could not be "
    "undone: `dlq list` shows it unconfirmed"
)
# A record at a planned place that is not the dead letter planned (the DLQ topic was deleted
# and made again since): it was judged by another record's command and count, so it stays.
REPLACED = "another record stands at its place since the plan (was the DLQ topic made again?)"


def failure_text(error: BaseException) -> str:
    """A failure in one line, its type named once (aiokafka's errors name themselves)."""
    text, name = str(error), type(error).__name__
    if text.startswith(name):
        return text
    return f"{name}: {text}" if text else name


def _sent_unconfirmed(sent_to: tuple[int, int]) -> str:
    return (
        f"sent to the commands topic at {sent_to[0]}:{sent_to[1]}, but the confirmation was not "
        "recorded: its claim stays unconfirmed; `dlq list` says what that allows"
    )


def _spans_of(going: list[Planned]) -> list[Span]:
    """The least to read again: per partition, from the first to the last offset that goes."""
    bounds: dict[int, tuple[int, int]] = {}
    for p in going:
        partition, offset = p.letter.coordinates
        low, high = bounds.get(partition, (offset, offset))
        bounds[partition] = (min(low, offset), max(high, offset))
    return [Span(partition, low, high + 1) for partition, (low, high) in sorted(bounds.items())]


async def redrive(
    settings: Settings,
    going: list[Planned],
    on_done: Callable[[DeadLetter], None] = lambda letter: None,
    *,
    force: bool = False,
) -> Report:
    """Sends each dead letter of `going` back to the commands topic: claimed in the store,
    sent, confirmed. One that another re-drive claimed meanwhile, one whose command another
    re-drive claimed after it was dead-lettered (checked with the claim, under the command's
    lock: two re-drives planned at once send at most one dead letter of a command), or one
    whose command the worker has answered since the plan, is skipped; so is one too large for
    the commands topic (its claim undone: nothing of it was written). A failure of the broker
    or the database stops the run (`Report.stopped`): what was done stays done and reported,
    and the dead letter it stopped at keeps whatever claim it had. `force`: as the plan was
    made with."""
    server, topic = settings.kafka_bootstrap_servers, settings.dlq_topic
    wanted = {p.letter.coordinates: p for p in going}
    report = Report([], [])
    at: DeadLetter | None = None
    state = NOT_SENT  # what became of `at`, should a failure stop the run there
    pool = await create_pool(
        settings.database_url, max_size=1, statement_timeout=settings.statement_timeout_seconds
    )
    try:
        async with CommandsTopic(server, settings.commands_topic) as commands:
            async for record in read_dlq(server, topic, _spans_of(going)):
                planned = wanted.pop((record.partition, record.offset), None)
                if planned is None:
                    continue
                at = letter = planned.letter
                state = NOT_SENT
                command = letter.command
                take_over = planned.unconfirmed_since if force else None
                if read_dead_letter(record) != letter:
                    report.skipped.append((letter, REPLACED))
                elif command is not None and (await store.answered(pool, [command])):
                    report.skipped.append((letter, "its command was answered meanwhile"))
                elif (
                    claimed := await store.claim(pool, topic, letter, take_over=take_over)
                ).command_redriven is not None:
                    report.skipped.append((letter, command_redriven_why(claimed.command_redriven)))
                elif (began_at := claimed.began_at) is None:
                    report.skipped.append((letter, "another re-drive sent it meanwhile"))
                else:
                    state = MAYBE_SENT
                    headers = redriven_headers(record.headers, letter.redrives)
                    try:
                        sent_to = await commands.send(record.key, record.value, headers)
                    except TooLarge as too_large:
                        state = NOT_RELEASED
                        await store.release(
                            pool, topic, letter.coordinates, began_at, taken_over=take_over
                        )
                        report.skipped.append((letter, _too_large(letter, too_large)))
                    else:
                        state = _sent_unconfirmed(sent_to)
                        await store.confirm(pool, topic, letter.coordinates, sent_to)
                        report.sent.append((letter, sent_to))
                on_done(letter)
                at = None
    except STOPPING as error:
        report.stopped = Stopped(at, state, failure_text(error))
    finally:
        await close_pool(pool)
    left = "no longer in the DLQ" if report.stopped is None else "not tried: the re-drive stopped"
    report.skipped.extend((p.letter, left) for p in wanted.values())
    return report


def _too_large(letter: DeadLetter, error: TooLarge) -> str:
    return (
        f"too large for the commands topic: {error.size} bytes as a record with the "
        f"{REDRIVES} header (its value {letter.size} bytes), over the limit of {error.limit}; "
        "nothing was sent and its claim was undone"
    )


async def show(settings: Settings, partition: int, offset: int) -> dict[str, Any] | None:
    """One dead letter whole: what `list` says of it, its key, headers and value, and whether
    it may be re-driven now."""
    record = await read_one(settings.kafka_bootstrap_servers, settings.dlq_topic, partition, offset)
    if record is None or (record.partition, record.offset) != (partition, offset):
        return None
    letter = read_dead_letter(record)
    pool = await create_pool(
        settings.database_url, max_size=1, statement_timeout=settings.statement_timeout_seconds
    )
    try:
        recorded = await store.redrives(pool, settings.dlq_topic)
        remembered = await store.answered(pool, [letter.command] if letter.command else [])
    finally:
        await close_pool(pool)
    refused = refusal(
        letter,
        commands_topic=settings.commands_topic,
        max_redrives=settings.dlq_max_redrives,
        redriven=recorded.get(letter.coordinates),
        answered=remembered.get(letter.command) if letter.command else None,
        command_redriven=later_redrive(letter, recorded),
    )
    return {
        **describe(letter),
        **verdict(refused),
        "key": _bytes(record.key),
        "headers": headers_as_text(record.headers),
        "value": _bytes(record.value),
    }


def verdict(refused: Refusal | None) -> dict[str, Any]:
    return {
        "redrivable": refused is None,
        "not_redrivable_because": None if refused is None else refused.why,
        "force_sends_it": refused is not None and refused.forceable,
    }


def _bytes(data: bytes | None) -> dict[str, str] | None:
    """Bytes for printing: as text when they are UTF-8, else as base64."""
    if data is None:
        return None
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}
