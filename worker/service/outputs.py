"""What handling a command produces: results, events and DLQ copies, ready to publish."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from schemas.errors import ApiError, ErrorObjectName, InvalidParam, TooManyRequestsProblem
from schemas.result import CommandResult
from worker.service.intake import Echo


class Channel(Enum):
    RESULT = "result"
    EVENT = "event"
    DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class Emission:
    channel: Channel
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    status: int | None = None  # results only, for metrics
    command_type: str | None = None


# Event and error ids need uniqueness, not secrecy: 122 random bits from a generator seeded
# from os.urandom, without uuid4's system call per id (a tenth of the worker's CPU in a profile).
_ids = random.Random()


def new_id() -> uuid.UUID:
    """A random (version 4) UUID."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


ERROR_OBJECTS: dict[int, ErrorObjectName] = {
    400: "bad_request_error",
    401: "authorization_error",
    403: "authorization_error",
    404: "not_found_error",
    412: "precondition_failed_error",
    422: "invalid_state_error",
    500: "unexpected_internal_error",
}


def result_json(
    echo: Echo,
    status: int,
    processed_at: datetime,
    *,
    etag: str | None = None,
    detail: str | None = None,
    invalid_params: tuple[InvalidParam, ...] | None = None,
    retry_after_seconds: int | None = None,
) -> bytes:
    error: ApiError | TooManyRequestsProblem | None = None
    if status == 429:
        error = TooManyRequestsProblem(details=detail or "the account's command rate is exceeded")
    elif status != 204:
        error = ApiError(
            id=new_id(),
            object=ERROR_OBJECTS[status],
            detail=detail or "",
            invalid_params=list(invalid_params) if invalid_params is not None else None,
        )
    return (
        CommandResult(
            command_id=echo.command_id,
            type=echo.type,
            status=status,
            etag=etag,
            error=error,
            retry_after_seconds=retry_after_seconds,
            account_id=echo.account_id,
            project_id=echo.project_id,
            target_group_id=echo.target_group_id,
            fielding_run_id=echo.fielding_run_id,
            processed_at=processed_at,
        )
        .model_dump_json()
        .encode()
    )


def result_key(echo: Echo, record_key: bytes | None) -> bytes | None:
    """Results are keyed by fielding_run_id; where it is unreadable, by the command's own key."""
    return echo.fielding_run_id.encode() if echo.fielding_run_id else record_key
