"""The system actor through real Kafka, Postgres and HTTP: the scheduler's timer records carry
no token, a copy of one is good for that one command only, an older scheduler's token still
sends its timers during an upgrade, and `serve` honours no system token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.commands import system_headers, timer_headers, timer_id
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.http import ApiStarter, headers, run_path
from tests.support.kafka import TopicReader, send
from worker.adapters.postgres.runs import FieldingRunRecord, get_run
from worker.service.auth import SYSTEM_ACTOR, TIMER_SIGNATURE
from worker.settings import Settings

pytestmark = pytest.mark.integration

S = RunStatus
HOUR = timedelta(hours=1)


async def results_until(
    outputs: Outputs, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 30
) -> list[dict[str, Any]]:
    """The results so far, once `done` holds of them (other tests' timers may come first)."""
    deadline = time.monotonic() + timeout
    while True:
        await outputs.results.read(at_least=0, settle=0.5)
        values = outputs.results.values()
        if done(values) or time.monotonic() > deadline:
            return values


def statuses(results: list[dict[str, Any]], command_id: str, account_id: int) -> list[int]:
    return [
        r["status"]
        for r in results
        if (r["command_id"], r["account_id"]) == (command_id, account_id)
    ]


async def test_a_timer_record_carries_no_token_and_a_copy_is_good_for_that_command_only(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    run = await make_run(S.LIVE, version=3, end_fielding_at=now - timedelta(seconds=1))
    other = await make_run(S.LIVE, account_id=555, version=3, end_fielding_at=now + HOUR)
    await workers.start(settings.model_copy(update={"scheduler_interval_seconds": 0.5}))
    commands = TopicReader(settings.kafka_bootstrap_servers, settings.commands_topic)
    try:
        deadline = time.monotonic() + 30
        while True:  # other tests' due runs share the database: this run's timer only
            records = await commands.read(at_least=0, settle=0.5)
            ours = [r for r in records if r.key == run.id.encode()]
            if ours or time.monotonic() > deadline:
                break
    finally:
        await commands.close()
    assert ours, "the scheduler sent the end timer"
    timer = ours[0]
    names = {name.lower() for name, _ in timer.headers}
    assert "authorization" not in names and TIMER_SIGNATURE in names
    body = json.loads(timer.value)
    timer_command = body["command_id"]
    assert timer_command == timer_id(run.id, 3, "end_fielding_run")
    await results_until(outputs, lambda rs: statuses(rs, timer_command, 101) == [204])
    stored = await get_run(pool, run.id)
    assert stored is not None and stored.status is S.COMPLETED
    assert stored.last_changed_by == SYSTEM_ACTOR

    copied = list(timer.headers)
    # The copy as it is (a redelivery, or the scheduler sending it again): the same result.
    await send(settings, body, headers=copied)
    # Its signature on the same timer of another account's run: refused.
    await send(
        settings, for_run(other, "end_fielding_run", command_id=timer_command), headers=copied
    )
    # Its signature on a user command: refused.
    user_command = new_ulid()
    await send(
        settings,
        for_run(other, "complete_fielding_run", command_id=user_command),
        headers=copied,
    )
    results = await results_until(outputs, lambda rs: len(statuses(rs, user_command, 555)) == 1)
    assert statuses(results, timer_command, 101) == [204, 204]
    assert statuses(results, timer_command, 555) == [401]
    assert statuses(results, user_command, 555) == [401]
    untouched = await get_run(pool, other.id)
    assert untouched is not None and (untouched.status, untouched.version) == (S.LIVE, 3)


async def ended_run_and_its_timer(
    settings: Settings, workers: WorkerFactory, make_run: RunMaker
) -> tuple[FieldingRunRecord, dict[str, Any]]:
    """A live run at version 3 whose end has passed, its end timer as the scheduler would
    send it (no scheduler runs: these tests send it), and a worker."""
    run = await make_run(
        S.LIVE, version=3, end_fielding_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    await workers.start(settings)
    kind = "end_fielding_run"
    return run, for_run(run, kind, command_id=timer_id(run.id, 3, kind))


async def test_an_older_schedulers_token_still_sends_its_own_timer_during_an_upgrade(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    run, legacy = await ended_run_and_its_timer(settings, workers, make_run)
    await send(settings, legacy, headers=system_headers())
    # With that token, anything but that timer: 403.
    await send(
        settings, for_run(run, "pause_fielding_run", if_match='W/"4"'), headers=system_headers()
    )
    first, second = (json.loads(r.value) for r in await outputs.results.read(at_least=2))
    assert (first["status"], second["status"]) == (204, 403)


async def test_a_signed_timer_is_accepted_and_its_copy_replayed(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    _, timer = await ended_run_and_its_timer(settings, workers, make_run)
    await send(settings, timer, headers=timer_headers(timer))
    await send(settings, timer, headers=timer_headers(timer))
    first, again = (json.loads(r.value) for r in await outputs.results.read(at_least=2))
    assert first == again and first["status"] == 204
    assert len(await outputs.events.read(at_least=1)) == 1, "one change, one event"


async def test_serve_answers_the_system_actors_token_401_on_every_route(
    api: ApiStarter, make_run: RunMaker
) -> None:
    client = await api()
    theirs = await make_run(S.LIVE, account_id=555)
    [(_, authorization)] = system_headers()  # signed with the worker's system key
    system = {"Authorization": authorization.decode(), "Cint-API-Version": "2025-12-18"}
    read = await client.get(run_path(theirs), headers=system)
    assert read.status_code == 401 and read.json()["object"] == "authorization_error"
    change = await client.post(
        run_path(theirs) + "/complete", headers={**system, "If-Match": 'W/"1"'}
    )
    assert change.status_code == 401
    user = await client.get(run_path(theirs), headers=headers([101]))
    assert user.status_code == 403
