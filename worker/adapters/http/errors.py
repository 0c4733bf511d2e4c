"""Every refusal the HTTP API makes, with the public API's error body: its own (`ApiProblem`),
FastAPI's parameter errors (a 400 here, as the public API says, never FastAPI's 422),
Starlette's (no such route, a wrong method, a body it cannot read) and anything unexpected."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.errors import InvalidParam
from schemas.result import Status
from worker.adapters.http.answers import ApiProblem, error, trace_headers
from worker.adapters.http.params import verified_caller
from worker.service.envelope import clean_text

log = logging.getLogger(__name__)


async def problem_response(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, ApiProblem)
    headers = {**trace_headers(request), **problem.headers}
    return JSONResponse(problem.body, status_code=problem.status, headers=headers)


async def refused(request: Request, refusal: Exception) -> Response:
    """Starlette's own refusals (a body it cannot read, no such route, a wrong method) with
    the public API's error body."""
    assert isinstance(refusal, StarletteHTTPException)
    problem = error(refusal.status_code, str(refusal.detail))
    if refusal.status_code == Status.BAD_REQUEST:
        problem = _unless_unauthorized(request, problem)
    problem.headers.update(refusal.headers or {})
    return await problem_response(request, problem)


def _unless_unauthorized(request: Request, bad_request: ApiProblem) -> ApiProblem:
    """A 401 rather than the 400, when the token fails too: FastAPI reads the body before a
    route's dependencies, and the public API judges the token first."""
    try:
        verified_caller(request)
    except ApiProblem as unauthorized:
        return unauthorized
    return bad_request


async def invalid(request: Request, invalid: Exception) -> Response:
    """FastAPI's own 422 for a request that breaks its parameters, as the public API's 400."""
    assert isinstance(invalid, RequestValidationError)
    params = []
    for problem in invalid.errors():
        where, *field = problem["loc"]
        if problem["type"] == "json_invalid":  # its location is a character position
            field = []
        name = ".".join(str(part) for part in field) or str(where)
        params.append(InvalidParam(name=clean_text(name), reason=clean_text(problem["msg"], 500)))
    bad = error(Status.BAD_REQUEST, "the request does not match its schema", params)
    return await problem_response(request, _unless_unauthorized(request, bad))


async def unexpected(request: Request, failure: Exception) -> Response:
    """Anything else (the database away during a read, say): 500 with the public API's body."""
    log.error("request failed", exc_info=failure, extra={"path": request.url.path})
    problem = error(Status.INTERNAL_ERROR, "an unexpected error occurred")
    return await problem_response(request, problem)


# What the app installs, by the exception each answers.
HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiProblem: problem_response,
    RequestValidationError: invalid,
    StarletteHTTPException: refused,
    Exception: unexpected,
}
