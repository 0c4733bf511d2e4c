"""The public API's fielding operations over HTTP (`fielding-worker serve`), under `/v1`.

Reads come from the store. Changes are commands: built from the request with the same schema
models and checks the worker applies (401, 400 and 403 are answered here at once; the worker
checks everything again, since the topic is the real boundary), produced to the commands topic
with the caller's token and trace context, and answered with the command's result translated
to HTTP (`answers.py`).

FastAPI, on uvicorn: it is Starlette (ASGI, small, well kept) plus what this API needs most,
an OpenAPI document generated from the routes and from the same pydantic models as everything
else, with the public API's operation ids.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.api import (
    API_VERSION,
    BulkTargetGroupsRequest,
    FieldingRunItem,
    FieldingRunList,
    LaunchFieldingRunFromDraftRequest,
    ScheduleFieldingRunFromDraftRequest,
    UpdateFieldingRunRequest,
)
from schemas.command import new_command
from schemas.errors import InvalidParam
from schemas.job import BulkJob, FieldingRunJob
from schemas.result import LaunchedTimes, Status, UpdatedRun
from schemas.types import ETAG_PATTERN, INT32_MAX, ULID_PATTERN, etag_of, new_ulid
from worker.adapters.http.answers import (
    HEADER_NAMES,
    ApiContext,
    ApiProblem,
    answer,
    command_trace,
    documented,
    error,
    run_item,
    timed_out,
    trace_headers,
)
from worker.adapters.kafka.asyncapi import asyncapi_document
from worker.adapters.postgres.jobs import get_job
from worker.adapters.postgres.runs import get_run, runs_of_target_group
from worker.service.auth import AuthFailure, Principal
from worker.service.envelope import clean_text
from worker.service.intake import invalid_params
from worker.service.operations import NOT_FOUND_DETAIL

log = logging.getLogger(__name__)

PROJECT = "/v1/demand/accounts/{account_id}/projects/{project_id}"
GROUP = PROJECT + "/target-groups/{target_group_id}"
RUN = GROUP + "/fielding-runs/{fielding_run_id}"


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
    return verified


User = Annotated[Principal, Depends(principal)]
AccountId = Annotated[int, Path(gt=0, le=INT32_MAX), BeforeValidator(decimal_digits)]
UlidPath = Annotated[str, Path(pattern=ULID_PATTERN)]
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


def allowed(user: Principal, account_id: int) -> None:
    if not user.may_act_on(account_id):
        raise error(Status.FORBIDDEN, f"the token does not grant access to account {account_id}")


async def change(
    request: Request,
    user: Principal,
    kind: str,
    fields: dict[str, Any],
    location: Callable[[str], str] | None = None,
) -> Response:
    """Builds the command (400 as the worker would say it), checks the account (403), sends it
    and answers with its result."""
    try:
        command = new_command(kind, **fields)
    except ValidationError as invalid:
        params = [
            InvalidParam(name=HEADER_NAMES.get(p.name, p.name), reason=p.reason)
            for p in invalid_params(invalid)
        ]
        raise error(Status.BAD_REQUEST, "the request does not match its schema", params) from None
    allowed(user, command.account_id)
    headers = command_trace(request)
    if (authorization := request.headers.get("authorization")) is not None:
        headers.append(("authorization", authorization.encode("latin-1")))
    context = context_of(request)
    reply = await context.gateway.send(command, headers, context.deadline_seconds)
    if reply is None:
        raise timed_out(command.command_id, context.deadline_seconds)
    return answer(reply, location)


def run_fields(
    account_id: int,
    project_id: str,
    target_group_id: str,
    fielding_run_id: str,
    if_match: str,
    idempotency_key: str | None,
) -> dict[str, Any]:
    return {
        "command_id": idempotency_key or new_ulid(),
        "account_id": account_id,
        "project_id": project_id,
        "target_group_id": target_group_id,
        "fielding_run_id": fielding_run_id,
        "if_match": if_match,
    }


router = APIRouter(tags=["Fielding"])
batch = APIRouter(tags=["Fielding (Batch)"])

# --- reads ------------------------------------------------------------------------------------


@router.get(
    GROUP + "/fielding-runs",
    operation_id="get_fielding_runs_by_target_group_id",
    response_model=FieldingRunList,
    responses=documented(200, 400, 401, 403, 500),
)
async def list_runs(
    request: Request,
    user: User,
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    version: ApiVersion,
) -> Response:
    allowed(user, account_id)
    runs = await runs_of_target_group(
        context_of(request).pool, account_id, project_id, target_group_id
    )
    body = FieldingRunList(data=[run_item(run) for run in runs])
    return JSONResponse(body.model_dump(mode="json"), headers=trace_headers(request))


@router.get(
    RUN,
    operation_id="get_fielding_run",
    response_model=FieldingRunItem,
    responses=documented(200, 400, 401, 403, 404, 500, etag=200),
)
async def get_fielding_run(
    request: Request,
    user: User,
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    fielding_run_id: UlidPath,
    version: ApiVersion,
) -> Response:
    allowed(user, account_id)
    run = await get_run(context_of(request).pool, fielding_run_id)
    if run is None or (run.account_id, run.project_id, run.target_group_id) != (
        account_id,
        project_id,
        target_group_id,
    ):
        raise error(Status.NOT_FOUND, NOT_FOUND_DETAIL)
    headers = {**trace_headers(request), "ETag": etag_of(run.version)}
    return JSONResponse(run_item(run).model_dump(mode="json"), headers=headers)


async def read_job(
    request: Request,
    user: Principal,
    account_id: int,
    project_id: str,
    job_id: str,
    kind: str,
    target_group_id: str | None = None,
) -> Response:
    allowed(user, account_id)
    job = await get_job(context_of(request).pool, job_id)
    if job is None or (job.account_id, job.project_id, job.target_group_id, job.command_type) != (
        account_id,
        project_id,
        target_group_id,
        kind,
    ):
        raise error(Status.NOT_FOUND, "no such job under this account and project")
    return Response(job.body, media_type="application/json", headers=trace_headers(request))


# --- changes of one run -----------------------------------------------------------------------

RUN_ACTIONS = {
    "complete": ("complete_fielding_run", 204, None),
    "launch-now": ("launch_now_fielding_run", 200, LaunchedTimes),
    "pause": ("pause_fielding_run", 204, None),
    "resume": ("resume_fielding_run", 204, None),
    "relaunch": ("relaunch_fielding_run", 204, None),
}


def run_action(kind: str) -> Callable[..., Awaitable[Response]]:
    async def act(
        request: Request,
        user: User,
        account_id: AccountId,
        project_id: UlidPath,
        target_group_id: UlidPath,
        fielding_run_id: UlidPath,
        version: ApiVersion,
        if_match: IfMatch,
        idempotency_key: OptionalKey = None,
    ) -> Response:
        fields = run_fields(
            account_id, project_id, target_group_id, fielding_run_id, if_match, idempotency_key
        )
        return await change(request, user, kind, fields)

    return act


for _action, (_kind, _status, _model) in RUN_ACTIONS.items():
    router.add_api_route(
        RUN + f"/{_action}",
        run_action(_kind),
        methods=["POST"],
        operation_id=_kind,
        status_code=_status,
        response_model=_model,
        responses=documented(
            _status, 400, 401, 403, 404, 412, 422, 429, 500, etag=_status, waits=True
        ),
    )


@router.put(
    RUN,
    operation_id="update_fielding_run",
    status_code=202,
    response_model=UpdatedRun,
    responses=documented(202, 400, 401, 403, 404, 412, 422, 429, 500, etag=202, waits=True),
)
async def update_fielding_run(
    request: Request,
    user: User,
    body: UpdateFieldingRunRequest,
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    fielding_run_id: UlidPath,
    version: ApiVersion,
    if_match: IfMatch,
    idempotency_key: OptionalKey = None,
) -> Response:
    fields = run_fields(
        account_id, project_id, target_group_id, fielding_run_id, if_match, idempotency_key
    )
    fields |= dict(body)  # the values, not their JSON: commands are strict
    return await change(request, user, "update_fielding_run", fields)


# --- jobs ---------------------------------------------------------------------------------------


def draft_fields(
    command_id: str, account_id: int, project_id: str, target_group_id: str, body: BaseModel
) -> dict[str, Any]:
    """A draft job's command: the path's ids, the idempotency key as its id, and the body."""
    return {
        "command_id": command_id,
        "account_id": account_id,
        "project_id": project_id,
        "target_group_id": target_group_id,
        **dict(body),
    }


def draft_location(
    account_id: int, project_id: str, target_group_id: str, action: str
) -> Callable[[str], str]:
    base = GROUP.format(
        account_id=account_id, project_id=project_id, target_group_id=target_group_id
    )
    return lambda job_id: f"{base}/fielding-run-jobs/{action}/{job_id}"


@router.post(
    GROUP + "/fielding-run-jobs/launch-from-draft",
    operation_id="create_launch_fielding_run_from_draft_job",
    status_code=201,
    response_model=FieldingRunJob,
    responses=documented(201, 400, 401, 403, 429, 500, location=201, waits=True),
)
async def launch_from_draft(
    request: Request,
    user: User,
    body: LaunchFieldingRunFromDraftRequest,
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    version: ApiVersion,
    idempotency_key: RequiredKey,
) -> Response:
    fields = draft_fields(idempotency_key, account_id, project_id, target_group_id, body)
    location = draft_location(account_id, project_id, target_group_id, "launch-from-draft")
    return await change(request, user, "launch_fielding_run_from_draft", fields, location)


@router.post(
    GROUP + "/fielding-run-jobs/schedule-from-draft",
    operation_id="create_schedule_fielding_run_from_draft_job",
    status_code=201,
    response_model=FieldingRunJob,
    responses=documented(201, 400, 401, 403, 429, 500, location=201, waits=True),
)
async def schedule_from_draft(
    request: Request,
    user: User,
    body: ScheduleFieldingRunFromDraftRequest,
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    version: ApiVersion,
    idempotency_key: RequiredKey,
) -> Response:
    fields = draft_fields(idempotency_key, account_id, project_id, target_group_id, body)
    location = draft_location(account_id, project_id, target_group_id, "schedule-from-draft")
    return await change(request, user, "schedule_fielding_run_from_draft", fields, location)


def draft_job_reader(kind: str) -> Callable[..., Awaitable[Response]]:
    async def read(
        request: Request,
        user: User,
        account_id: AccountId,
        project_id: UlidPath,
        target_group_id: UlidPath,
        job_id: JobId,
        version: ApiVersion,
    ) -> Response:
        return await read_job(request, user, account_id, project_id, job_id, kind, target_group_id)

    return read


for _action, _verb in (("launch-from-draft", "launch"), ("schedule-from-draft", "schedule")):
    router.add_api_route(
        GROUP + f"/fielding-run-jobs/{_action}/{{job_id}}",
        draft_job_reader(f"{_verb}_fielding_run_from_draft"),
        methods=["GET"],
        operation_id=f"get_{_verb}_fielding_run_from_draft_job",
        response_model=FieldingRunJob,
        responses=documented(200, 400, 401, 403, 404, 500),
    )


def bulk_path(action: str) -> str:
    return PROJECT + f"/batch-jobs/{action}-fielding-runs-by-target-group-id"


def bulk_creator(action: str, kind: str) -> Callable[..., Awaitable[Response]]:
    async def create(
        request: Request,
        user: User,
        body: BulkTargetGroupsRequest,
        account_id: AccountId,
        project_id: UlidPath,
        version: ApiVersion,
        idempotency_key: RequiredKey,
    ) -> Response:
        fields = {
            "command_id": idempotency_key,
            "account_id": account_id,
            "project_id": project_id,
            "target_group_ids": body.target_group_ids,
        }
        base = bulk_path(action).format(account_id=account_id, project_id=project_id)
        return await change(request, user, kind, fields, lambda job_id: f"{base}/{job_id}")

    return create


def bulk_reader(kind: str) -> Callable[..., Awaitable[Response]]:
    async def read(
        request: Request,
        user: User,
        account_id: AccountId,
        project_id: UlidPath,
        job_id: JobId,
        version: ApiVersion,
    ) -> Response:
        return await read_job(request, user, account_id, project_id, job_id, kind)

    return read


for _action in ("complete", "launch", "pause", "resume", "relaunch"):
    _kind = f"{_action}_fielding_runs_by_target_group_ids"
    batch.add_api_route(
        bulk_path(_action),
        bulk_creator(_action, _kind),
        methods=["POST"],
        operation_id=f"create_bulk_{_action}_target_groups_job",
        status_code=201,
        response_model=BulkJob,
        # The public API lists no 429 here; this service limits bulk jobs as every command.
        responses=documented(201, 400, 401, 403, 404, 429, 500, location=201, waits=True),
    )
    batch.add_api_route(
        bulk_path(_action) + "/{job_id}",
        bulk_reader(_kind),
        methods=["GET"],
        operation_id=f"get_bulk_{_action}_target_groups_job",
        response_model=BulkJob,
        responses=documented(200, 400, 401, 403, 404, 500),
    )


# --- the app ------------------------------------------------------------------------------------


async def _problem(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, ApiProblem)
    headers = {**trace_headers(request), **problem.headers}
    return JSONResponse(problem.body, status_code=problem.status, headers=headers)


async def _refused(request: Request, refused: Exception) -> Response:
    """Starlette's own refusals (a body it cannot read, no such route, a wrong method) with
    the public API's error body."""
    assert isinstance(refused, StarletteHTTPException)
    problem = error(refused.status_code, str(refused.detail))
    if refused.status_code == Status.BAD_REQUEST:
        problem = _unless_unauthorized(request, problem)
    problem.headers.update(refused.headers or {})
    return await _problem(request, problem)


