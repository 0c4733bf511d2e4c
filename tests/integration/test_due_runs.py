"""The scheduler's view of the store, on the real Postgres: which runs are due (kept beside the
runs by triggers, whoever writes them), in order, page by page, and the lease."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from tests.support.harness import RunMaker, WorkerFactory
from tests.support.processes import environment
from worker.adapters.postgres.runs import put_run
from worker.adapters.postgres.timers import PostgresDueRuns
from worker.observability import metrics
from worker.settings import Settings

pytestmark = pytest.mark.integration
S = RunStatus


async def due_ids(pool: asyncpg.Pool, kind: str) -> list[str]:
    return [r.fielding_run_id for r in await PostgresDueRuns(pool).due(kind, None, 100_000)]  # type: ignore[arg-type]


async def test_due_runs_are_the_ones_whose_time_came_in_their_status(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    before = set(await due_ids(pool, "start")), set(await due_ids(pool, "end"))
    now = datetime.now(UTC)
    past, future = now - timedelta(minutes=5), now + timedelta(hours=5)
    starting = await make_run(S.SCHEDULED, start_fielding_at=past, end_fielding_at=future)
    not_yet = await make_run(S.SCHEDULED, start_fielding_at=future)
    ending = [
        await make_run(s, start_fielding_at=past, end_fielding_at=past) for s in (S.LIVE, S.PAUSED)
    ]
    over = await make_run(S.COMPLETED, end_fielding_at=past)
    by_default = await make_run(S.LIVE)  # from now, for 30 days
    new_start = set(await due_ids(pool, "start")) - before[0]
    new_end = set(await due_ids(pool, "end")) - before[1]
    assert new_start == {starting.id}
    assert new_end == {r.id for r in ending}
    assert not ({not_yet.id, over.id, by_default.id} & (new_start | new_end))

    # Completed (by any writer): no longer due.
    await put_run(
        pool,
        account_id=101,
        project_id=starting.project_id,
        target_group_id=starting.target_group_id,
        fielding_run_id=starting.id,
        status=S.COMPLETED,
        start_fielding_at=past,
        end_fielding_at=future,
        changed_by=starting.last_changed_by,
    )
    assert starting.id not in await due_ids(pool, "start")


async def test_due_runs_come_in_time_order_page_after_page(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    base = datetime(2001, 1, 1, tzinfo=UTC)  # before anything other tests make
    runs = [
        await make_run(S.SCHEDULED, start_fielding_at=base + timedelta(seconds=n)) for n in range(5)
    ]
    due = PostgresDueRuns(pool)
    first = await due.due("start", None, 2)
    second = await due.due("start", first[-1].position, 2)
    assert [r.fielding_run_id for r in first + second] == [r.id for r in runs[:4]]


async def test_the_lease_is_one_holders_until_it_expires(pool: asyncpg.Pool) -> None:
    due = PostgresDueRuns(pool)
    await pool.execute("DELETE FROM scheduler_leases")
    assert await due.hold_lease("a", 0.5)
    assert not await due.hold_lease("b", 5)
    assert await due.hold_lease("a", 0.5), "its holder renews it"
    await pool.execute("UPDATE scheduler_leases SET expires_at = now() - interval '1 second'")
    assert await due.hold_lease("b", 5)


async def test_a_run_left_past_its_end_with_no_scheduler_shows_as_overdue(
    settings: Settings, workers: WorkerFactory, make_run: RunMaker
) -> None:
    twenty_minutes_ago = datetime.now(UTC) - timedelta(minutes=20)
    run = await make_run(
        S.LIVE, start_fielding_at=twenty_minutes_ago, end_fielding_at=twenty_minutes_ago
    )
    await workers.start(settings)  # no scheduler: FIELDING_SCHEDULER_INTERVAL_SECONDS is 0
    gauge = metrics.OVERDUE_RUNS.labels("end", "10m")
    deadline = asyncio.get_running_loop().time() + 30
    while gauge._value.get() < 1:
        assert asyncio.get_running_loop().time() < deadline, "no overdue run counted"
        await asyncio.sleep(0.2)

    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "worker.entrypoints.cli", "runs", "list", "--overdue"],
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 1, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(run.id)]
    assert f"account {run.account_id} live: end was due" in line
