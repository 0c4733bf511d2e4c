"""The command store on the real Postgres: a batch's decisions are written all together or not
at all, a write that lost a race to another writer changes nothing, and a call on a connection
gone silent fails in bounded time."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.harness import RunMaker
from tests.support.relay import SilencingRelay
from worker.adapters.postgres import pool as pool_module
from worker.adapters.postgres.command_store import PostgresCommandStore
from worker.adapters.postgres.jobs import get_job
from worker.adapters.postgres.runs import FieldingRunRecord, get_run, put_run
from worker.service.ports import (
    JobRecord,
    Output,
    RecordOrigin,
    RememberedOutcome,
    RunChange,
    TransientFailure,
)

pytestmark = pytest.mark.integration


def store(pool: asyncpg.Pool) -> PostgresCommandStore:
    return PostgresCommandStore(pool, rate_window_seconds=1, rate_limit=0)


def completed(run: FieldingRunRecord, read_version: int) -> RunChange:
    key = RunKey(run.account_id, run.project_id, run.target_group_id, run.id)
    return RunChange(
        run=RunState(key, RunStatus.COMPLETED, read_version + 1),
        expected_version=read_version,
        changed_at=datetime.now(UTC),
        changed_by=uuid.uuid4(),
    )


TWO_EVENTS = (Output(b"tg-1", b'{"e":  1}'), Output(b"tg-2", b'{"e": "caf\xc3\xa9"}'))


def outcome(account_id: int = 101, events: tuple[Output, ...] = TWO_EVENTS) -> RememberedOutcome:
    return RememberedOutcome(
        account_id=account_id,
        command_id=str(uuid.uuid4()),
        fingerprint=b"\x01\x02",
        status=204,
        result=b'{"status": 204, "detail": "caf\xc3\xa9"}',
        events=events,
        origin=RecordOrigin("commands", 3, 42),
    )


async def test_what_is_saved_is_loaded_back_as_it_was(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    run = await make_run(RunStatus.LIVE, version=4)
    decided, refused = outcome(), outcome(events=())
    created = RunChange(
        RunState(
            RunKey(101, new_ulid(), new_ulid(), new_ulid()),
            RunStatus.SCHEDULED,
            1,
            datetime(2027, 1, 1, tzinfo=UTC),
            datetime(2027, 2, 1, tzinfo=UTC),
        ),
        None,
        datetime.now(UTC),
        uuid.uuid4(),
    )
    job = JobRecord(
        new_ulid(),
        101,
        run.project_id,
        None,
        "pause_fielding_runs_by_target_group_ids",
        b'{"job_id": "x"}',
    )
    await store(pool).save([completed(run, 4), created], [decided, refused], [job])

    snapshot = await store(pool).load(
        [run.id],
        [created.run.key.target_group_id],
        [(101, decided.command_id), (101, refused.command_id), (101, "never-seen")],
    )
    assert (
        snapshot.runs[run.id].status is RunStatus.COMPLETED and snapshot.runs[run.id].version == 5
    )
    assert snapshot.runs[created.run.key.fielding_run_id] == created.run
    assert snapshot.outcomes == {
        (101, decided.command_id): decided,  # the events in order, byte for byte
        (101, refused.command_id): refused,
    }
    assert await get_job(pool, job.job_id) == job


async def test_an_outcomes_run_states_are_loaded_back_in_order_byte_for_byte(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    run = await make_run(RunStatus.LIVE, version=4)
    states = (
        Output(b"run-1", b'{"id":  "run-1", "v": 5}'),
        Output(b"run-2", b'{"c": "caf\xc3\xa9"}'),
    )
    with_states, without = replace(outcome(), states=states), outcome()
    await store(pool).save([completed(run, 4)], [with_states, without], [])
    snapshot = await store(pool).load(
        [], [], [(101, with_states.command_id), (101, without.command_id)]
    )
    assert snapshot.outcomes[(101, with_states.command_id)].states == states
    assert snapshot.outcomes[(101, without.command_id)].states == ()
    assert snapshot.outcomes[(101, with_states.command_id)].events == TWO_EVENTS


async def test_a_run_created_meanwhile_for_the_target_group_fails_the_whole_batch(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    existing = await make_run(RunStatus.COMPLETED)
    second = RunChange(
        RunState(
            RunKey(101, existing.project_id, existing.target_group_id, new_ulid()),
            RunStatus.LIVE,
            1,
            existing.start_fielding_at,
            existing.end_fielding_at,
        ),
        None,
        datetime.now(UTC),
        uuid.uuid4(),
    )
    lost = outcome()
    with pytest.raises(TransientFailure):
        await store(pool).save([second], [lost], [])
    assert (await store(pool).load([], [], [(101, lost.command_id)])).outcomes == {}


async def test_a_run_changed_since_it_was_read_fails_the_whole_batch(
    pool: asyncpg.Pool, make_run: RunMaker
) -> None:
    untouched, raced = await make_run(RunStatus.LIVE), await make_run(RunStatus.LIVE)
    await put_run(
        pool,
        account_id=raced.account_id,
        project_id=raced.project_id,  # another writer
        target_group_id=raced.target_group_id,
        fielding_run_id=raced.id,
        status=RunStatus.PAUSED,
        start_fielding_at=raced.start_fielding_at,
        end_fielding_at=raced.end_fielding_at,
        changed_by=raced.last_changed_by,
    )
    lost = outcome()
    with pytest.raises(TransientFailure):
        await store(pool).save([completed(untouched, 1), completed(raced, 1)], [lost], [])

    assert (await get_run(pool, untouched.id)) == untouched  # not completed, version unchanged
    assert (await store(pool).load([], [], [(101, lost.command_id)])).outcomes == {}


async def test_a_command_decided_elsewhere_meanwhile_fails_the_whole_batch(
    pool: asyncpg.Pool,
    make_run: RunMaker,
) -> None:
    run = await make_run(RunStatus.LIVE)
    elsewhere = outcome()
    await store(pool).save([], [elsewhere], [])
    here = replace(elsewhere, status=412, events=())  # the same command id, decided again
    with pytest.raises(TransientFailure):
        await store(pool).save([completed(run, 1)], [outcome(), here], [])

    assert (await get_run(pool, run.id)) == run


async def test_a_save_on_a_connection_gone_silent_fails_as_transient_and_a_retry_saves_it(
    database_url: str, pool: asyncpg.Pool, make_run: RunMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The far side of the pool's connection goes silent (no answer, no reset: a dropped NAT
    entry). The save gives up once the statement timeout and the client's margin have passed,
    as a transient failure, instead of waiting for ever (or for the deadline twice, as asyncpg
    does when it waits for its cancel of the call); the retry, as the processor makes it, saves
    the batch on a fresh connection."""
    monkeypatch.setattr(pool_module, "CLIENT_DEADLINE_MARGIN_SECONDS", 0.5)
    parts = urlsplit(database_url)
    assert parts.hostname is not None and parts.port is not None
    relay = SilencingRelay(parts.hostname, parts.port)
    port = await relay.start()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
    relayed = await pool_module.create_pool(
        urlunsplit(parts._replace(netloc=netloc)), max_size=1, statement_timeout=2.0
    )
    run = await make_run(RunStatus.LIVE, version=4)
    try:
        await relayed.fetchval("SELECT 1")  # the pool's one connection, made before the silence
        relay.silence()

        async def save_and_retry() -> float:
            started = time.monotonic()
            with pytest.raises(TransientFailure):
                await store(relayed).save([completed(run, 4)], [outcome()], [])
            given_up_after = time.monotonic() - started
            await store(relayed).save([completed(run, 4)], [outcome()], [])
            return given_up_after

        # Not asyncio.timeout: a call stuck on a silent connection does not end when cancelled.
        attempts = asyncio.ensure_future(save_and_retry())
        await asyncio.wait({attempts}, timeout=60)  # far above the deadlines
        assert attempts.done(), "a save on a silent connection is still waiting after 60 s"
        assert attempts.result() < 2.0 + 0.5 + 1.5  # the deadline, not twice it
    finally:
        relayed.terminate()  # close() would wait on a connection still silent
        await relay.close()
    stored = await get_run(pool, run.id)
    assert stored is not None and (stored.status, stored.version) == (RunStatus.COMPLETED, 5)


