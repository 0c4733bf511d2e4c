"""Every output of the worker is built here: results, events, run states, DLQ copies and DLQ
stubs (a result's copy for `serve` gets its headers from `replies`).

Nothing here can fail on what a record contains. Echoed strings are made encodable (a lone
surrogate becomes U+FFFD) and capped in length before they reach a model; error details are
the worker's own sentences plus bounded echoes; so every result fits its topic whatever the
command held. Keys follow one rule each: results by `fielding_run_id` (or the command
record's own key where that is unreadable), events by `target_group_id`, run states by
`fielding_run_id` (the key compaction keeps one record of), DLQ records by the original key.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from fielding_statemachine.decisions import Change
from fielding_statemachine.transitions import RunEvent
from schemas.dead_letter import DeadLetterStub, OriginalRecord
from schemas.errors import ApiError, ErrorObjectName, InvalidParam, TooManyRequestsProblem
from schemas.event import (
    FieldingRunUpdated,
    RunChanged,
    TargetGroupClosed,
    TargetGroupOpened,
    TargetGroupPaused,
)
from schemas.result import CommandResult, CreatedJob, LaunchedTimes, Status, UpdatedRun
from schemas.run_state import FieldingRunState
from worker.service.envelope import Echo, RecordEnvelope, clean_text, header_keys_are_utf8
from worker.service.ports import RecordOrigin

Headers = Sequence[tuple[str, bytes | None]]

MAX_REASON = 1000  # characters of a DLQ reason
MAX_DETAIL = 1000  # characters of an error's detail
MAX_INVALID_PARAMS = 50
# A record batch's header (61 bytes) and one record's varints and attributes, rounded up.
RECORD_OVERHEAD = 100
# The most of a record's key a DLQ stub keeps (a key can be as large as the record).
MAX_STUB_KEY = 1024


# What a DLQ record carries besides a copy's own headers (documented under these names).
DLQ_REASON = "dlq.reason"
DLQ_TOPIC = "dlq.original.topic"
DLQ_PARTITION = "dlq.original.partition"
DLQ_OFFSET = "dlq.original.offset"
DLQ_STUB = "dlq.stub"  # "true" on a stub
DLQ_VALUE_SHA256 = "dlq.value.sha256"


class Channel(Enum):
    RESULT = "result"
    EVENT = "event"
    STATE = "state"
    DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class Emission:
    channel: Channel
    key: bytes | None
    value: bytes | None  # None only in the DLQ copy of a tombstone
    headers: Headers = ()
    origin: RecordOrigin | None = None  # the command record this answers or copies
    status: Status | None = None  # results only, for metrics
    command_type: str | None = None  # results only: a known command type, or None
    # Results only: (partition of the replies topic, key) to send a copy to, for `serve`
    # (`replies.reply_address`).
    reply: tuple[int, bytes] | None = None
    # Results only, for traces: the command's id and run, as far as they could be read.
    command_id: str | None = None
    fielding_run_id: str | None = None

    @property
    def size(self) -> int:
        """An upper bound of the bytes this record takes in a record batch of its own."""
        headers = sum(len(k) * 4 + len(v or b"") + 10 for k, v in self.headers)
        return RECORD_OVERHEAD + len(self.key or b"") + len(self.value or b"") + headers


# Event and error ids need uniqueness, not secrecy: 122 random bits from a generator seeded
# from os.urandom, without uuid4's system call per id (docs/decisions/outputs-serialisation.md).
_ids = random.Random()


def new_id() -> uuid.UUID:
    """A random (version 4) UUID."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


ERROR_OBJECTS: dict[Status, ErrorObjectName] = {
    Status.BAD_REQUEST: "bad_request_error",
    Status.UNAUTHORIZED: "authorization_error",
    Status.FORBIDDEN: "authorization_error",
    Status.NOT_FOUND: "not_found_error",
    Status.PRECONDITION_FAILED: "precondition_failed_error",
    Status.INVALID_STATE: "invalid_state_error",
    Status.INTERNAL_ERROR: "unexpected_internal_error",
}


