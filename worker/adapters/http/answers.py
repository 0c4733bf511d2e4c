"""What the HTTP API answers: a command's result translated to HTTP, the error bodies, the
fielding run resource, and how the OpenAPI document describes the responses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from schemas.api import FieldingRunItem
from schemas.command import Command
from schemas.errors import ApiError, GatewayTimeoutProblem, InvalidParam, TooManyRequestsProblem
from schemas.result import Status
from worker.adapters.kafka.request_reply import Reply
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.service import outputs
from worker.service.auth import TokenVerifier
from worker.service.envelope import clean_text
from worker.service.trace_context import continue_trace

_PROPAGATOR = TraceContextTextMapPropagator()


class Gateway(Protocol):
    """Sends a command and waits for its result (`RequestReply`)."""

    async def send(
        self, command: Command, headers: list[tuple[str, bytes]], deadline: float
    ) -> Reply | None: ...


@dataclass(frozen=True)
class ApiContext:
    verifier: TokenVerifier
    gateway: Gateway
    pool: asyncpg.Pool
    deadline_seconds: float
    max_waiting: int = 500  # change requests waiting for replies (`waits.py`)
    body_seconds: float = 10.0  # a request's body arrives within this (`limits.py`)
    reads_per_window: int = 0  # reads per account per window in this process (`read_limit.py`)
    read_window_seconds: float = 1.0


class ApiProblem(Exception):
    """An answer that is not a success: its status, its body and its headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def error(status: int, detail: str, params: list[InvalidParam] | None = None) -> ApiProblem:
    """An error with the public API's body. A status it has no object for (405, say) takes
    the nearest: a bad request, or an internal error."""
    known = {int(s): name for s, name in outputs.ERROR_OBJECTS.items()}
    fallback = Status.INTERNAL_ERROR if status >= 500 else Status.BAD_REQUEST
    body = ApiError(
        id=outputs.new_id(),
        object=known.get(status, outputs.ERROR_OBJECTS[fallback]),
        detail=clean_text(detail, 500),
        invalid_params=params,
    )
    return ApiProblem(status, body.model_dump(mode="json"))


def timed_out(command_id: str, deadline: float) -> ApiProblem:
    """No result in time (the worker behind or down, the broker away): 504. The command may
    still apply, and at most once: repeating it with the same key gets its result."""
    body = GatewayTimeoutProblem(
        detail=(
            f"no result within {deadline:g} s; command {command_id} may still apply, once: "
            "send it again with the same idempotency-key to get its result"
        )
    )
    return ApiProblem(504, body.model_dump(mode="json"), {"idempotency-key": command_id})


def trace_headers(request: Request) -> dict[str, str]:
    """A response continues the caller's trace (or starts one), as a result does: with this
    request's span when tracing is on."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)  # nothing unless tracing put a span in the current context
    if "traceparent" in carrier:
        return carrier
    headers, _ = continue_trace(_caller_trace(request))
    return {name: value.decode("latin-1") for name, value in headers}


def command_trace(request: Request) -> list[tuple[str, bytes]]:
    """The trace context a command carries: this request's span when tracing is on, else
    the caller's own headers, as they came."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if "traceparent" in carrier:
        return [(name, value.encode("latin-1")) for name, value in carrier.items()]
    return _caller_trace(request)


def _caller_trace(request: Request) -> list[tuple[str, bytes]]:
    return [
        (name, value.encode("latin-1"))
        for name, value in request.headers.items()
        if name in ("traceparent", "tracestate")
    ]


def run_item(run: FieldingRunRecord) -> FieldingRunItem:
    return FieldingRunItem(
        id=run.id,
        last_changed_at=run.last_changed_at,
        last_changed_by=run.last_changed_by,
        start_fielding_at=run.start_fielding_at,
        end_fielding_at=run.end_fielding_at,
        status=run.status.value,
        version=run.version,
    )


def answer(reply: Reply, location: Callable[[str], str] | None = None) -> Response:
    """A command's result as the public API's response: its status; ETag, traceparent and
    tracestate; retry-after on 429; Location on 201; the body (none on 204)."""
    result = reply.result
    status = int(result["status"])
    headers = {
        name: value.decode("latin-1")
        for name, value in reply.headers
        if name in ("traceparent", "tracestate") and value is not None
    }
    if result.get("etag"):
        headers["ETag"] = result["etag"]
    if status == Status.TOO_MANY_REQUESTS and result.get("retry_after_seconds") is not None:
        headers["retry-after"] = str(result["retry_after_seconds"])
    if status == Status.NO_CONTENT:
        return Response(status_code=status, headers=headers)
    if status >= 400:
        return JSONResponse(_as_http(result["error"]), status_code=status, headers=headers)
    body = result.get("body") or {}
    if status == Status.CREATED:
        body = body["job"]
        if location is not None:
            headers["Location"] = location(body["job_id"])
    return JSONResponse(body, status_code=status, headers=headers)


# Where the public API carries in a header what a command carries as a field.
HEADER_NAMES = {"if_match": "If-Match", "command_id": "idempotency-key"}


def _as_http(body: dict[str, Any]) -> dict[str, Any]:
    """A result's error as the HTTP caller sent it: fields named as their headers."""
    params = body.get("invalid_params")
    if isinstance(params, list):
        body["invalid_params"] = [
            {**p, "name": HEADER_NAMES.get(p.get("name"), p.get("name"))} for p in params
        ]
    return body


# --- the OpenAPI document's responses ----------------------------------------------------------

_STRING = {"schema": {"type": "string"}}
TRACE = {
    "traceparent": {**_STRING, "description": "W3C Trace Context: the caller's trace, continued."},
    "tracestate": {**_STRING, "description": "W3C Trace Context, passed through."},
}


def documented(
    success: int,
    *errors: int,
    etag: int | None = None,
    location: int | None = None,
    waits: bool = False,
) -> dict[int | str, dict[str, Any]]:
    """The responses of an operation: the success with its headers, each error with the
    public API's body, and for a change (`waits` for the worker) 504: no result in time."""
    responses: dict[int | str, dict[str, Any]] = {}
    headers: dict[str, Any] = dict(TRACE)
    if etag == success:
        headers["ETag"] = {**_STRING, "description": 'The run\'s version: W/"<version>".'}
    if location == success:
        headers["Location"] = {**_STRING, "description": "Where the job is read."}
    responses[success] = {"headers": headers}
    for status in errors:
        entry: dict[str, Any] = {"model": ApiError, "headers": dict(TRACE)}
        if status == Status.TOO_MANY_REQUESTS:
            entry = {
                "model": TooManyRequestsProblem,
                "headers": {**TRACE, "retry-after": {"schema": {"type": "integer"}}},
            }
        responses[status] = entry
    if not waits:
        return responses
    responses[504] = {
        "description": "No result within the deadline; the command may still apply, once.",
        "content": {"application/json": {"schema": {"type": "object"}}},
        "headers": {**TRACE, "idempotency-key": _STRING},
    }
    return responses
