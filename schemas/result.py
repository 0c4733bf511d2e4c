"""The result the worker publishes on `fielding-run-command-results`, one per command record."""

from __future__ import annotations

from enum import IntEnum

from pydantic import BaseModel, ConfigDict

from schemas.errors import ApiError, TooManyRequestsProblem
from schemas.job import BulkJob, FieldingRunJob
from schemas.types import Timestamp, Ulid


class Status(IntEnum):
    """The HTTP status the public API would have answered: the one list of them."""

    OK = 200
    CREATED = 201
    ACCEPTED = 202
    NO_CONTENT = 204
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    PRECONDITION_FAILED = 412
    INVALID_STATE = 422
    TOO_MANY_REQUESTS = 429
    INTERNAL_ERROR = 500


class LaunchedTimes(BaseModel):
    """launch_now_fielding_run's 200: the run's new times."""

    model_config = ConfigDict(frozen=True, title="launched_times")

    start_fielding_at: Timestamp
    end_fielding_at: Timestamp


class UpdatedRun(BaseModel):
    """update_fielding_run's 202."""

    model_config = ConfigDict(frozen=True, title="updated_run")

    id: Ulid


class CreatedJob(BaseModel):
    """A job command's 201."""

    model_config = ConfigDict(frozen=True, title="created_job")

    job: FieldingRunJob | BulkJob


class CommandResult(BaseModel):
    """What the public API would have answered. The ids echo the command's where readable."""

    model_config = ConfigDict(frozen=True, title="fielding_run_command_result")

    command_id: str
    type: str | None
    status: Status
    etag: str | None = None
    body: LaunchedTimes | UpdatedRun | CreatedJob | None = None
    error: ApiError | TooManyRequestsProblem | None = None
    retry_after_seconds: int | None = None
    account_id: int | None = None
    project_id: str | None = None
    target_group_id: str | None = None
    fielding_run_id: str | None = None
    processed_at: Timestamp
