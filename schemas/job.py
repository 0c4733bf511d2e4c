"""The job resources of the public API: runs created from a draft, and bulk changes by target
group. A job's result carries one in its `body`; `fielding-worker jobs get` prints one."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from schemas.types import Timestamp, Ulid

JobStatus = Literal["Completed", "Failed"]
# The public API's failure codes (its schema lists examples, not an enum).
FailureCode = Literal[
    "TargetGroupNotFound",
    "TargetGroupInvalidState",
    "StatusTransitionNotAllowed",
    "InvalidFieldingDates",
]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional() -> Any:
    """A field the public API's document leaves optional but does not let be null: left out
    when it has no value, and shown as optional (not nullable) in the JSON Schema."""
    return Field(
        default=None, exclude_if=lambda value: value is None, json_schema_extra=_no_default
    )


class FailureReason(BaseModel):
    """Why one target group of a bulk job failed (the public API's `BulkJobFailureReason`)."""

    model_config = ConfigDict(frozen=True)

    code: FailureCode
    description: str


class FailureReasonDetail(BaseModel):
    """One rule a draft job broke (the public API's `FieldingRunJobFailureReasonDetail`)."""

    model_config = ConfigDict(frozen=True)

    name: str  # a machine-readable code: the field, or the subject, at fault
    reason: str  # a machine-readable code: the rule it broke
    detail: str  # for people


class FieldingRunJobFailureReason(BaseModel):
    """Why a draft job failed (the public API's `FieldingRunJobFailureReason`): its code, and
    one detail for each rule broken."""

    # `reasons` is always written, so the serialised shape requires it.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    code: FailureCode
    description: str
    # Jobs stored before details existed are read with none.
    reasons: list[FailureReasonDetail] = Field(default_factory=list)


class FieldingRunJob(BaseModel):
    """A launch-from-draft or schedule-from-draft job. The fields that have no value for its
    status are left out, not null: the public API's document does not let them be null."""

    model_config = ConfigDict(frozen=True, title="fielding_run_job")

    job_id: str
    created_fielding_run_id: Ulid | SkipJsonSchema[None] = optional()  # Completed
    created_at: Timestamp
    created_by: UUID
    status: JobStatus
    failure_reason: FieldingRunJobFailureReason | SkipJsonSchema[None] = optional()  # Failed
    # Failed, when the command carried a trace.
    job_trace_id: str | SkipJsonSchema[None] = optional()


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
