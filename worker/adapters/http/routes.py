"""The HTTP API's routes: the reads, served from the store, and a route for each command type
the catalogue serves, built from its entry (`Route`: method, path, operation id, request body).

A change is a command: built from the request with the same schema models and checks the worker
applies (401, 400 and 403 are answered here at once; the worker checks everything again, since
the topic is the real boundary), produced to the commands topic with the caller's token and
trace context, and answered with the command's result translated to HTTP (`answers.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from schemas.api import FieldingRunItem, FieldingRunList
from schemas.command import new_command
from schemas.errors import InvalidParam
from schemas.job import BulkJob, FieldingRunJob
from schemas.result import Status
from schemas.types import etag_of, new_ulid
from worker.adapters.http.answers import (
    HEADER_NAMES,
    answer,
    command_trace,
    documented,
    error,
    run_item,
    timed_out,
    trace_headers,
)
from worker.adapters.http.one_pass import one_pass_route
from worker.adapters.http.params import (
    AccountId,
    ApiVersion,
    CommandIdPath,
    IfMatch,
    JobId,
    OptionalKey,
    RequiredKey,
    UlidPath,
    User,
    allowed,
    context_of,
)
from worker.adapters.http.read_limit import read_limit_of
from worker.adapters.http.waits import ClientGone, waits_of
from worker.adapters.postgres.jobs import get_job
from worker.adapters.postgres.outcomes import get_result
from worker.adapters.postgres.runs import get_run, runs_of_target_group
from worker.service.auth import Principal
from worker.service.catalogue import CATALOGUE, GROUP, RUN, CommandType, Family
from worker.service.intake import invalid_params
from worker.service.operations import NOT_FOUND_DETAIL

Endpoint = Callable[..., Awaitable[Response]]

NO_RUN_OF_TARGET_GROUP = "no fielding run for this target group under this account and project"

router = APIRouter(tags=["Fielding"])
batch = APIRouter(tags=["Fielding (Batch)"])


# --- reads ------------------------------------------------------------------------------------


@router.get(
    GROUP + "/fielding-runs",
    operation_id="get_fielding_runs_by_target_group_id",
    response_model=FieldingRunList,
    responses=documented(200, 400, 401, 403, 404, 429, 500),
)
async def list_runs(
    request: Request,
    user: User,
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    version: ApiVersion,
) -> Response:
    """404 when the target group has no run under this account and project, as the public API
    answers: a target group this account cannot see is not found either."""
    allowed(user, account_id)
    read_limit_of(request).take(account_id)
    runs = await runs_of_target_group(
        context_of(request).pool, account_id, project_id, target_group_id
    )
    if not runs:
        raise error(Status.NOT_FOUND, NO_RUN_OF_TARGET_GROUP)
    body = FieldingRunList(data=[run_item(run) for run in runs])
    return JSONResponse(body.model_dump(mode="json"), headers=trace_headers(request))


@router.get(
    RUN,
    operation_id="get_fielding_run",
    response_model=FieldingRunItem,
    responses=documented(200, 400, 401, 403, 404, 429, 500, etag=200),
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
    read_limit_of(request).take(account_id)
    run = await get_run(context_of(request).pool, fielding_run_id)
    if run is None or (run.account_id, run.project_id, run.target_group_id) != (
        account_id,
        project_id,
        target_group_id,
    ):
        raise error(Status.NOT_FOUND, NOT_FOUND_DETAIL)
    headers = {**trace_headers(request), "ETag": etag_of(run.version)}
    return JSONResponse(run_item(run).model_dump(mode="json"), headers=headers)


@router.get(
    "/v1/demand/accounts/{account_id}/command-results/{command_id}",
    operation_id="get_command_result",
    tags=["Extensions"],
    summary="A command's result",
    description="This service's extension of the public API: the result of a command sent "
    "over HTTP or Kafka, exactly as it was published on the results topic. 404 when the "
    "account has no such command, its outcome has expired, or its status is not remembered "
    "(400, 401, 403, 429, 500).",
    responses=documented(200, 400, 401, 403, 404, 429, 500),
    openapi_extra={"x-fielding-extension": True},
)
async def get_command_result(
    request: Request,
    user: User,
    account_id: AccountId,
    command_id: CommandIdPath,
    version: ApiVersion,
) -> Response:
    allowed(user, account_id)
    read_limit_of(request).take(account_id)
    result = await get_result(context_of(request).pool, account_id, command_id)
    if result is None:
        raise error(Status.NOT_FOUND, "no remembered result for this command under this account")
    return Response(result, media_type="application/json", headers=trace_headers(request))


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
    read_limit_of(request).take(account_id)
    job = await get_job(context_of(request).pool, job_id)
    if job is None or (job.account_id, job.project_id, job.target_group_id, job.command_type) != (
        account_id,
        project_id,
        target_group_id,
        kind,
    ):
        raise error(Status.NOT_FOUND, "no such job under this account and project")
    # Read through its model, so a job stored by an older worker (nulls where the public API's
    # document allows none, no failure `reasons`) is shown as the document shapes it.
    model = BulkJob if target_group_id is None else FieldingRunJob
    shown = model.model_validate_json(job.body).model_dump_json()
    return Response(shown, media_type="application/json", headers=trace_headers(request))


# --- changes: one route per command type the catalogue serves -----------------------------------


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
    try:
        reply = await waits_of(request).reply(
            request, context.gateway, command, headers, context.deadline_seconds
        )
    except ClientGone:
        return Response(status_code=499)  # nobody reads it: the connection is gone
    if reply is None:
        raise timed_out(command.command_id, context.deadline_seconds)
    return answer(reply, location)


def _with_body(endpoint: Endpoint, model: type[BaseModel] | None) -> Endpoint:
    """FastAPI takes a request body's model from the endpoint's `body` annotation when the
    route is added: an endpoint built for any entry is given its entry's model here."""
    if model is not None:
        endpoint.__annotations__["body"] = model
    return endpoint


