"""What intake reads from a command record, once, for the rest of the service: its envelope
(the record's key and what its headers say: token or timer signature, trace context, reply
address) and the fields of the command that its result repeats back (`Echo`).

Nothing after intake reads a command record's headers again; outputs are built from these
values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.command import COMMAND_TYPES, Command, RunCommand
from worker.service.auth import TIMER_SIGNATURE
from worker.service.replies import reply_address
from worker.service.trace_context import Headers, continue_trace

# Echoed strings: a command's ids are 26 characters and its command_id at most 255.
MAX_ECHO = 255


@dataclass(frozen=True, slots=True)
class RecordEnvelope:
    """A command record's key and headers, as the service uses them."""

    key: bytes | None
    authorization: bytes | None
    # The headers of this command's outputs: its trace continued (`continue_trace`).
    trace_headers: list[tuple[str, bytes]]
    trace_id: str  # hex, for logs
    reply_to: tuple[int, bytes] | None = None  # where `serve` waits for the result
    timer_signature: bytes | None = None  # the scheduler's proof of a timer command


def header(headers: Headers, name: str) -> bytes | None:
    """The first header called `name` (in lower case), in any case."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def read_envelope(key: bytes | None, headers: Headers) -> RecordEnvelope:
    trace_headers, trace_id = continue_trace(headers)
    return RecordEnvelope(
        key,
        header(headers, "authorization"),
        trace_headers,
        trace_id,
        reply_address(headers),
        header(headers, TIMER_SIGNATURE),
    )


def header_keys_are_utf8(headers: Headers) -> bool:
    """False when a header key holds bytes that are not UTF-8 (the consumer reads those with
    `surrogateescape`): such a header cannot be written back by a Kafka client."""
    for key, _ in headers:
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def clean_text(text: str, limit: int = MAX_ECHO) -> str:
    """`text` made encodable as UTF-8 (lone surrogates become U+FFFD) and at most `limit`
    characters long."""
    text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


@dataclass(frozen=True, slots=True)
class Echo:
    """The fields of a command that a result repeats back, as far as they could be read;
    every string clean (see `clean_text`)."""

    command_id: str
    type: str | None
    account_id: int | None = None
    project_id: str | None = None
    target_group_id: str | None = None
    fielding_run_id: str | None = None

    @classmethod
    def of_command(cls, command: Command) -> Echo:
        """A command that passed its schema holds only clean strings."""
        if isinstance(command, RunCommand):  # most commands: plain attributes, no lookups
            return cls(
                command.command_id,
                command.type,
                command.account_id,
                command.project_id,
                command.target_group_id,
                command.fielding_run_id,
            )
        return cls(
            command.command_id,
            command.type,
            command.account_id,
            command.project_id,
            getattr(command, "target_group_id", None),
        )

    @classmethod
    def of_members(cls, members: dict[str, Any], command_id: str) -> Echo:
        """From the top-level members of a document that failed its schema."""

        def text(name: str) -> str | None:
            value = members.get(name)
            return clean_text(value) if isinstance(value, str) else None

        account_id = members.get("account_id")
        return cls(
            command_id=clean_text(command_id),
            type=text("type"),
            account_id=account_id
            if type(account_id) is int and -(2**63) <= account_id < 2**63
            else None,
            project_id=text("project_id"),
            target_group_id=text("target_group_id"),
            fielding_run_id=text("fielding_run_id"),
        )

    @property
    def known_type(self) -> str | None:
        """The command's type if it is one the worker knows (a metric label takes no other)."""
        return self.type if self.type in COMMAND_TYPES else None
