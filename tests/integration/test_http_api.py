"""The public API over HTTP, end to end: a real HTTP client against `serve`, in front of a real
worker, Kafka and Postgres. Every operation's statuses and headers, idempotency-key, two serve
replicas, and a deadline."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.harness import Outputs, RunMaker, WorkerFactory
from tests.support.http import ApiStarter, headers, run_path
from worker.adapters.kafka import request_reply
from worker.adapters.postgres.runs import get_run
from worker.entrypoints.api_documents import DOCS_DIR
from worker.settings import Settings

pytestmark = pytest.mark.integration

S = RunStatus
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_complete_as_the_public_api_documents_it(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    await workers.start(settings)
    client = await api()
    run = await make_run(S.LIVE, version=5)

    got = await client.get(run_path(run), headers=headers())
    assert got.status_code == 200 and got.headers["ETag"] == 'W/"5"'
    assert got.json()["status"] == "live" and got.json()["id"] == run.id

    stale = await client.post(run_path(run) + "/complete", headers=headers(**{"If-Match": 'W/"4"'}))
    assert stale.status_code == 412 and stale.json()["object"] == "precondition_failed_error"

    done = await client.post(
        run_path(run) + "/complete",
        headers=headers(**{"If-Match": 'W/"5"', "traceparent": TRACEPARENT, "tracestate": "a=b"}),
    )
    assert done.status_code == 204 and done.content == b""
    assert done.headers["ETag"] == 'W/"6"'
    _version, trace_id, span_id, _ = done.headers["traceparent"].split("-")
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and span_id != "00f067aa0ba902b7"
    assert done.headers["tracestate"] == "a=b"
    stored = await get_run(pool, run.id)
    assert stored is not None and (stored.status, stored.version) == (S.COMPLETED, 6)

    again = await client.post(run_path(run) + "/complete", headers=headers(**{"If-Match": 'W/"6"'}))
    assert again.status_code == 422 and again.json()["object"] == "invalid_state_error"
    missing = await client.post(
        run_path(run, new_ulid()) + "/complete", headers=headers(**{"If-Match": 'W/"1"'})
    )
    assert missing.status_code == 404 and missing.json()["object"] == "not_found_error"


async def test_a_change_is_answered_when_its_result_commits_not_when_the_reply_fetch_ends(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve's reply reader lets its fetch wait long on the broker (REPLY_FETCH_WAIT_MS), so
    that an idle serve costs little; the commit that makes a reply visible must end that wait.
    The wait is made 5 s here: were it not ended by the commit, each answer, coming a few
    tenths of a second after the reader's last fetch began, would wait out most of it."""
    monkeypatch.setattr(request_reply, "REPLY_FETCH_WAIT_MS", 5_000)
    await workers.start(settings)
    client = await api()
    took = []
    for idle in random.Random(25).sample([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 7):
        run = await make_run(S.LIVE, version=1)
        await asyncio.sleep(idle)  # the reader's fetch waits on the broker again
        started = time.monotonic()
        done = await client.post(
            run_path(run) + "/complete", headers=headers(**{"If-Match": 'W/"1"'})
        )
        took.append(time.monotonic() - started)
        assert done.status_code == 204, done.text
    assert statistics.median(took) < 1.0, took


async def test_401_400_and_403_are_answered_at_the_edge_in_that_order(
    api: ApiStarter,
    make_run: RunMaker,
) -> None:
    client = await api()  # no worker: these never reach one
    run = await make_run(S.LIVE)
    path = run_path(run) + "/complete"
    no_token = await client.post(path, headers={"Cint-API-Version": "2025-12-18"})
    assert no_token.status_code == 401 and no_token.json()["object"] == "authorization_error"
    bad = await client.post(path, headers=headers(**{"If-Match": "five"}))
    assert bad.status_code == 400
    assert [p["name"] for p in bad.json()["invalid_params"]] == ["If-Match"]
    no_version = await client.post(
        path, headers={"Authorization": headers()["Authorization"], "If-Match": 'W/"1"'}
    )
    assert [p["name"] for p in no_version.json()["invalid_params"]] == ["Cint-API-Version"]
    other = await client.post(path, headers=headers([102], **{"If-Match": 'W/"1"'}))
    assert other.status_code == 403
    read = await client.get(run_path(run), headers=headers([102]))
    assert read.status_code == 403

    update = run_path(run)
    garbage = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    unread = await client.put(update, **garbage)
    assert unread.status_code == 401, "the token is judged before the body"
    unread = await client.put(update, content=garbage["content"], headers=headers())
    assert unread.status_code == 400 and unread.json()["object"] == "bad_request_error"
    nowhere = await client.get("/demand/nothing-here", headers=headers())
    assert nowhere.status_code == 404 and nowhere.json()["object"] == "not_found_error"


async def test_every_change_of_one_run_with_its_status_body_and_etag(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    await workers.start(settings)
    client = await api()
    now = datetime.now(UTC)
    run = await make_run(
        S.SCHEDULED,
        start_fielding_at=now + timedelta(days=1),
        end_fielding_at=now + timedelta(days=3),
    )

    async def act(action: str, version: int, **kwargs: Any) -> httpx.Response:
        method = "PUT" if action == "" else "POST"
        path = run_path(run) + (f"/{action}" if action else "")
        return await client.request(
            method, path, headers=headers(**{"If-Match": f'W/"{version}"'}), **kwargs
        )

    launched = await act("launch-now", 1)
    assert launched.status_code == 200 and launched.headers["ETag"] == 'W/"2"'
    assert set(launched.json()) == {"start_fielding_at", "end_fielding_at"}
    paused = await act("pause", 2)
    assert (paused.status_code, paused.headers["ETag"]) == (204, 'W/"3"')
    times = {
        "start_fielding_at": (now + timedelta(hours=1)).isoformat(),
        "end_fielding_at": (now + timedelta(days=5)).isoformat(),
    }
    updated = await act("", 3, json=times)
    assert updated.status_code == 202 and updated.json() == {"id": run.id}, updated.text
    assert updated.headers["ETag"] == 'W/"4"'
    resumed = await act("resume", 4)
    assert (resumed.status_code, resumed.headers["ETag"]) == (204, 'W/"5"')
    completed = await act("complete", 5)
    assert completed.status_code == 204
    relaunched = await act("relaunch", 6)
    assert (relaunched.status_code, relaunched.headers["ETag"]) == (204, 'W/"7"')
    backwards = await act(
        "",
        7,
        json={
            "start_fielding_at": times["end_fielding_at"],
            "end_fielding_at": times["start_fielding_at"],
        },
    )
    assert backwards.status_code == 400

    listed = await client.get(
        f"/demand/accounts/101/projects/{run.project_id}/target-groups/{run.target_group_id}"
        "/fielding-runs",
        headers=headers(),
    )
    assert listed.status_code == 200
    assert listed.json()["has_more"] is False and [r["version"] for r in listed.json()["data"]] == [
        7
    ]


async def test_jobs_are_created_with_a_location_and_read_there(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    await workers.start(settings)
    client = await api()
    project, group = new_ulid(), new_ulid()
    end = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    created = await client.post(
        f"/demand/accounts/101/projects/{project}/target-groups/{group}/fielding-run-jobs/"
        "launch-from-draft",
        headers=headers(**{"idempotency-key": "draft-1"}),
        json={"end_fielding_at": end},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "Completed" and job["created_fielding_run_id"]
    location = created.headers["Location"]
    assert location.endswith(f"/fielding-run-jobs/launch-from-draft/{job['job_id']}")
    read = await client.get(location.removeprefix("/v1"), headers=headers())
    assert read.status_code == 200 and read.json() == job
    repeat = await client.post(
        f"/demand/accounts/101/projects/{project}/target-groups/{group}/fielding-run-jobs/"
        "launch-from-draft",
        headers=headers(**{"idempotency-key": "draft-1"}),
        json={"end_fielding_at": end},
    )
    assert repeat.status_code == 201 and repeat.json() == job, "the same job, not a second"
    no_key = await client.post(
        f"/demand/accounts/101/projects/{project}/target-groups/{group}/fielding-run-jobs/"
        "launch-from-draft",
        headers=headers(),
        json={"end_fielding_at": end},
    )
    assert no_key.status_code == 400
    assert [p["name"] for p in no_key.json()["invalid_params"]] == ["idempotency-key"]

    live = await make_run(S.LIVE, project_id=project)
    bulk = await client.post(
        f"/demand/accounts/101/projects/{project}/batch-jobs/pause-fielding-runs-by-target-group-id",
        headers=headers(**{"idempotency-key": "bulk-1"}),
        json={"target_group_ids": [live.target_group_id, new_ulid()]},
    )
    assert bulk.status_code == 201
    body = bulk.json()
    assert [g["target_group_id"] for g in body["updated_target_groups"]["data"]] == [
        live.target_group_id
    ]
    assert (
        body["failed_target_groups"]["data"][0]["failure_reason"]["code"] == "TargetGroupNotFound"
    )
    read = await client.get(bulk.headers["Location"].removeprefix("/v1"), headers=headers())
    assert read.json() == body
    elsewhere = await client.get(bulk.headers["Location"].removeprefix("/v1"), headers=headers([7]))
    assert elsewhere.status_code == 403


async def test_429_carries_retry_after(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    limited = settings.model_copy(
        update={"rate_limit_per_account": 1, "rate_limit_window_seconds": 30}
    )
    await workers.start(limited)
    client = await api()
    runs = [await make_run(S.LIVE, account_id=4242) for _ in range(2)]
    answers = [
        await client.post(run_path(r) + "/pause", headers=headers([4242], **{"If-Match": 'W/"1"'}))
        for r in runs
    ]
    assert [a.status_code for a in answers] == [204, 429]
    assert int(answers[1].headers["retry-after"]) >= 1
    assert answers[1].json()["object"] == "too_many_requests_problem_details"


async def test_a_commands_result_is_read_back_by_its_id_exactly_as_published(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
    outputs: Outputs,
) -> None:
    await workers.start(settings)
    client = await api()
    run = await make_run(S.LIVE)
    key = new_ulid()
    done = await client.post(
        run_path(run) + "/complete",
        headers=headers(**{"If-Match": 'W/"1"', "idempotency-key": key}),
    )
    assert done.status_code == 204
    [published] = await outputs.results.read(at_least=1)
    path = f"/demand/accounts/{run.account_id}/command-results/{key}"

    read = await client.get(path, headers=headers())
    assert read.status_code == 200
    assert read.json() == json.loads(published.value)
    unknown = await client.get(path.replace(key, new_ulid()), headers=headers())
    assert unknown.status_code == 404 and unknown.json()["object"] == "not_found_error"
    other = await client.get(path, headers=headers([999]))
    assert other.status_code == 403


async def test_reads_over_the_accounts_limit_get_429_with_retry_after(
    api: ApiStarter, make_run: RunMaker
) -> None:
    client = await api(read_rate_limit_per_account=2, rate_limit_window_seconds=30)
    run = await make_run(S.LIVE, account_id=4243)
    other = await make_run(S.LIVE, account_id=4244)
    reads = [await client.get(run_path(run), headers=headers([4243])) for _ in range(3)]
    assert [r.status_code for r in reads] == [200, 200, 429]
    assert 1 <= int(reads[2].headers["retry-after"]) <= 30
    assert reads[2].json()["object"] == "too_many_requests_problem_details"
    # Another account's reads are not held back by it.
    assert (await client.get(run_path(other), headers=headers([4244]))).status_code == 200


async def test_two_serve_replicas_each_get_their_own_results(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    await workers.start(settings)
    first, second = await api(reply_partition=0), await api(reply_partition=1)
    runs = [await make_run(S.LIVE) for _ in range(6)]
    answers = await asyncio.gather(
        *(
            (first if n % 2 else second).post(
                run_path(r) + "/complete", headers=headers(**{"If-Match": 'W/"1"'})
            )
            for n, r in enumerate(runs)
        )
    )
    assert [a.status_code for a in answers] == [204] * 6


async def test_past_the_deadline_504_and_the_command_still_applies_once(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    client = await api(http_deadline_seconds=1.0)  # and no worker yet
    run = await make_run(S.LIVE)
    request = {"headers": headers(**{"If-Match": 'W/"1"', "idempotency-key": "late-1"})}
    late = await client.post(run_path(run) + "/complete", **request)
    assert late.status_code == 504 and late.headers["idempotency-key"] == "late-1"
    assert "may still apply, once" in late.json()["detail"]
    await workers.start(settings)
    deadline = time.monotonic() + 30
    while (stored := await get_run(pool, run.id)) is not None and stored.version == 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    patient = await api(http_deadline_seconds=15.0)
    repeat = await patient.post(run_path(run) + "/complete", **request)
    assert repeat.status_code == 204 and repeat.headers["ETag"] == 'W/"2"'
    stored = await get_run(pool, run.id)
    assert stored is not None and stored.version == 2, "applied once"


async def test_the_served_api_documents_are_the_checked_in_ones(api: ApiStarter) -> None:
    client = await api()
    for name in ("openapi.json", "asyncapi.json"):
        served = await client.get(f"/{name}")
        assert served.status_code == 200
        assert served.json() == json.loads((DOCS_DIR / name).read_text()), name