async def run_fields(
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    fielding_run_id: UlidPath,
    version: ApiVersion,
    if_match: IfMatch,
    idempotency_key: OptionalKey = None,
) -> dict[str, Any]:
    """A run command's fields from the path and headers (a dependency: the operation's
    parameters, in this order)."""
    return {
        "command_id": idempotency_key or new_ulid(),
        "account_id": account_id,
        "project_id": project_id,
        "target_group_id": target_group_id,
        "fielding_run_id": fielding_run_id,
        "if_match": if_match,
    }


RunFields = Annotated[dict[str, Any], Depends(run_fields)]


def run_action(entry: CommandType) -> Endpoint:
    """A lifecycle operation of one run: the path and headers say everything."""

    async def act(request: Request, user: User, fields: RunFields) -> Response:
        return await change(request, user, entry.name, fields)

    return act


def run_change(entry: CommandType) -> Endpoint:
    """A change of one run with a body (its new times)."""

    async def act(request: Request, user: User, body: BaseModel, fields: RunFields) -> Response:
        # The values, not their JSON: commands are strict.
        return await change(request, user, entry.name, fields | dict(body))

    return act


async def group_job_fields(
    account_id: AccountId,
    project_id: UlidPath,
    target_group_id: UlidPath,
    version: ApiVersion,
    idempotency_key: RequiredKey,
) -> dict[str, Any]:
    """A draft job's fields from the path and headers (a dependency, as `run_fields`)."""
    return {
        "command_id": idempotency_key,
        "account_id": account_id,
        "project_id": project_id,
        "target_group_id": target_group_id,
    }


async def project_job_fields(
    account_id: AccountId, project_id: UlidPath, version: ApiVersion, idempotency_key: RequiredKey
) -> dict[str, Any]:
    """A bulk job's fields from the path and headers (a dependency, as `run_fields`)."""
    return {"command_id": idempotency_key, "account_id": account_id, "project_id": project_id}


GroupJobFields = Annotated[dict[str, Any], Depends(group_job_fields)]
ProjectJobFields = Annotated[dict[str, Any], Depends(project_job_fields)]


