"""The events published on `target-group-events`, keyed by `target_group_id`: one per change
of a run, in the order of the changes of one run. A repeat, should one ever be seen, carries
the same `event_id`."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from schemas.types import AccountId, RunStatusName, Timestamp, Ulid


class RunChanged(BaseModel):
    """What every event says: which run, its version after the change, and why."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    account_id: AccountId
    project_id: Ulid
    target_group_id: Ulid
    fielding_run_id: Ulid
    fielding_run_version: int
    previous_status: RunStatusName | None  # None: the run was created
    occurred_at: Timestamp
    command_id: str


class TargetGroupOpened(RunChanged):
    """The target group takes respondents: its run went live."""

    model_config = ConfigDict(title="target_group_opened")

    type: Literal["target_group_opened"] = "target_group_opened"
    status: Literal["live"] = "live"
    reason: Literal[
        "launched_now", "start_time_reached", "resumed", "relaunched", "launched_from_draft"
    ]
    start_fielding_at: Timestamp | None
    end_fielding_at: Timestamp | None


class TargetGroupPaused(RunChanged):
    """The target group stopped taking respondents for now: its run was paused."""

    model_config = ConfigDict(title="target_group_paused")

    type: Literal["target_group_paused"] = "target_group_paused"
    status: Literal["paused"] = "paused"
    reason: Literal["paused"] = "paused"


class TargetGroupClosed(RunChanged):
    """The target group stopped taking respondents: its run was completed."""

    model_config = ConfigDict(title="target_group_closed")

    type: Literal["target_group_closed"] = "target_group_closed"
    status: Literal["completed"] = "completed"
    reason: Literal["fielding_run_completed", "end_time_reached"]
    closed_at: Timestamp  # equal to occurred_at, for the consumers that read it


class FieldingRunUpdated(RunChanged):
    """A run's times changed, or a run was created scheduled."""

    model_config = ConfigDict(title="fielding_run_updated")

    type: Literal["fielding_run_updated"] = "fielding_run_updated"
    status: RunStatusName
    reason: Literal["times_changed", "scheduled_from_draft"]
    start_fielding_at: Timestamp | None
    end_fielding_at: Timestamp | None


Event = TargetGroupOpened | TargetGroupPaused | TargetGroupClosed | FieldingRunUpdated
