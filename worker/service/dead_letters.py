"""Working the DLQ: what a dead letter is, whether it may go back to the commands topic, and
what it carries when it does. Pure rules; `fielding-worker dlq` does the reading and sending.

A dead letter is re-driven with its original key, value and headers, the `dlq.*` headers
removed and `fielding-redrives` set to one more than it carried. The worker copies a record's
headers byte for byte when it dead-letters it, so a re-driven record that fails again comes
back with its count, and the count stops a loop.

What must hold: re-driving never makes the worker answer a command twice. The worker answers
every command record; a command whose outcome it remembers is answered again with the same
result, as a second result record. So a dead letter is sent back at most once (the store
records each re-drive before it is sent), and not at all when its command's outcome is
remembered (docs/decisions/dlq-redrive.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from worker.service import outputs
from worker.service.envelope import header_keys_are_utf8
from worker.service.lenient_json import NotAnObject, NotJson, top_level_members
from worker.service.trace_context import Headers

# The re-drive count, in ASCII decimal: how many times the record was sent back from the DLQ.
REDRIVES: Final = "fielding-redrives"
DLQ_PREFIX: Final = "dlq."
_ORIGIN = (outputs.DLQ_TOPIC, outputs.DLQ_PARTITION, outputs.DLQ_OFFSET)
MAX_ACCOUNT_ID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A record of the DLQ topic as read, free of any Kafka client's types."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What `dlq list` shows of a dead letter, read from its headers and value."""

    partition: int
    offset: int
    dead_lettered_at: datetime
    reason: str | None  # None: the record has no dlq.reason (not written by the worker)
    size: int  # the original value's bytes (a stub says how many it had, when it knew)
    command_id: str | None
    account_id: int | None
    redrives: int  # the fielding-redrives the record carried
    stub: bool
    original: tuple[str, int, int] | None  # topic, partition, offset it was read from
    # False when a header key is not UTF-8 (another producer's record): no Kafka client sends it.
    sendable_headers: bool = True

    @property
    def coordinates(self) -> tuple[int, int]:
        return self.partition, self.offset

    @property
    def command(self) -> tuple[int, str] | None:
        """(account_id, command_id), the worker's idempotency key, when both are readable."""
        if self.account_id is None or self.command_id is None:
            return None
        return self.account_id, self.command_id


@dataclass(frozen=True, slots=True)
class Redrive:
    """A re-drive the store recorded: begun at `began_at`, and where the record landed on the
    commands topic once the broker acknowledged it (None until then); `command`: the dead
    letter's command, when it had a readable one."""

    began_at: datetime
    sent_to: tuple[int, int] | None
    command: tuple[int, str] | None = None  # (account_id, command_id) of the dead letter

    @property
    def confirmed(self) -> bool:
        return self.sent_to is not None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a dead letter is not re-driven; `forceable`: `--force` sends it all the same."""

    why: str
    forceable: bool = False


def _header(headers: Headers, name: str) -> bytes | None:
    """The last value of header `name` (a producer may repeat a header; the last one wins)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


# More digits than any real count: read as this, over every limit (int() refuses 4,300 digits).
COUNT_DIGITS = 9
HUGE_COUNT = 10**COUNT_DIGITS


def _count(value: bytes | None) -> int:
    """A re-drive count as written; anything else reads as 0 (a sender may set any header),
    and a number too long for a count as HUGE_COUNT."""
    text = _text(value)
    if text is None or not (text.isascii() and text.isdigit()):
        return 0
    return int(text) if len(text) <= COUNT_DIGITS else HUGE_COUNT