def _unless_unauthorized(request: Request, bad_request: ApiProblem) -> ApiProblem:
    """A 401 rather than the 400, when the token fails too: FastAPI reads the body before a
    route's dependencies, and the public API judges the token first."""
    try:
        verified_caller(request)
    except ApiProblem as unauthorized:
        return unauthorized
    return bad_request


async def _invalid(request: Request, invalid: Exception) -> Response:
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
    return await _problem(request, _unless_unauthorized(request, bad))


async def _unexpected(request: Request, failure: Exception) -> Response:
    """Anything else (the database away during a read, say): 500 with the public API's body."""
    log.error("request failed", exc_info=failure, extra={"path": request.url.path})
    problem = error(Status.INTERNAL_ERROR, "an unexpected error occurred")
    return await _problem(request, problem)


# A bulk job of 1,000 target groups is about 30 KB; nothing the API takes is larger.
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuses a request body larger than MAX_BODY_BYTES as it arrives (413), before it is
    read whole: FastAPI parses a body in one piece, on the event loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise StarletteHTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
            return message

        await self.app(scope, limited, send)


TITLE = "fielding-worker"
DESCRIPTION = "The public API's fielding operations, served in front of the worker."


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title=TITLE,
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        redirect_slashes=False,  # a redirect would answer before the token is judged
    )
    app.add_middleware(BodyLimit)
    app.state.context = context
    app.add_exception_handler(ApiProblem, _problem)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _refused)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(router)
    app.include_router(batch)
    document = openapi_document()
    app.openapi = lambda: document  # type: ignore[method-assign]
    events = asyncapi_document()
    app.add_api_route(
        "/v1/asyncapi.json",
        lambda: JSONResponse(events),
        methods=["GET"],
        include_in_schema=False,
    )
    return app


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document (served at /v1/openapi.json, checked in as docs/openapi.json).

    FastAPI's, without the 422 "validation error" it adds to every operation: a request that
    breaks its parameters is answered 400 here (`_invalid`), as the public API does, and 422
    means an invalid state."""
    document = get_openapi(
        title=TITLE,
        version=API_VERSION,
        description=DESCRIPTION,
        routes=[*router.routes, *batch.routes],
    )
    for operation in (op for path in document["paths"].values() for op in path.values()):
        refused = operation["responses"].get("422", {})
        schema = refused.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref", "").endswith("/HTTPValidationError"):
            del operation["responses"]["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(unused, None)
    # Every operation takes the bearer token (judged in `principal`, not by a FastAPI scheme).
    document["components"]["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    document["security"] = [{"bearerAuth": []}]
    return document