def to_json(model: type[BaseModel], fields: dict[str, Any]) -> bytes:
    """`model(**fields).model_dump_json().encode()`, by pydantic's core validator and serializer
    directly, without the Python wrappers around them: this runs for the two outputs of every
    command (docs/decisions/outputs-serialisation.md)."""
    instance = model.__pydantic_validator__.validate_python(fields)
    return model.__pydantic_serializer__.to_json(instance)


def _bounded(params: Sequence[InvalidParam]) -> list[InvalidParam]:
    if len(params) <= MAX_INVALID_PARAMS:
        return list(params)
    more = len(params) - MAX_INVALID_PARAMS + 1
    return [
        *params[: MAX_INVALID_PARAMS - 1],
        InvalidParam(name="(more)", reason=f"{more} more invalid parameters"),
    ]


def result_value(
    echo: Echo,
    status: Status,
    processed_at: datetime,
    *,
    etag: str | None = None,
    body: LaunchedTimes | UpdatedRun | CreatedJob | None = None,
    detail: str | None = None,
    invalid_params: Sequence[InvalidParam] | None = None,
    retry_after_seconds: int | None = None,
) -> bytes:
    """A result's JSON. `echo` is clean; so is `detail` once it has passed `clean_text` (it
    may quote a library's message about what a command held)."""
    if detail is not None:
        detail = clean_text(detail, MAX_DETAIL)
    error: ApiError | TooManyRequestsProblem | None = None
    if status is Status.TOO_MANY_REQUESTS:
        error = TooManyRequestsProblem(details=detail or "the account's command rate is exceeded")
    elif status >= 400:
        error = ApiError(
            id=new_id(),
            object=ERROR_OBJECTS[status],
            detail=detail or "",
            invalid_params=_bounded(invalid_params) if invalid_params is not None else None,
        )
    return to_json(
        CommandResult,
        {
            "command_id": echo.command_id,
            "type": echo.type,
            "status": status,
            "etag": etag,
            "body": body,
            "error": error,
            "retry_after_seconds": retry_after_seconds,
            "account_id": echo.account_id,
            "project_id": echo.project_id,
            "target_group_id": echo.target_group_id,
            "fielding_run_id": echo.fielding_run_id,
            "processed_at": processed_at,
        },
    )


def result(
    echo: Echo, value: bytes, status: Status, envelope: RecordEnvelope, origin: RecordOrigin
) -> Emission:
    """A result, keyed by `fielding_run_id`; where that is unreadable, by the command's key.
    With the envelope's `reply_to`, a copy goes to that replies partition too, with that key."""
    key = echo.fielding_run_id.encode() if echo.fielding_run_id else envelope.key
    return Emission(
        Channel.RESULT,
        key,
        value,
        envelope.trace_headers,
        origin,
        status,
        echo.known_type,
        envelope.reply_to,
        echo.command_id,
        echo.fielding_run_id,
    )


def event(key: bytes, value: bytes, *, trace_headers: Headers, origin: RecordOrigin) -> Emission:
    """An event, keyed by its `target_group_id`."""
    return Emission(Channel.EVENT, key, value, trace_headers, origin)


def state(key: bytes, value: bytes, *, trace_headers: Headers, origin: RecordOrigin) -> Emission:
    """A run's state after a change, keyed by its `fielding_run_id`."""
    return Emission(Channel.STATE, key, value, trace_headers, origin)


# Each change's event: its type follows where the run went, its reason why.
EVENTS: dict[RunEvent, tuple[type[RunChanged], str]] = {
    RunEvent.LAUNCH_FROM_DRAFT: (TargetGroupOpened, "launched_from_draft"),
    RunEvent.SCHEDULE_FROM_DRAFT: (FieldingRunUpdated, "scheduled_from_draft"),
    RunEvent.LAUNCH_NOW: (TargetGroupOpened, "launched_now"),
    RunEvent.START_TIME_REACHED: (TargetGroupOpened, "start_time_reached"),
    RunEvent.PAUSE: (TargetGroupPaused, "paused"),
    RunEvent.RESUME: (TargetGroupOpened, "resumed"),
    RunEvent.RELAUNCH: (TargetGroupOpened, "relaunched"),
    RunEvent.COMPLETE: (TargetGroupClosed, "fielding_run_completed"),
    RunEvent.END_TIME_REACHED: (TargetGroupClosed, "end_time_reached"),
    RunEvent.UPDATE_TIMES: (FieldingRunUpdated, "times_changed"),
}


