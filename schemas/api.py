"""The HTTP API's own shapes, as the public API names them: request bodies and the fielding run
resource. Commands, results, errors and jobs are the other modules' (the API returns those)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from schemas.command import MAX_TARGET_GROUPS
from schemas.types import RunStatusName, RunTime, Timestamp, Ulid

# The version of the public API whose operations and shapes these are.
API_VERSION = "2025-12-18"


# RFC 3339's date-time (section 5.6); pydantic alone also takes "1764583200" as seconds.
RFC_3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def text_or_datetime(value: object) -> object:
    """Request bodies are validated leniently (FastAPI hands over decoded JSON), and lenient
    pydantic takes a number, or a string of digits, as seconds since 1970; the document says
    RFC 3339 text."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC_3339.fullmatch(value)):
        return value
    raise ValueError("a time is an RFC 3339 string, such as 2026-12-01T10:00:00Z")


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
    last_changed_by: UUID
    start_fielding_at: Timestamp
    end_fielding_at: Timestamp
    status: RunStatusName
    version: int


class FieldingRunList(BaseModel):
    """A target group's runs: at most one."""

    model_config = ConfigDict(title="GetListFieldingRunsResponse")

    data: list[FieldingRunItem]
    has_more: Literal[False] = False