async def create_job(
    request: Request, user: Principal, entry: CommandType, fields: dict[str, Any]
) -> Response:
    """Sends a job's command; its 201 says where the job is read: the route's path, then the
    job's id."""
    assert entry.route is not None
    base = entry.route.path.format(**fields)
    return await change(request, user, entry.name, fields, lambda job_id: f"{base}/{job_id}")


def draft_creator(entry: CommandType) -> Endpoint:
    """A job creating the target group's run from its draft."""

    async def create(
        request: Request, user: User, body: BaseModel, fields: GroupJobFields
    ) -> Response:
        return await create_job(request, user, entry, fields | dict(body))

    return create


def draft_job_reader(entry: CommandType) -> Endpoint:
    async def read(
        request: Request,
        user: User,
        account_id: AccountId,
        project_id: UlidPath,
        target_group_id: UlidPath,
        job_id: JobId,
        version: ApiVersion,
    ) -> Response:
        return await read_job(
            request, user, account_id, project_id, job_id, entry.name, target_group_id
        )

    return read


def bulk_creator(entry: CommandType) -> Endpoint:
    """A job applying one operation to the run of each target group."""

    async def create(
        request: Request, user: User, body: BaseModel, fields: ProjectJobFields
    ) -> Response:
        return await create_job(request, user, entry, fields | dict(body))

    return create


def bulk_job_reader(entry: CommandType) -> Endpoint:
    async def read(
        request: Request,
        user: User,
        account_id: AccountId,
        project_id: UlidPath,
        job_id: JobId,
        version: ApiVersion,
    ) -> Response:
        return await read_job(request, user, account_id, project_id, job_id, entry.name)

    return read


def _add_run_route(entry: CommandType) -> None:
    assert entry.route is not None
    route, status = entry.route, int(entry.success)
    has_body = route.request is not None
    endpoint = run_change(entry) if has_body else run_action(entry)
    router.add_api_route(
        route.path,
        _with_body(endpoint, route.request),
        methods=[route.method],
        # An action's path and headers say everything: checked in one pass (`one_pass.py`).
        route_class_override=None if has_body else one_pass_route(run_fields, endpoint),
        operation_id=route.operation_id,
        status_code=status,
        response_model=entry.body.model if entry.body is not None else None,
        responses=documented(
            status, 400, 401, 403, 404, 412, 422, 429, 500, etag=status, waits=True
        ),
        # The name gives the document's summary: "Act", or the operation's own for a PUT.
        name=entry.name if has_body else None,
    )


def _add_job_routes(entry: CommandType) -> None:
    """A job's creation and its read (`GET <creation path>/{job_id}`)."""
    assert entry.route is not None
    route, status = entry.route, int(entry.success)
    draft = entry.family is Family.DRAFT
    owner = router if draft else batch
    job_model = FieldingRunJob if draft else BulkJob
    # As the public API documents each, but for the 429 it does not list for bulk jobs: this
    # service limits them as every command.
    errors = (400, 401, 403, 429, 500) if draft else (400, 401, 403, 404, 429, 500)
    owner.add_api_route(
        route.path,
        _with_body((draft_creator if draft else bulk_creator)(entry), route.request),
        methods=[route.method],
        operation_id=route.operation_id,
        status_code=status,
        response_model=job_model,
        responses=documented(status, *errors, location=status, waits=True),
        # The name gives the document's summary: the action for a draft job, else "Create".
        name=route.path.rsplit("/", 1)[1].replace("-", "_") if draft else None,
    )
    owner.add_api_route(
        route.path + "/{job_id}",
        (draft_job_reader if draft else bulk_job_reader)(entry),
        methods=["GET"],
        operation_id="get_" + route.operation_id.removeprefix("create_"),
        response_model=job_model,
        responses=documented(200, 400, 401, 403, 404, 429, 500),
    )


for _entry in CATALOGUE.values():
    if _entry.route is None:
        continue
    if _entry.family is Family.RUN:
        _add_run_route(_entry)
    else:
        _add_job_routes(_entry)
