"""The whole lifecycle through real Kafka and Postgres: every command type in every status,
runs from drafts, bulk jobs, repeats, and the time-driven transitions with two worker
processes (one killed in between) and a timer that loses a race to a command."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import etag_of, new_ulid
from tests.support.commands import (
    command,
    timer_headers,
    timer_id,
)
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import send
from tests.support.processes import WorkerProcess
from worker.adapters.postgres.jobs import get_job
from worker.adapters.postgres.runs import get_run
from worker.service.auth import SYSTEM_ACTOR
from worker.settings import Settings

pytestmark = pytest.mark.integration

S = RunStatus
HOUR = timedelta(hours=1)
USER_COMMANDS = {
    # kind: the statuses it succeeds from, its success status, the event type
    "complete_fielding_run": ({S.LIVE, S.SCHEDULED}, 204, "target_group_closed"),
    "launch_now_fielding_run": ({S.SCHEDULED}, 200, "target_group_opened"),
    "pause_fielding_run": ({S.LIVE}, 204, "target_group_paused"),
    "resume_fielding_run": ({S.PAUSED}, 204, "target_group_opened"),
    "relaunch_fielding_run": ({S.COMPLETED}, 204, "target_group_opened"),
    "update_fielding_run": ({S.SCHEDULED, S.LIVE, S.PAUSED}, 202, "fielding_run_updated"),
}


def by_command(outputs: Outputs) -> dict[str, dict[str, Any]]:
    return {r["command_id"]: r for r in outputs.results.values()}


async def test_every_user_command_in_every_status_with_its_404_and_412(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    cases = []
    for kind, (succeeds_from, success, event_type) in USER_COMMANDS.items():
        for status in RunStatus:
            run = await make_run(
                status, start_fielding_at=now + HOUR, end_fielding_at=now + 9 * HOUR
            )
            extra = (
                {
                    "start_fielding_at": (now + 2 * HOUR).isoformat(),
                    "end_fielding_at": (now + 3 * HOUR).isoformat(),
                }
                if kind == "update_fielding_run"
                else {}
            )
            cases.append(
                (
                    kind,
                    status,
                    run,
                    for_run(run, kind, **extra),
                    success if status in succeeds_from else 422,
                    event_type,
                )
            )
        live = await make_run(S.LIVE)
        cases.append((kind, None, live, for_run(live, kind, fielding_run_id=new_ulid()), 404, None))
        cases.append((kind, None, live, for_run(live, kind, if_match='W/"7"'), 412, None))
    await workers.start(settings)
    await send(settings, *(body for *_, body, _, _ in cases))
    await outputs.results.read(at_least=len(cases))
    results = by_command(outputs)
    expected_events = Counter()
    for kind, status, run, body, expected, event_type in cases:
        result = results[body["command_id"]]
        assert result["status"] == expected, (kind, status, result)
        stored = await get_run(pool, run.id)
        assert stored is not None
        if expected in (200, 202, 204):
            assert result["etag"] == etag_of(run.version + 1) and stored.version == run.version + 1
            expected_events[event_type] += 1
        elif status is not None:
            assert stored.version == run.version
    events = await outputs.events.read(at_least=sum(expected_events.values()))
    assert Counter(json.loads(e.value)["type"] for e in events) == expected_events
    launched = next(
        results[b["command_id"]]
        for k, s, _, b, _, _ in cases
        if k == "launch_now_fielding_run" and s is S.SCHEDULED
    )
    assert set(launched["body"]) == {"start_fielding_at", "end_fielding_at"}


async def test_draft_jobs_create_runs_refuse_a_second_and_repeat_as_the_same_job(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    pool: asyncpg.Pool,
) -> None:
    project, group = new_ulid(), new_ulid()
    end = (datetime.now(UTC) + HOUR).isoformat()
    launch = command(
        "launch_fielding_run_from_draft",
        project_id=project,
        target_group_id=group,
        end_fielding_at=end,
    )
    second = command(
        "schedule_fielding_run_from_draft",
        project_id=project,
        target_group_id=group,
        start_fielding_at=(datetime.now(UTC) + HOUR).isoformat(),
        end_fielding_at=(datetime.now(UTC) + 2 * HOUR).isoformat(),
    )
    await workers.start(settings)
    await send(settings, launch)
    await outputs.results.read(at_least=1)
    await send(settings, second, launch)  # a second job for the group, and a repeat
    await outputs.results.read(at_least=3)
    first, refused, repeat = outputs.results.values()
    job = first["body"]["job"]
    assert (first["status"], job["status"]) == (201, "Completed")
    assert repeat == first, "the same job, answered again"
    assert refused["body"]["job"]["failure_reason"]["code"] == "TargetGroupInvalidState"
    created = await get_run(pool, job["created_fielding_run_id"])
    assert created is not None and (created.status, created.target_group_id) == (S.LIVE, group)
    stored = await get_job(pool, job["job_id"])
    assert stored is not None and json.loads(stored.body) == job
    [event] = await outputs.events.read(at_least=1)
    assert json.loads(event.value)["reason"] == "launched_from_draft"


async def test_a_bulk_job_mixing_found_missing_and_wrong_state_target_groups(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    project = new_ulid()
    runs = [await make_run(s, project_id=project) for s in (S.LIVE, S.LIVE, S.COMPLETED, S.PAUSED)]
    other_project = await make_run(S.LIVE)
    missing = new_ulid()
    groups = [r.target_group_id for r in runs] + [other_project.target_group_id, missing]
    body = command(
        "complete_fielding_runs_by_target_group_ids", project_id=project, target_group_ids=groups
    )
    await workers.start(settings)
    await send(settings, body, body)
    first, again = await outputs.results.read(at_least=2)
    result = json.loads(first.value)
    assert json.loads(again.value) == result
    job = result["body"]["job"]
    assert [g["target_group_id"] for g in job["updated_target_groups"]["data"]] == groups[:3]
    failed = {
        g["target_group_id"]: g["failure_reason"]["code"]
        for g in job["failed_target_groups"]["data"]
    }
    assert failed == {
        runs[3].target_group_id: "StatusTransitionNotAllowed",
        other_project.target_group_id: "TargetGroupNotFound",
        missing: "TargetGroupNotFound",
    }
    events = await outputs.events.read(at_least=2)
    assert sorted(e.key for e in events) == sorted(r.target_group_id.encode() for r in runs[:2])
    for run in runs[:2]:
        stored = await get_run(pool, run.id)
        assert stored is not None and stored.status is S.COMPLETED


async def test_a_timer_command_needs_the_system_key(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    run = await make_run(S.SCHEDULED, start_fielding_at=datetime.now(UTC) + HOUR)
    await workers.start(settings)
    await send(settings, for_run(run, "start_scheduled_fielding_run"))
    [result] = await outputs.results.read(at_least=1)
    assert json.loads(result.value)["status"] == 403


async def test_a_scheduled_run_opens_at_its_start_and_closes_at_its_end_once_each(
    settings: Settings,
    outputs: Outputs,
    make_run: RunMaker,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    run = await make_run(
        S.SCHEDULED,
        start_fielding_at=now + timedelta(seconds=4),
        end_fielding_at=now + timedelta(seconds=12),
    )
    replicas = [
        WorkerProcess(settings, tmp_path, f"timers-{i}", FIELDING_SCHEDULER_INTERVAL_SECONDS="0.5")
        for i in range(2)
    ]
    for replica in replicas:
        replica.start()

    async def reasons_of_this_run(at_least: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:  # other tests' due runs may have events here too: this run's only
            events = await outputs.events.read(at_least=0, settle=0.5)
            ours = [
                json.loads(e.value)["reason"]
                for e in events
                if e.key == run.target_group_id.encode()
            ]
            if len(ours) >= at_least or time.monotonic() > deadline:
                return ours

    try:
        assert await reasons_of_this_run(1, 30) == ["start_time_reached"]
        assert datetime.now(UTC) - (now + timedelta(seconds=4)) < timedelta(seconds=5)
        holders = [r for r in replicas if "took the lease" in r.log()]
        assert holders, [r.log()[-2000:] for r in replicas]
        holders[-1].kill()  # the replica that sent the timer; the other takes the lease over
        assert await reasons_of_this_run(2, 40) == ["start_time_reached", "end_time_reached"]
        await asyncio.sleep(2)
        assert await reasons_of_this_run(3, 0) == ["start_time_reached", "end_time_reached"], (
            "exactly one of each"
        )
        stored = await get_run(pool, run.id)
        assert stored is not None and (stored.status, stored.version) == (S.COMPLETED, 3)
        assert stored.last_changed_by == SYSTEM_ACTOR
        results = await outputs.results.read(at_least=2, settle=1)
        ours = [json.loads(r.value) for r in results if r.key == run.id.encode()]
        assert ours and {r["status"] for r in ours} == {204}
        assert any(r.alive() for r in replicas)
    finally:
        for replica in replicas:
            if replica.alive():
                replica.terminate()


async def test_a_timer_that_loses_a_race_to_a_command_is_412_and_the_next_one_applies(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(
        S.LIVE, version=3, end_fielding_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    quiet = settings
    await workers.start(quiet)
    # A pause and the end timer, both for version 3: the pause is first, the timer loses.
    await send(quiet, for_run(run, "pause_fielding_run"))
    timer = for_run(run, "end_fielding_run", command_id=timer_id(run.id, 3, "end_fielding_run"))
    await send(quiet, timer, headers=timer_headers(timer))
    paused, stale = (json.loads(r.value) for r in await outputs.results.read(at_least=2))
    assert (paused["status"], stale["status"]) == (204, 412)
    # A replica with its scheduler on: the timer for version 4.
    await workers.start(settings.model_copy(update={"scheduler_interval_seconds": 0.5}))
    events = await outputs.events.read(at_least=2, timeout=30)
    assert [json.loads(e.value)["type"] for e in events] == [
        "target_group_paused",
        "target_group_closed",
    ]
    stored = await get_run(pool, run.id)
    assert stored is not None and (stored.status, stored.version) == (S.COMPLETED, 5)
