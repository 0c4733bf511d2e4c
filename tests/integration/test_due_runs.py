"""The scheduler's view of the store, on the real Postgres: which runs are due (kept beside the
runs by triggers, whoever writes them), in order, page by page, and the lease."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.harness import RunMaker, WorkerFactory
from tests.support.processes import WorkerProcess, environment
from tests.support.services import Services
from worker.adapters.postgres.migrate import upgrade
from worker.adapters.postgres.runs import get_run, put_run
from worker.adapters.postgres.timers import PostgresDueRuns
from worker.observability import metrics
from worker.service.auth import SYSTEM_ACTOR
from worker.service.scheduler import TimerKind
from worker.settings import Settings

pytestmark = pytest.mark.integration
S = RunStatus


async def due_ids(pool: asyncpg.Pool, kind: TimerKind) -> list[str]:
    due = PostgresDueRuns(pool)
    return [r.fielding_run_id for r in await due.due(kind, await due.due_accounts(kind))]


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


async def test_each_accounts_due_runs_are_counted_and_read_earliest_first(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    base = datetime(2001, 1, 1, tzinfo=UTC)  # before anything other tests make
    many = random.randrange(10**6, 2 * 10**6)
    burst = [
        await make_run(S.SCHEDULED, account_id=many, start_fielding_at=base + timedelta(seconds=n))
        for n in range(5)
    ]
    one = await make_run(S.SCHEDULED, account_id=many + 1, start_fielding_at=base)
    not_yet = await make_run(
        S.SCHEDULED, account_id=many + 2, start_fielding_at=datetime.now(UTC) + timedelta(hours=1)
    )
    due = PostgresDueRuns(pool)
    counted = await due.due_accounts("start")
    assert (counted[many], counted[many + 1]) == (5, 1)
    assert not_yet.account_id not in counted, "an account with nothing due yet"
    page = await due.due("start", {many: 2, many + 1: 3})
    assert [r.fielding_run_id for r in page if r.account_id == many] == [r.id for r in burst[:2]]
    assert [r.fielding_run_id for r in page if r.account_id == many + 1] == [one.id]
    made = {r.id: r for r in [*burst, one]}
    assert all(
        (r.version, r.project_id, r.target_group_id)
        == (1, made[r.fielding_run_id].project_id, made[r.fielding_run_id].target_group_id)
        for r in page
        if r.fielding_run_id in made
    ), "each with what its timer command needs"


async def test_one_accounts_hundred_thousand_due_runs_hold_back_another_accounts_by_seconds(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    """The flood and the other account share the scheduler: the other's run, due a second after
    the flood, goes live within 5 s of its time while the flood is still being applied."""
    name = f"fielding_fair_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(services.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{services.postgres_url.rpartition('/')[0]}/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        async with asyncpg.create_pool(url, min_size=1, max_size=2) as store:
            # The worker is up and assigned by then.
            flood_at = datetime.now(UTC) + timedelta(seconds=20)
            project = new_ulid()
            flood = [new_ulid() for _ in range(100_000)]
            await store.execute(
                """INSERT INTO fielding_runs (id, account_id, project_id, target_group_id, status,
                                              version, start_fielding_at, end_fielding_at,
                                              last_changed_by)
                   SELECT id, 555, $2, id, 'scheduled', 1, $3, $3::timestamptz + interval '1 day', $4
                     FROM unnest($1::text[]) AS u(id)""",
                flood,
                project,
                flood_at,
                SYSTEM_ACTOR,
            )
            other = await put_run(
                store,
                account_id=777,
                project_id=project,
                target_group_id=new_ulid(),
                fielding_run_id=new_ulid(),
                status=S.SCHEDULED,
                start_fielding_at=flood_at + timedelta(seconds=1),
                end_fielding_at=flood_at + timedelta(days=1),
                changed_by=SYSTEM_ACTOR,
            )
            worker = WorkerProcess(
                settings.model_copy(update={"database_url": url}),
                tmp_path,
                "fair-timers",
                FIELDING_SCHEDULER_INTERVAL_SECONDS="1",
            )
            worker.start()
            try:
                while (await get_run(store, other.id)).status is S.SCHEDULED:  # type: ignore[union-attr]
                    assert worker.alive(), worker.log()[-3000:]
                    late = datetime.now(UTC) - (flood_at + timedelta(seconds=1))
                    assert late < timedelta(seconds=5), f"still scheduled {late} after its time"
                    await asyncio.sleep(0.1)
                flood_live = await store.fetchval(
                    "SELECT count(*) FROM fielding_runs WHERE account_id = 555 AND status = 'live'"
                )
                assert flood_live < len(flood), "the flood was still being applied"
            finally:
                worker.terminate()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


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
