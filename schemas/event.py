"""The event published on `target-group-events`, once per completion."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from schemas.types import AccountId, Timestamp, Ulid

RunStatusBeforeClose = Literal["live", "scheduled"]


class TargetGroupClosed(BaseModel):
    """A target group stopped taking respondents because its fielding run was completed.

    A repeat, should one ever be seen, carries the same `event_id`.
    """

    model_config = ConfigDict(frozen=True, title="target_group_closed")

    event_id: UUID
    type: Literal["target_group_closed"] = "target_group_closed"
    account_id: AccountId
    project_id: Ulid
    target_group_id: Ulid
    fielding_run_id: Ulid
    reason: Literal["fielding_run_completed"] = "fielding_run_completed"
    previous_status: RunStatusBeforeClose
    fielding_run_version: int
    closed_at: Timestamp
    command_id: str
