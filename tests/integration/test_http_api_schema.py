"""Schemathesis against the app's own OpenAPI document: requests generated from it, valid and
invalid, sent to a real `serve` in front of a real worker. No 5xx; every status, header and
body as documented; invalid requests refused."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode

from fielding_statemachine.status import RunStatus
from tests.support.generated_requests import PER_OPERATION, generated_cases
from tests.support.harness import RunMaker, WorkerFactory
from tests.support.http import ApiStarter, headers
from worker.adapters.http.documents import openapi_document
from worker.settings import Settings

pytestmark = [
    pytest.mark.integration,
    # Schemathesis's strategies draw from `random`; hypothesis warns of that, not of these tests.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

# A well-formed request may still name a run that is not there (404), at another version (412)
# or in a state that forbids it (422), or come too often (429): none of those refuse its shape.
CONFIG = schemathesis.Config.from_str(
    """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "412", "422", "429"]
"""
)


async def test_generated_requests_get_documented_answers_and_never_a_5xx(
    settings: Settings, api: ApiStarter, workers: WorkerFactory, make_run: RunMaker
) -> None:
    await workers.start(settings)
    client = await api()
    run = await make_run(RunStatus.LIVE)
    # Half the requests address this run, so they reach the worker's decisions too.
    known = {
        "account_id": run.account_id,
        "project_id": run.project_id,
        "target_group_id": run.target_group_id,
        "fielding_run_id": run.id,
    }
    schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
    base_url = str(client.base_url).rstrip("/").removesuffix("/v1")
    auth = {"Authorization": headers()["Authorization"]}
    tried: dict[str, set[int]] = {}

    def exercise(mode: GenerationMode) -> None:
        for result in schema.get_all_operations():
            operation = result.ok()

            @hypothesis.given(generated_cases(operation, mode, known))
            @PER_OPERATION
            def check(case: Any) -> None:
                response = case.call_and_validate(base_url=base_url, headers=auth)
                tried.setdefault(case.operation.label, set()).add(response.status_code)

            check()

    await asyncio.to_thread(exercise, GenerationMode.POSITIVE)
    await asyncio.to_thread(exercise, GenerationMode.NEGATIVE)
    assert len(tried) == 23, sorted(tried)  # the public API's 22 operations and one extension
    seen = set().union(*tried.values())
    assert max(seen) < 500, tried
    # Valid requests got through the edge to the store and the worker's decisions.
    assert {200, 201, 412} <= seen, tried
