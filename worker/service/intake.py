"""First look at a command record, before any I/O: unreadable, answered at once, or admitted.

Checks run in the public API's order: authentication (401), then the schema (400), then the
account (403). What survives is admitted to the database stage (429, 404, 412, 422, 204).
`triage` is total: whatever bytes, headers or nesting a record holds, it returns one of the
three, and every record with a readable `command_id` is answered. A record's headers are read
here, once, into its envelope (`envelope.py`); everything after works from that value.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.command import COMMAND_TYPES, Command, RunCommand, parse_command
from schemas.errors import InvalidParam
from worker.service.auth import AuthFailure, Principal, TokenVerifier
from worker.service.catalogue import SYSTEM_COMMAND_TYPES
from worker.service.envelope import (
    Echo,
    RecordEnvelope,
    clean_text,
    header_keys_are_utf8,
    read_envelope,
)
from worker.service.lenient_json import NotAnObject, NotJson, top_level_members
from worker.service.ports import RecordOrigin
from worker.service.trace_context import Headers


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command record as it came off the topic, free of any Kafka client's types."""

    origin: RecordOrigin
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    # Why the consumer could not read the record at all (its batch did not parse), if so.
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """No result can be addressed: the record goes to the DLQ byte for byte."""

    record: CommandRecord
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Answered without touching the database: 400, 401 or 403."""

    record: CommandRecord
    envelope: RecordEnvelope
    echo: Echo
    status: int
    detail: str
    invalid_params: tuple[InvalidParam, ...] | None


@dataclass(frozen=True, slots=True)
class Admitted:
    record: CommandRecord
    envelope: RecordEnvelope
    command: Command
    principal: Principal
    echo: Echo


Triaged = Unreadable | Rejected | Admitted


def invalid_params(error: ValidationError) -> tuple[InvalidParam, ...]:
    """Each field a command broke, named as in its JSON (the union's tag left out)."""
    params = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        location = problem["loc"]
        if location and location[0] in COMMAND_TYPES:  # the union's tag, not a field
            location = location[1:]
        name = ".".join(str(part) for part in location) or "(body)"
        reason = problem["msg"]
        if problem["type"] in ("union_tag_invalid", "union_tag_not_found"):
            name = "type"
            reason = f"unknown command type; the worker handles {', '.join(sorted(COMMAND_TYPES))}"
        params.append(InvalidParam(name=clean_text(name), reason=clean_text(reason, 500)))
    return tuple(params)


def _authenticate(
    command: Command, envelope: RecordEnvelope, verifier: TokenVerifier
) -> Principal | AuthFailure:
    """The record's token; or, on a record without one, the timer signature of a timer."""
    signature = envelope.timer_signature
    if envelope.authorization or signature is None:
        return verifier.verify(envelope.authorization)
    if not isinstance(command, RunCommand) or command.type not in SYSTEM_COMMAND_TYPES:
        return AuthFailure("a timer signature proves the scheduler's timer commands only")
    return verifier.verify_timer(command, signature)


def _refusal(command: Command, principal: Principal, verifier: TokenVerifier) -> str | None:
    """403: a user acts on the accounts of its token, and never sends a timer; the scheduler
    sends nothing but the very timers it derives, for any account (a leaked signature or an
    older scheduler's token can do no more than the scheduler would)."""
    if not principal.system:
        if not principal.may_act_on(command.account_id):
            return f"the token does not grant access to account {command.account_id}"
        if command.type in SYSTEM_COMMAND_TYPES:
            return f"only the worker's scheduler sends {command.type}"
        return None
    if not isinstance(command, RunCommand) or command.type not in SYSTEM_COMMAND_TYPES:
        return "the system actor sends timer commands only"
    expected = verifier.timer_command_id(
        command.fielding_run_id, command.expected_version, command.type
    )
    given = command.command_id.encode("utf-8", "surrogatepass")
    if expected is None or not hmac.compare_digest(given, expected.encode()):
        return "not a timer command the worker's scheduler would send"
    return None


def triage(record: CommandRecord, verifier: TokenVerifier) -> Triaged:
    if record.unreadable is not None:
        return Unreadable(record, record.unreadable)
    if record.value is None:
        return Unreadable(record, "the record has no value (a tombstone)")
    if not header_keys_are_utf8(record.headers):
        return Unreadable(record, "a header key is not UTF-8")
    try:
        # The common case parses once; only a failure pays for the slower look below.
        command = parse_command(record.value)
    except ValidationError as error:
        return _triage_invalid(record, record.value, verifier, error)
    envelope = read_envelope(record.key, record.headers)
    echo = Echo.of_command(command)
    principal = _authenticate(command, envelope, verifier)
    if isinstance(principal, AuthFailure):
        return Rejected(record, envelope, echo, 401, principal.detail, None)
    refusal = _refusal(command, principal, verifier)
    if refusal is not None:
        return Rejected(record, envelope, echo, 403, refusal, None)
    return Admitted(record, envelope, command, principal, echo)


def _triage_invalid(
    record: CommandRecord, value: bytes, verifier: TokenVerifier, error: ValidationError
) -> Unreadable | Rejected:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    too_deep = any("recursion limit" in problem["msg"] for problem in problems)
    try:
        members = top_level_members(value.decode("utf-8"), too_deep=too_deep)
    except UnicodeDecodeError:
        return Unreadable(record, "the value is not UTF-8")
    except NotJson:
        return Unreadable(record, "the value is not JSON")
    except NotAnObject:
        return Unreadable(record, "the value is not a JSON object")
    command_id = members.get("command_id")
    if not isinstance(command_id, str) or not 1 <= len(command_id) <= 255:
        return Unreadable(
            record, "the value has no readable command_id (a string of 1 to 255 characters)"
        )
    envelope = read_envelope(record.key, record.headers)
    echo = Echo.of_members(members, command_id)
    principal = verifier.verify(envelope.authorization)
    if isinstance(principal, AuthFailure):  # authentication is judged before the schema
        return Rejected(record, envelope, echo, 401, principal.detail, None)
    detail = "the command does not match its schema"
    return Rejected(record, envelope, echo, 400, detail, invalid_params(error))