def _members(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        return top_level_members(value.decode("utf-8"))
    except (UnicodeDecodeError, NotJson, NotAnObject):
        return {}


def _original(headers: Headers) -> tuple[str, int, int] | None:
    topic, partition, offset = (_text(_header(headers, name)) for name in _ORIGIN)
    if topic is None or partition is None or offset is None:
        return None
    try:
        return topic, int(partition), int(offset)
    except ValueError:
        return None


# The timestamps a datetime holds: a record's timestamp is whatever its producer set (any int64).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FIRST_MS = -((_EPOCH - datetime.min.replace(tzinfo=UTC)) // _MS)
_LAST_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MS


def _storable_id(command_id: str) -> bool:
    """True when the store can hold the id (as the worker's CommandId: no NUL, and UTF-8
    encodable, so no lone surrogate): any other cannot have a remembered outcome."""
    if "\x00" in command_id:
        return False
    try:
        command_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_dead_letter(record: DeadLetterRecord) -> DeadLetter:
    """What the record says about itself. Total: whatever it holds, it reads as a dead letter
    (one the worker did not write has no reason and no original)."""
    headers = record.headers
    stub = _header(headers, outputs.DLQ_STUB) == b"true"
    members = _members(record.value)
    if stub:
        size = members.get("value_bytes")
        command_id, account_id = None, None
    else:
        size = len(record.value or b"")
        command_id, account_id = members.get("command_id"), members.get("account_id")
    readable_id = (
        isinstance(command_id, str) and 1 <= len(command_id) <= 255 and _storable_id(command_id)
    )
    readable_account = (
        isinstance(account_id, int)
        and not isinstance(account_id, bool)
        and 1 <= account_id <= MAX_ACCOUNT_ID
    )
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        dead_lettered_at=_EPOCH + min(max(record.timestamp_ms, _FIRST_MS), _LAST_MS) * _MS,
        reason=_text(_header(headers, outputs.DLQ_REASON)),
        size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
        command_id=command_id if readable_id else None,
        account_id=account_id if readable_account else None,
        redrives=_count(_header(headers, REDRIVES)),
        stub=stub,
        original=_original(headers),
        sendable_headers=header_keys_are_utf8(headers),
    )


def refusal(
    letter: DeadLetter,
    *,
    commands_topic: str,
    max_redrives: int,
    redriven: Redrive | None,
    answered: int | None,
    command_redriven: tuple[tuple[int, int], Redrive] | None = None,
) -> Refusal | None:
    """Why `letter` may not be re-driven, or None. `commands_topic`: where it would go, and so
    where it must have come from; `redriven`: this dead letter's re-drive as the store
    recorded it; `answered`: the status the worker remembers for its command;
    `command_redriven`: another dead letter of its command, by (partition, offset), re-driven
    after this one was dead-lettered (`later_redrive`)."""
    if letter.stub:
        return Refusal(
            f"a stub: the record could not be copied ({letter.reason}); the DLQ does not "
            "hold its content"
        )
    if letter.original is None:
        return Refusal("not written by the worker: it has no dlq.original.* headers")
    if not letter.sendable_headers:
        return Refusal("a header key is not UTF-8: no Kafka client can send the record again")
    if letter.original[0] != commands_topic:
        return Refusal(
            f"read from {letter.original[0]!r}, not from the commands topic {commands_topic!r}: "
            "another deployment's dead letter, or a forged one"
        )
    if redriven is not None and redriven.sent_to is not None:
        partition, offset = redriven.sent_to
        return Refusal(
            f"re-driven at {_when(redriven.began_at)} to commands {partition}:{offset}; "
            "its outcome is the answer"
        )
    if answered is not None:
        return Refusal(
            f"its command was answered {answered} and the worker remembers it: sent again, "
            "it would publish that result a second time"
        )
    if command_redriven is not None:
        return Refusal(command_redriven_why(command_redriven))
    if redriven is not None:
        return Refusal(
            f"a re-drive began at {_when(redriven.began_at)} and was never confirmed: the record "
            "may have reached the commands topic; --force sends it (again)",
            forceable=True,
        )
    if letter.redrives >= max_redrives:
        return Refusal(
            f"re-driven {letter.redrives} times and dead-lettered again each time "
            f"(the limit is {max_redrives}); --force sends it again",
            forceable=True,
        )
    return None


def later_redrive(
    letter: DeadLetter, redrives: dict[tuple[int, int], Redrive]
) -> tuple[tuple[int, int], Redrive] | None:
    """The latest recorded re-drive of another dead letter of `letter`'s command that began
    after `letter` was dead-lettered, by (partition, offset): that re-drive reached, or may
    have reached, the worker after this dead letter was written, so the command is (being)
    answered again. A re-drive that began before it is what this dead letter may be the
    failure of: a newer dead letter of the command stays re-drivable. So does the dead letter
    of the very record a re-drive sent, known by its place whatever the two clocks say (the
    record's timestamp is the worker host's, `began_at` the database's)."""
    command = letter.command
    if command is None:
        return None
    later = [
        (coordinates, redrive)
        for coordinates, redrive in redrives.items()
        if redrive.command == command
        and coordinates != letter.coordinates
        and redrive.began_at > letter.dead_lettered_at
        and not _failed_again(letter, redrive)
    ]
    return max(later, key=lambda found: found[1].began_at, default=None)


def _failed_again(letter: DeadLetter, redrive: Redrive) -> bool:
    """Whether `letter` is the record `redrive` sent, dead-lettered again: read from the
    commands topic where the broker put that re-drive."""
    return (
        redrive.sent_to is not None
        and letter.original is not None
        and letter.original[1:] == redrive.sent_to
    )


