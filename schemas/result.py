"""The result the worker publishes on `fielding-run-command-results`, one per command."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.errors import ApiError, TooManyRequestsProblem
from schemas.types import Timestamp

Status = Literal[204, 400, 401, 403, 404, 412, 422, 429, 500]


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
