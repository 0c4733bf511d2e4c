"""The HTTP API's own shapes, as the public API names them: request bodies and the fielding run
resource. Commands, results, errors and jobs are the other modules' (the API returns those)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.command import MAX_TARGET_GROUPS
from schemas.types import RunTime, Timestamp, Ulid

FieldingRunStatus = Literal["scheduled", "live", "paused", "completed"]


class UpdateFieldingRunRequest(BaseModel):
    model_config = ConfigDict(title="UpdateFieldingRunRequest")

    start_fielding_at: RunTime
    end_fielding_at: RunTime


class LaunchFieldingRunFromDraftRequest(BaseModel):
    model_config = ConfigDict(title="CreateLaunchFieldingRunFromDraftJobRequest")

    end_fielding_at: RunTime


class ScheduleFieldingRunFromDraftRequest(BaseModel):
    model_config = ConfigDict(title="CreateScheduleFieldingRunFromDraftJobRequest")

    start_fielding_at: RunTime
    end_fielding_at: RunTime


class BulkTargetGroupsRequest(BaseModel):
    model_config = ConfigDict(title="CreateBulkTargetGroupJobRequest")

    target_group_ids: Annotated[list[Ulid], Field(min_length=1, max_length=MAX_TARGET_GROUPS)]


class FieldingRunItem(BaseModel):
    """A fielding run as the public API shows it (its ETag goes in the header)."""

    model_config = ConfigDict(title="FieldingRunItem")

    id: Ulid
    last_changed_at: Timestamp
    last_changed_by: UUID | None
    start_fielding_at: Timestamp | None
    end_fielding_at: Timestamp | None
    status: FieldingRunStatus
    version: int


class FieldingRunList(BaseModel):
    """A target group's runs: at most one."""

    model_config = ConfigDict(title="GetListFieldingRunsResponse")

    data: list[FieldingRunItem]
    has_more: Literal[False] = False
