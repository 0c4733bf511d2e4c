"""Message shapes: the checked-in JSON Schema files are generated from the pydantic models."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.api import LaunchFieldingRunFromDraftRequest
from schemas.errors import ApiError
from schemas.event import TargetGroupClosed
from schemas.generate import JSON_DIR, MESSAGES, render, stale_files
from schemas.result import CommandResult
from schemas.types import etag_of, format_timestamp, version_of


def test_the_checked_in_json_schemas_are_current() -> None:
    assert stale_files() == [], "run: python -m schemas.generate"


def test_every_message_has_a_schema_file_and_nothing_else_is_there() -> None:
    assert sorted(p.name for p in JSON_DIR.glob("*.json")) == sorted(MESSAGES)
    for model, mode in MESSAGES.values():
        assert json.loads(render(model, mode))["$schema"].endswith("2020-12/schema")


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 29, 10, 0, 0, 12_345, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-29T10:00:00.012Z"


def test_etags_round_trip() -> None:
    assert etag_of(6) == 'W/"6"'
    assert version_of('W/"6"') == version_of('"6"') == 6


def test_a_result_serialises_like_the_contracts_example() -> None:
    result = CommandResult(
        command_id="01JDZQ7YV1T2K3M4N5P6Q7R8S9",
        type="complete_fielding_run",
        status=204,
        etag='W/"6"',
        account_id=101,
        project_id="01BTGNYV6HRNK8K8VKZASZCFP0",
        target_group_id="01BTGNYV6HRNK8K8VKZASZCFP1",
        fielding_run_id="01BTGNYV6HRNK8K8VKZASZCFP2",
        processed_at=datetime(2026, 11, 29, 10, 0, 0, 12_000, tzinfo=UTC),
    )
    assert json.loads(result.model_dump_json()) == {
        "command_id": "01JDZQ7YV1T2K3M4N5P6Q7R8S9",
        "type": "complete_fielding_run",
        "status": 204,
        "etag": 'W/"6"',
        "error": None,
        "retry_after_seconds": None,
        "account_id": 101,
        "project_id": "01BTGNYV6HRNK8K8VKZASZCFP0",
        "target_group_id": "01BTGNYV6HRNK8K8VKZASZCFP1",
        "fielding_run_id": "01BTGNYV6HRNK8K8VKZASZCFP2",
        "processed_at": "2026-11-29T10:00:00.012Z",
        "body": None,
    }


def test_an_error_has_the_apis_shape() -> None:
    error = ApiError(id=uuid.uuid4(), object="not_found_error", detail="gone")
    assert set(json.loads(error.model_dump_json())) == {"id", "object", "detail", "invalid_params"}


def test_an_event_serialises_like_the_contracts_example() -> None:
    event = TargetGroupClosed(
        event_id=uuid.UUID("2b1e6a8e-0000-4000-8000-000000000000"),
        account_id=101,
        project_id="01BTGNYV6HRNK8K8VKZASZCFP0",
        target_group_id="01BTGNYV6HRNK8K8VKZASZCFP1",
        fielding_run_id="01BTGNYV6HRNK8K8VKZASZCFP2",
        previous_status="live",
        fielding_run_version=6,
        reason="fielding_run_completed",
        occurred_at=datetime(2026, 11, 29, 10, 0, 0, 10_000, tzinfo=UTC),
        closed_at=datetime(2026, 11, 29, 10, 0, 0, 10_000, tzinfo=UTC),
        command_id="01JDZQ7YV1T2K3M4N5P6Q7R8S9",
    )
    assert json.loads(event.model_dump_json()) == {
        "event_id": "2b1e6a8e-0000-4000-8000-000000000000",
        "type": "target_group_closed",
        "account_id": 101,
        "project_id": "01BTGNYV6HRNK8K8VKZASZCFP0",
        "target_group_id": "01BTGNYV6HRNK8K8VKZASZCFP1",
        "fielding_run_id": "01BTGNYV6HRNK8K8VKZASZCFP2",
        "reason": "fielding_run_completed",
        "previous_status": "live",
        "fielding_run_version": 6,
        "closed_at": "2026-11-29T10:00:00.010Z",
        "occurred_at": "2026-11-29T10:00:00.010Z",
        "status": "completed",
        "command_id": "01JDZQ7YV1T2K3M4N5P6Q7R8S9",
    }


@pytest.mark.parametrize(
    "value",
    [
        "-2926781120",
        "1764583200.5",
        "true",
        "null",
        "{}",
        '"1764583200"',  # digits in a string: seconds to pydantic alone
        '"2026-12-01T10:00Z"',  # no seconds
        '"2026-12-01T10:00:00+0100"',  # offset without its colon
    ],
)
def test_a_time_that_is_not_rfc_3339_text_is_refused(value: str) -> None:
    # pydantic alone takes a number as seconds since 1970; the JSON Schema, and so the HTTP
    # API, says a date-time string
    body = f'{{"end_fielding_at": {value}}}'
    with pytest.raises(ValidationError, match="RFC 3339"):
        LaunchFieldingRunFromDraftRequest.model_validate_json(body)
    with pytest.raises(ValidationError, match="RFC 3339"):  # as FastAPI validates: decoded
        LaunchFieldingRunFromDraftRequest.model_validate(json.loads(body))
    good = {"end_fielding_at": "2026-12-01T11:00:00+01:00"}
    for parsed in (
        LaunchFieldingRunFromDraftRequest.model_validate(good),
        LaunchFieldingRunFromDraftRequest.model_validate_json(json.dumps(good)),
    ):
        assert parsed.end_fielding_at == datetime(2026, 12, 1, 10, tzinfo=UTC)