async def waiting_on_a_lock(pool: asyncpg.Pool) -> int:
    """Statements of this database waiting on a lock of the quota table."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name = 'fielding-worker' AND datname = current_database()"
            " AND query LIKE '%account_command_rates%'"
        )
    )


async def test_a_quota_call_cancelled_while_it_waits_ends_cancelled_and_leaves_no_lock(
    database_url: str, pool: asyncpg.Pool
) -> None:
    """A batch cancelled (shutdown, a partition lost) while its quota statement waits on a
    lock: the call ends cancelled, not as a failure to retry (the batch would then be decided
    again after its partition was gone), its statement stops waiting on the server, and its
    transaction took nothing."""
    worker_pool = await pool_module.create_pool(database_url, max_size=1, statement_timeout=30)
    account = 900_000 + uuid.uuid4().int % 100_000
    try:
        async with pool.acquire() as blocker, blocker.transaction():
            await blocker.execute("LOCK TABLE account_command_rates IN ACCESS EXCLUSIVE MODE")
            taking = asyncio.ensure_future(
                PostgresCommandStore(worker_pool, 3600, 1000).take_quota({account: 1})
            )
            for _ in range(50):  # until the INSERT waits on the lock
                if await waiting_on_a_lock(pool):
                    break
                await asyncio.sleep(0.1)
            assert await waiting_on_a_lock(pool) == 1
            taking.cancel()
            await asyncio.wait({taking}, timeout=10)
            assert taking.cancelled(), taking
            # Its statement ends on the server too, long before the statement timeout.
            for _ in range(50):
                if not await waiting_on_a_lock(pool):
                    break
                await asyncio.sleep(0.2)
            assert not await waiting_on_a_lock(pool), "the dropped statement still waits"
        quota = await PostgresCommandStore(worker_pool, 3600, 1000).take_quota({account: 1})
        assert quota[account].left == 1000  # the cancelled call took nothing
    finally:
        await pool_module.close_pool(worker_pool)
