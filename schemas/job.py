"""The job resources of the public API: runs created from a draft, and bulk changes by target
group. A job's result carries one in its `body`; `fielding-worker jobs get` prints one."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from schemas.types import Timestamp, Ulid

JobStatus = Literal["Completed", "Failed"]
# The public API's failure codes (its schema lists examples, not an enum).
FailureCode = Literal[
    "TargetGroupNotFound",
    "TargetGroupInvalidState",
    "StatusTransitionNotAllowed",
    "InvalidFieldingDates",
]


class FailureReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: FailureCode
    description: str


class FieldingRunJob(BaseModel):
    """A launch-from-draft or schedule-from-draft job."""

    model_config = ConfigDict(frozen=True, title="fielding_run_job")

    job_id: str
    created_fielding_run_id: Ulid | None
    created_at: Timestamp
    created_by: UUID
    status: JobStatus
    failure_reason: FailureReason | None
    job_trace_id: str | None


class UpdatedTargetGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    target_group_id: Ulid


class FailedTargetGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    target_group_id: Ulid
    failure_reason: FailureReason


class UpdatedTargetGroups(BaseModel):
    model_config = ConfigDict(frozen=True)

    data: list[UpdatedTargetGroup]
    has_more: Literal[False] = False


class FailedTargetGroups(BaseModel):
    model_config = ConfigDict(frozen=True)

    data: list[FailedTargetGroup]
    has_more: Literal[False] = False


class BulkJob(BaseModel):
    """A bulk complete, launch, pause, resume or relaunch job."""

    model_config = ConfigDict(frozen=True, title="bulk_job")

    job_id: str
    created_at: Timestamp
    created_by: UUID
    status: JobStatus
    updated_target_groups: UpdatedTargetGroups
    failed_target_groups: FailedTargetGroups


Job = FieldingRunJob | BulkJob
