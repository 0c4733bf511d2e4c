"""What a request to the HTTP API carries, as FastAPI parameter types: the caller (its bearer
token, judged first), the path's ids, and the public API's headers."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from pydantic import AfterValidator, BeforeValidator

from schemas.result import Status
from schemas.types import ETAG_PATTERN, INT32_MAX, ULID_PATTERN
from worker.adapters.http.answers import ApiContext, error
from worker.service.auth import AuthFailure, Principal


def decimal_digits(value: object) -> object:
    """An account id as the path writes it: digits only (`+101`, `1_01`, `101.0` are not one)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("an account id is a positive integer in decimal digits")
    return value


def calendar_date(value: str) -> str:
    """An API version names a day: 2025-02-30 is not one."""
    date.fromisoformat(value)  # a ValueError is a 400 naming the header
    return value


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


async def principal(request: Request) -> Principal:
    """401 before anything else (a route's dependency runs before its parameters are
    validated), as the worker judges a command. Async, though it awaits nothing: FastAPI runs a
    plain function dependency in a thread pool, a thread hop per request."""
    return verified_caller(request)


def verified_caller(request: Request) -> Principal:
    authorization = request.headers.get("authorization")
    verified = context_of(request).verifier.verify(
        authorization.encode("latin-1") if authorization else None
    )
    if isinstance(verified, AuthFailure):
        raise error(Status.UNAUTHORIZED, verified.detail)
    if verified.system:  # serve's verifier holds no system key; this holds whatever it is given
        raise error(Status.UNAUTHORIZED, "the worker's system tokens are not accepted here")
    return verified


def allowed(user: Principal, account_id: int) -> None:
    if not user.may_act_on(account_id):
        raise error(Status.FORBIDDEN, f"the token does not grant access to account {account_id}")


User = Annotated[Principal, Depends(principal)]
AccountId = Annotated[int, Path(gt=0, le=INT32_MAX), BeforeValidator(decimal_digits)]
UlidPath = Annotated[str, Path(pattern=ULID_PATTERN)]
CommandIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
JobId = Annotated[str, Path(pattern=ULID_PATTERN)]  # job ids are derived ULIDs
ApiVersion = Annotated[
    str,
    Header(
        alias="Cint-API-Version",
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        json_schema_extra={"format": "date"},
        description="The API version, a date (YYYY-MM-DD), e.g. 2025-12-18.",
    ),
    AfterValidator(calendar_date),
]
IfMatch = Annotated[
    str,
    Header(alias="If-Match", pattern=ETAG_PATTERN, description='The run\'s ETag, e.g. W/"5".'),
]
OptionalKey = Annotated[
    str | None,
    Header(
        alias="idempotency-key",
        min_length=1,
        max_length=255,
        description="Becomes the command's id.",
    ),
]
RequiredKey = Annotated[
    str,
    Header(
        alias="idempotency-key",
        min_length=1,
        max_length=255,
        description="Becomes the command's id.",
    ),
]
