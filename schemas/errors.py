"""The public API's error objects, carried in a result's `error`."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

ErrorObjectName = Literal[
    "bad_request_error",
    "authorization_error",
    "not_found_error",
    "precondition_failed_error",
    "invalid_state_error",
    "unexpected_internal_error",
]


class InvalidParam(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    reason: str


class ApiError(BaseModel):
    model_config = ConfigDict(frozen=True, title="api_error")

    id: UUID
    object: ErrorObjectName
    detail: str
    invalid_params: list[InvalidParam] | None = None


class GatewayTimeoutProblem(BaseModel):
    """`serve`'s 504: no result within its deadline (not one of the public API's errors)."""

    model_config = ConfigDict(frozen=True, title="gateway_timeout_problem")

    object: Literal["gateway_timeout_error"] = "gateway_timeout_error"
    detail: str


class ServiceUnavailableProblem(BaseModel):
    """`serve`'s 503: too many open connections or waiting requests in this process (not one
    of the public API's errors); `retry-after` says when to try again."""

    model_config = ConfigDict(frozen=True, title="service_unavailable_problem")

    object: Literal["service_unavailable_error"] = "service_unavailable_error"
    detail: str


class TooManyRequestsProblem(BaseModel):
    model_config = ConfigDict(frozen=True, title="too_many_requests_problem_details")

    object: Literal["too_many_requests_problem_details"] = "too_many_requests_problem_details"
    details: str