def event_value(change: Change, command_id: str, occurred_at: datetime) -> bytes:
    """The event of one change of a run, as published on the events topic."""
    model, reason = EVENTS[change.event]
    run = change.after
    key = run.key
    before = change.before
    common = {
        "event_id": new_id(),
        "account_id": key.account_id,
        "project_id": key.project_id,
        "target_group_id": key.target_group_id,
        "fielding_run_id": key.fielding_run_id,
        "fielding_run_version": run.version,
        "previous_status": before.status.value if before else None,
        "occurred_at": occurred_at,
        "command_id": command_id,
        "reason": reason,
    }
    if model is TargetGroupClosed:
        common["closed_at"] = occurred_at
    elif model is not TargetGroupPaused:
        common["start_fielding_at"] = run.start_fielding_at
        common["end_fielding_at"] = run.end_fielding_at
        if model is FieldingRunUpdated:
            common["status"] = run.status.value
    return to_json(model, common)


def state_value(change: Change, changed_at: datetime, changed_by: UUID) -> bytes:
    """The run as a change leaves it, as `GET .../fielding-runs/{id}` shows it plus its ids: what
    the store holds once the change is written (`last_changed_*` are the change's)."""
    run = change.after
    key = run.key
    return to_json(
        FieldingRunState,
        {
            "id": key.fielding_run_id,
            "last_changed_at": changed_at,
            "last_changed_by": changed_by,
            "start_fielding_at": run.start_fielding_at,
            "end_fielding_at": run.end_fielding_at,
            "status": run.status.value,
            "version": run.version,
            "account_id": key.account_id,
            "project_id": key.project_id,
            "target_group_id": key.target_group_id,
        },
    )


def _coordinates(origin: RecordOrigin, reason: str) -> list[tuple[str, bytes | None]]:
    return [
        (DLQ_REASON, clean_text(reason, MAX_REASON).encode()),
        (DLQ_TOPIC, origin.topic.encode()),
        (DLQ_PARTITION, str(origin.partition).encode()),
        (DLQ_OFFSET, str(origin.offset).encode()),
    ]


def dlq_copy(
    origin: RecordOrigin, key: bytes | None, value: bytes | None, headers: Headers, reason: str
) -> Emission:
    """The record byte for byte, with its key and headers, plus why and where it came from; a
    stub (`dlq_stub`) where its headers cannot be written back."""
    if not header_keys_are_utf8(headers):
        return dlq_stub(origin, key, value, f"{reason} (a header key is not UTF-8)")
    return Emission(Channel.DLQ, key, value, [*headers, *_coordinates(origin, reason)], origin)


def dlq_stub(origin: RecordOrigin, key: bytes | None, value: bytes | None, reason: str) -> Emission:
    """In place of a copy that cannot be made or cannot fit: the reason, the coordinates and
    a SHA-256 of the value (when the value could be read), never the record's content."""
    digest = hashlib.sha256(value).hexdigest() if value is not None else None
    kept_key = key if key is not None and len(key) <= MAX_STUB_KEY else None
    body = DeadLetterStub(
        reason=clean_text(reason, MAX_REASON),
        original=OriginalRecord(
            topic=origin.topic, partition=origin.partition, offset=origin.offset
        ),
        value_sha256=digest,
        value_bytes=len(value) if value is not None else None,
    )
    headers = [*_coordinates(origin, reason), (DLQ_STUB, b"true")]
    if digest is not None:
        headers.append((DLQ_VALUE_SHA256, digest.encode()))
    return Emission(Channel.DLQ, kept_key, body.model_dump_json().encode(), headers, origin)