def command_redriven_why(command_redriven: tuple[tuple[int, int], Redrive]) -> str:
    """Why a dead letter stays when `command_redriven` (`later_redrive`'s answer) stands: what
    the plan says, and what a re-drive says when the claim finds it."""
    (partition, offset), other = command_redriven
    where = (
        "never confirmed: it may have reached the commands topic"
        if other.sent_to is None
        else f"to commands {other.sent_to[0]}:{other.sent_to[1]}"
    )
    return (
        f"its command was re-driven after this dead letter was written: dead letter "
        f"{partition}:{offset} at {_when(other.began_at)}, {where}; sent too, the command "
        "would be answered twice (a newer dead letter of it, if that failed again, may go)"
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def redriven_headers(headers: Headers, redrives: int) -> list[tuple[str, bytes | None]]:
    """The record's own headers, in their order, without the `dlq.*` ones and its earlier
    count; then the count of this re-drive (`redrives`, the count it carried, plus one)."""
    kept = [
        (key, value) for key, value in headers if not key.startswith(DLQ_PREFIX) and key != REDRIVES
    ]
    return [*kept, (REDRIVES, str(redrives + 1).encode())]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command works on: all, or those of some partitions, offsets and
    reasons (a reason matches when it contains the text given, ignoring case)."""

    partitions: frozenset[int] = frozenset()
    from_offset: int | None = None
    to_offset: int | None = None  # inclusive
    reason: str | None = None

    def takes_partition(self, partition: int) -> bool:
        return not self.partitions or partition in self.partitions

    def takes(self, letter: DeadLetter) -> bool:
        if not self.takes_partition(letter.partition):
            return False
        if self.from_offset is not None and letter.offset < self.from_offset:
            return False
        if self.to_offset is not None and letter.offset > self.to_offset:
            return False
        return self.reason is None or self.reason.casefold() in (letter.reason or "").casefold()


@dataclass(frozen=True, slots=True)
class Planned:
    letter: DeadLetter
    refused: Refusal | None
    redriven: Redrive | None = None  # its re-drive as the store recorded it when planned

    @property
    def unconfirmed_since(self) -> datetime | None:
        """When the unconfirmed re-drive the plan saw began: the only claim --force takes over
        (a claim made since is another re-drive's, perhaps sending right now)."""
        if self.redriven is None or self.redriven.confirmed:
            return None
        return self.redriven.began_at

    @property
    def goes(self) -> bool:
        return self.refused is None


def plan(
    letters: Iterable[DeadLetter],
    *,
    commands_topic: str,
    max_redrives: int,
    redrives: dict[tuple[int, int], Redrive],
    answered: dict[tuple[int, str], int],
    force: bool = False,
) -> list[Planned]:
    """Each dead letter with whether it goes. Of several dead letters of one command, only the
    first that may go goes in one re-drive: the worker would answer each record of it. One
    whose command an earlier run re-drove (another dead letter of it, after this one was
    written) does not go either. `redrives`: every re-drive recorded for the DLQ topic."""
    planned = []
    commands: set[tuple[int, str]] = set()
    for letter in letters:
        command = letter.command
        redriven = redrives.get(letter.coordinates)
        refused = refusal(
            letter,
            commands_topic=commands_topic,
            max_redrives=max_redrives,
            redriven=redriven,
            answered=answered.get(command) if command is not None else None,
            command_redriven=later_redrive(letter, redrives),
        )
        if refused is not None and refused.forceable and force:
            refused = None
        if refused is None and command is not None:
            if command in commands:
                refused = Refusal(
                    "an earlier dead letter of the same command goes in this re-drive"
                )
            commands.add(command)
        planned.append(Planned(letter, refused, redriven))
    return planned


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as `dlq list --json` prints it."""
    return {
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_lettered_at": letter.dead_lettered_at.isoformat(timespec="milliseconds"),
        "reason": letter.reason,
        "size": letter.size,
        "command_id": letter.command_id,
        "account_id": letter.account_id,
        "redrives": letter.redrives,
        "stub": letter.stub,
        "original": (
            None
            if letter.original is None
            else dict(zip(("topic", "partition", "offset"), letter.original, strict=True))
        ),
    }


def headers_as_text(headers: Sequence[tuple[str, bytes | None]]) -> list[list[str | None]]:
    """Headers for printing: each value as UTF-8 text, undecodable bytes replaced."""
    return [[key, _text(value)] for key, value in headers]
