"""The HTTP API's own shapes, as the public API names them: request bodies and the fielding run
resource. Commands, results, errors and jobs are the other modules' (the API returns those)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from schemas.command import MAX_TARGET_GROUPS
from schemas.types import RunTime, Timestamp, Ulid

FieldingRunStatus = Literal["scheduled", "live", "paused", "completed"]


def text_or_datetime(value: object) -> object:
    """Request bodies are validated leniently (FastAPI hands over decoded JSON), and lenient
    pydantic takes a number as seconds since 1970; the document says RFC 3339 text. (Commands
    are strict models, which take only text from JSON.)"""
    if not isinstance(value, str | datetime):
        raise ValueError("a time is an RFC 3339 string, such as 2026-12-01T10:00:00Z")
    return value


RequestTime = Annotated[RunTime, BeforeValidator(text_or_datetime)]


class UpdateFieldingRunRequest(BaseModel):
    model_config = ConfigDict(title="UpdateFieldingRunRequest")

    start_fielding_at: RequestTime
    end_fielding_at: RequestTime


class LaunchFieldingRunFromDraftRequest(BaseModel):
    model_config = ConfigDict(title="CreateLaunchFieldingRunFromDraftJobRequest")

    end_fielding_at: RequestTime


class ScheduleFieldingRunFromDraftRequest(BaseModel):
    model_config = ConfigDict(title="CreateScheduleFieldingRunFromDraftJobRequest")

    start_fielding_at: RequestTime
    end_fielding_at: RequestTime


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
