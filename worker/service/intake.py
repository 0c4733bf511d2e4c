"""First look at a command record, before any I/O: unreadable, answered at once, or admitted.

Checks run in the public API's order: authentication (401), then the schema (400), then the
account (403). What survives is admitted to the database stage (429, 404, 412, 422, 204).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.command import COMPLETE_FIELDING_RUN, CompleteFieldingRun
from schemas.errors import InvalidParam
from worker.service.auth import AuthFailure, Principal, TokenVerifier
from worker.service.ports import RecordOrigin
from worker.service.trace_context import continue_trace

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command record as it came off the topic, free of any Kafka client's types."""

    origin: RecordOrigin
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Unreadable:
    """No result can be addressed: the record goes to the DLQ byte for byte."""

    record: CommandRecord
    reason: str


@dataclass(frozen=True, slots=True)
class Echo:
    """The fields of a command that a result repeats back, as far as they could be read."""

    command_id: str
    type: str | None
    account_id: int | None = None
    project_id: str | None = None
    target_group_id: str | None = None
    fielding_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Answered without touching the database: 400, 401 or 403."""

    record: CommandRecord
    echo: Echo
    status: int
    detail: str
    invalid_params: tuple[InvalidParam, ...] | None
    trace_headers: list[tuple[str, bytes]]
    trace_id: str


@dataclass(frozen=True, slots=True)
class Admitted:
    record: CommandRecord
    command: CompleteFieldingRun
    principal: Principal
    trace_headers: list[tuple[str, bytes]]
    trace_id: str

    @property
    def echo(self) -> Echo:
        return _command_echo(self.command)


Triaged = Unreadable | Rejected | Admitted


def _header(headers: Headers, name: str) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _command_echo(c: CompleteFieldingRun) -> Echo:
    return Echo(
        c.command_id, c.type, c.account_id, c.project_id, c.target_group_id, c.fielding_run_id
    )


def _echo(document: dict[str, Any], command_id: str) -> Echo:
    def text(name: str) -> str | None:
        value = document.get(name)
        return value if isinstance(value, str) else None

    account_id = document.get("account_id")
    return Echo(
        command_id=command_id,
        type=text("type"),
        account_id=account_id if type(account_id) is int else None,
        project_id=text("project_id"),
        target_group_id=text("target_group_id"),
        fielding_run_id=text("fielding_run_id"),
    )


def _invalid_params(error: ValidationError) -> tuple[InvalidParam, ...]:
    params = []
    for problem in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in problem["loc"]) or "(body)"
        reason = problem["msg"]
        if name == "type" and problem["type"] == "literal_error":
            reason = f"unknown command type; the worker handles {COMPLETE_FIELDING_RUN!r}"
        params.append(InvalidParam(name=name, reason=reason))
    return tuple(params)


def triage(record: CommandRecord, verifier: TokenVerifier) -> Triaged:
    if record.value is None:
        return Unreadable(record, "the record has no value (a tombstone)")
    try:
        # The common case parses once; only a failure pays for the slower look below.
        command = CompleteFieldingRun.model_validate_json(record.value)
    except ValidationError as error:
        return _triage_invalid(record, record.value, verifier, error)
    trace_headers, trace_id = continue_trace(record.headers)
    principal = verifier.verify(_header(record.headers, "authorization"))
    if isinstance(principal, AuthFailure):
        return Rejected(
            record, _command_echo(command), 401, principal.detail, None, trace_headers, trace_id
        )
    if not principal.may_act_on(command.account_id):
        detail = f"the token does not grant access to account {command.account_id}"
        return Rejected(record, _command_echo(command), 403, detail, None, trace_headers, trace_id)
    return Admitted(record, command, principal, trace_headers, trace_id)


def _triage_invalid(
    record: CommandRecord, value: bytes, verifier: TokenVerifier, error: ValidationError
) -> Unreadable | Rejected:
    try:
        document = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        return Unreadable(record, "the value is not UTF-8")
    except ValueError:
        return Unreadable(record, "the value is not JSON")
    if not isinstance(document, dict):
        return Unreadable(record, "the value is not a JSON object")
    command_id = document.get("command_id")
    if not isinstance(command_id, str) or not 1 <= len(command_id) <= 255:
        return Unreadable(
            record, "the value has no readable command_id (a string of 1 to 255 characters)"
        )
    trace_headers, trace_id = continue_trace(record.headers)
    echo = _echo(document, command_id)
    principal = verifier.verify(_header(record.headers, "authorization"))
    if isinstance(principal, AuthFailure):  # authentication is judged before the schema
        return Rejected(record, echo, 401, principal.detail, None, trace_headers, trace_id)
    return Rejected(
        record,
        echo,
        400,
        "the command does not match its schema",
        _invalid_params(error),
        trace_headers,
        trace_id,
    )
