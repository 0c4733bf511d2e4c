"""The result the worker publishes on `fielding-run-command-results`, one per command."""

from __future__ import annotations

from enum import IntEnum

from pydantic import BaseModel, ConfigDict

from schemas.errors import ApiError, TooManyRequestsProblem
from schemas.types import Timestamp


class Status(IntEnum):
    """The HTTP status the public API would have answered: the one list of them."""

    NO_CONTENT = 204
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    PRECONDITION_FAILED = 412
    INVALID_STATE = 422
    TOO_MANY_REQUESTS = 429
    INTERNAL_ERROR = 500


class CommandResult(BaseModel):
    """What the public API would have answered. The ids echo the command's where readable."""

    model_config = ConfigDict(frozen=True, title="fielding_run_command_result")

    command_id: str
    type: str | None
    status: Status
    etag: str | None = None
    error: ApiError | TooManyRequestsProblem | None = None
    retry_after_seconds: int | None = None
    account_id: int | None = None
    project_id: str | None = None
    target_group_id: str | None = None
    fielding_run_id: str | None = None
    processed_at: Timestamp
