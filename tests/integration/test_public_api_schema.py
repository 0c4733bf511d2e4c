"""Schemathesis with the public API's own OpenAPI documents (tests/data), not this service's:
every operation's answers, sent to a real `serve` in front of a real worker, checked for their
status, content type, headers and body against what the public document says, as a client
generated from it would read them. First one request of each operation that must succeed
(so every success answer is checked, not only those the generator happens to reach), then
generated requests, half of them addressed to the test's runs and jobs.

What this service does beyond the public document on purpose (docs/reference/public-api.md)
does not come up here: the worker answers within the deadline (no 504), the rate limits are
off (no 429 on bulk jobs), and a 201's body is not described by the document, so not held."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st
from schemathesis import GenerationMode

from fielding_statemachine.status import RunStatus
from schemas.api import API_VERSION
from schemas.types import etag_of, new_ulid
from tests.support.generated_requests import PER_OPERATION, generated_cases
from tests.support.harness import RunMaker, WorkerFactory
from tests.support.http import ApiStarter, headers
from tests.support.public_api import RESPONSE_CHECKS, public_schemas
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.settings import Settings

pytestmark = [
    pytest.mark.integration,
    # Schemathesis's strategies draw from `random`; hypothesis warns of that, not of these tests.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

S = RunStatus
# A run operation's success: the status the run must be in, and the public document's answer.
RUN_OPERATIONS = {
    "complete_fielding_run": (S.LIVE, 204),
    "launch_now_fielding_run": (S.SCHEDULED, 200),
    "pause_fielding_run": (S.LIVE, 204),
    "resume_fielding_run": (S.PAUSED, 204),
    "relaunch_fielding_run": (S.COMPLETED, 204),
    "update_fielding_run": (S.LIVE, 202),
}
# A bulk job's verb and the status its target group's run must be in to be updated.
BULK_SOURCES = {
    "complete": S.LIVE,
    "launch": S.SCHEDULED,
    "pause": S.LIVE,
    "resume": S.PAUSED,
    "relaunch": S.COMPLETED,
}


def operations() -> list[Any]:
    return [result.ok() for schema in public_schemas() for result in schema.get_all_operations()]


def operation_id(operation: Any) -> str:
    name: str = operation.definition.raw["operationId"]
    return name


def future_times() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "start_fielding_at": (now + timedelta(days=1)).isoformat(),
        "end_fielding_at": (now + timedelta(days=2)).isoformat(),
    }


def ids_of(run: FieldingRunRecord) -> dict[str, Any]:
    return {
        "account_id": run.account_id,
        "project_id": run.project_id,
        "target_group_id": run.target_group_id,
        "fielding_run_id": run.id,
    }


async def test_every_success_answer_is_as_the_public_document_shapes_it(
    settings: Settings, api: ApiStarter, workers: WorkerFactory, make_run: RunMaker
) -> None:
    await workers.start(settings)
    client = await api()
    base_url = str(client.base_url).rstrip("/")
    auth = {"Authorization": headers()["Authorization"], "Cint-API-Version": API_VERSION}
    project = new_ulid()
    runs = {
        name: await make_run(status, project_id=project)
        for name, (status, _) in RUN_OPERATIONS.items()
    }
    bulk_runs = {verb: await make_run(status) for verb, status in BULK_SOURCES.items()}
    read_run = await make_run(S.LIVE)
    answered: dict[str, int] = {}
    job_paths: dict[str, tuple[dict[str, Any], str]] = {}

    def call(operation: Any, **case: Any) -> httpx.Response:
        built = operation.Case(media_type="application/json" if "body" in case else None, **case)
        response = built.call(base_url=base_url, headers=auth)
        built.validate_response(response, checks=RESPONSE_CHECKS, headers=auth)
        answered[operation_id(operation)] = response.status_code
        return response

    def exercise() -> None:
        everything = operations()
        for operation in everything:
            name = operation_id(operation)
            if name in RUN_OPERATIONS:
                run = runs[name]
                fields: dict[str, Any] = {
                    "path_parameters": ids_of(run),
                    "headers": {"If-Match": etag_of(run.version)},
                }
                if name == "update_fielding_run":
                    fields["body"] = future_times()
                call(operation, **fields)
            elif name.startswith("create_bulk_"):
                verb = name.removeprefix("create_bulk_").removesuffix("_target_groups_job")
                run = bulk_runs[verb]
                created = call(
                    operation,
                    path_parameters={"account_id": run.account_id, "project_id": run.project_id},
                    headers={"idempotency-key": str(uuid.uuid4())},
                    body={"target_group_ids": [run.target_group_id, new_ulid()]},
                )
                params = {"account_id": run.account_id, "project_id": run.project_id}
                job_paths[name] = (params, created.json()["job_id"])
            elif name.startswith("create_"):
                params = {"account_id": 101, "project_id": project, "target_group_id": new_ulid()}
                times = future_times()
                if "launch" in name:
                    del times["start_fielding_at"]
                created = call(
                    operation,
                    path_parameters=params,
                    headers={"idempotency-key": str(uuid.uuid4())},
                    body=times,
                )
                job_paths[name] = (params, created.json()["job_id"])
        for operation in everything:
            name = operation_id(operation)
            if name.startswith("get_") and "create_" + name.removeprefix("get_") in job_paths:
                params, job_id = job_paths["create_" + name.removeprefix("get_")]
                call(operation, path_parameters={**params, "job_id": job_id})
            elif name == "get_fielding_run":
                call(operation, path_parameters=ids_of(read_run))
            elif name == "get_fielding_runs_by_target_group_id":
                listed = ids_of(read_run)
                del listed["fielding_run_id"]
                call(operation, path_parameters=listed)

    await asyncio.to_thread(exercise)
    expected = {name: status for name, (_, status) in RUN_OPERATIONS.items()}
    expected |= {name: 201 for name in job_paths}
    expected |= {"get_" + name.removeprefix("create_"): 200 for name in job_paths}
    expected |= {"get_fielding_run": 200, "get_fielding_runs_by_target_group_id": 200}
    assert len(expected) == 22 and answered == expected


async def test_generated_requests_get_answers_the_public_document_accepts(
    settings: Settings, api: ApiStarter, workers: WorkerFactory, make_run: RunMaker
) -> None:
    await workers.start(settings)
    client = await api()
    base_url = str(client.base_url).rstrip("/")
    run = await make_run(S.LIVE)
    draft = await client.post(
        f"/demand/accounts/101/projects/{run.project_id}/target-groups/{new_ulid()}"
        "/fielding-run-jobs/launch-from-draft",
        headers=headers(**{"idempotency-key": str(uuid.uuid4())}),
        json={"end_fielding_at": future_times()["end_fielding_at"]},
    )
    assert draft.status_code == 201, draft.text
    # Half the requests address this run (its current version, half of those) and a real job,
    # so they reach the store, the worker's decisions and the job reads.
    known = ids_of(run) | {"job_id": draft.json()["job_id"]}
    auth = {"Authorization": headers()["Authorization"], "Cint-API-Version": API_VERSION}
    tried: dict[str, set[int]] = {}

    def current_etag() -> str:
        path = (
            f"/demand/accounts/{run.account_id}/projects/{run.project_id}/target-groups/"
            f"{run.target_group_id}/fielding-runs/{run.id}"
        )
        return httpx.get(base_url + path, headers=auth, timeout=30).headers["ETag"]

    def exercise() -> None:
        for operation in operations():
            valid = generated_cases(operation, GenerationMode.POSITIVE, known)

            @hypothesis.given(valid, st.booleans())
            @PER_OPERATION
            def check(case: Any, at_current_version: bool) -> None:
                sent = dict(auth)
                if at_current_version and case.headers and "If-Match" in case.headers:
                    sent["If-Match"] = current_etag()
                response = case.call_and_validate(
                    base_url=base_url, headers=sent, checks=RESPONSE_CHECKS
                )
                tried.setdefault(operation_id(case.operation), set()).add(response.status_code)

            check()

    await asyncio.to_thread(exercise)
    assert len(tried) == 22, sorted(tried)
    seen = set().union(*tried.values())
    assert max(seen) < 500, tried
    assert {200, 201, 404} <= seen, tried
