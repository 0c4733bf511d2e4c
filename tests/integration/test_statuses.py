"""Every row of the contract's status table, through real Kafka and Postgres.

Each test asserts the whole result (status, error object, etag, headers), then the database
and the event topic after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.commands import auth_headers, command, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import Outgoing, produce, send
from worker.adapters.postgres.runs import FieldingRunRecord, get_run
from worker.settings import Settings

pytestmark = pytest.mark.integration


def assert_error(result: dict[str, Any], status: int, error_object: str) -> None:
    assert result["status"] == status
    assert result["etag"] is None and result["retry_after_seconds"] is None
    error = result["error"]
    assert error["object"] == error_object
    assert uuid.UUID(error["id"]) and error["detail"]


async def assert_unchanged(pool: asyncpg.Pool, run: FieldingRunRecord) -> None:
    stored = await get_run(pool, run.id)
    assert stored is not None and (stored.status, stored.version) == (run.status, run.version)


async def test_400_names_every_broken_field_and_changes_nothing(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(RunStatus.LIVE)
    body = for_run(run, project_id="not-a-ulid", if_match="5")
    await workers.start(settings)
    await send(settings, body)
    [record] = await outputs.results.read(at_least=1)
    [result] = outputs.results.values()
    assert_error(result, 400, "bad_request_error")
    assert sorted(p["name"] for p in result["error"]["invalid_params"]) == [
        "if_match",
        "project_id",
    ]
    assert result["command_id"] == body["command_id"] and result["fielding_run_id"] == run.id
    assert record.key == run.id.encode() and dict(record.headers)["traceparent"]
    await assert_unchanged(pool, run)
    assert await outputs.events.read(at_least=0) == []


@pytest.mark.parametrize("problem", ["missing", "expired", "bad signature"])
async def test_401_for_a_bad_token(
    problem: str,
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(RunStatus.LIVE)
    headers = {
        "missing": [],
        "expired": auth_headers([101], expires_in=-120),  # past the 30 s leeway for clock skew
        "bad signature": auth_headers([101], secret="some-other-secret-of-thirty-two-bytes!!"),
    }[problem]
    await workers.start(settings)
    await send(settings, for_run(run), headers=headers)
    await outputs.results.read(at_least=1)
    [result] = outputs.results.values()
    assert_error(result, 401, "authorization_error")
    await assert_unchanged(pool, run)


async def test_403_when_the_token_lacks_the_account(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(RunStatus.LIVE, account_id=202)
    await workers.start(settings)
    await send(settings, for_run(run), headers=auth_headers([101, 303]))
    await outputs.results.read(at_least=1)
    [result] = outputs.results.values()
    assert_error(result, 403, "authorization_error")
    await assert_unchanged(pool, run)


@pytest.mark.parametrize("mismatch", ["no such run", "other project", "other account"])
async def test_404_unless_account_project_and_target_group_all_match(
    mismatch: str,
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(RunStatus.LIVE)
    from schemas.types import new_ulid

    body = {
        "no such run": for_run(run, fielding_run_id=new_ulid()),
        "other project": for_run(run, project_id=new_ulid()),
        "other account": for_run(run, account_id=303),
    }[mismatch]
    await workers.start(settings)
    await send(settings, body, headers=auth_headers([101, 303]))
    await outputs.results.read(at_least=1)
    [result] = outputs.results.values()
    assert_error(result, 404, "not_found_error")
    await assert_unchanged(pool, run)


async def test_412_for_a_stale_version_even_when_the_state_is_also_wrong(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    live = await make_run(RunStatus.LIVE, version=3)
    paused = await make_run(RunStatus.PAUSED, version=3)
    await workers.start(settings)
    await send(settings, for_run(live, if_match='W/"2"'), for_run(paused, if_match='"4"'))
    await outputs.results.read(at_least=2)
    for result in outputs.results.values():
        assert_error(result, 412, "precondition_failed_error")
    await assert_unchanged(pool, live)
    await assert_unchanged(pool, paused)
    assert await outputs.events.read(at_least=0) == []


@pytest.mark.parametrize("status", [RunStatus.PAUSED, RunStatus.COMPLETED])
async def test_422_for_a_paused_or_completed_run(
    status: RunStatus,
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(status, version=2)
    await workers.start(settings)
    await send(settings, for_run(run))
    await outputs.results.read(at_least=1)
    [result] = outputs.results.values()
    assert_error(result, 422, "invalid_state_error")
    await assert_unchanged(pool, run)
    assert await outputs.events.read(at_least=0) == []


async def test_429_beyond_the_accounts_rate_across_the_window(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    account = 4_000_000 + uuid.uuid4().int % 1_000_000  # a fresh account: its own counter
    runs = [await make_run(RunStatus.LIVE, account_id=account) for _ in range(5)]
    limited = settings.model_copy(
        update={"rate_limit_per_account": 2, "rate_limit_window_seconds": 3600}
    )
    await workers.start(limited)
    await send(settings, *(for_run(r) for r in runs), headers=auth_headers([account]))
    await outputs.results.read(at_least=5)
    results = outputs.results.values()
    assert sorted(r["status"] for r in results) == [204, 204, 429, 429, 429]
    for result in (r for r in results if r["status"] == 429):
        assert result["error"] == {
            "object": "too_many_requests_problem_details",
            "details": result["error"]["details"],
        }
        assert 1 <= result["retry_after_seconds"] <= 3600
        assert result["etag"] is None
    completed = [await get_run(pool, r.id) for r in runs]
    assert sum(1 for r in completed if r and r.status is RunStatus.COMPLETED) == 2
    await outputs.events.read(at_least=2)
    assert len(outputs.events.values()) == 2


async def test_a_bulk_job_larger_than_the_limit_is_paid_for_in_the_windows_after_it(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    account = 4_000_000 + uuid.uuid4().int % 1_000_000  # a fresh account: its own counter
    window = 2
    runs = [await make_run(RunStatus.LIVE, account_id=account) for _ in range(2)]
    limited = settings.model_copy(
        update={"rate_limit_per_account": 5, "rate_limit_window_seconds": window}
    )
    await workers.start(limited)
    bulk = command(
        "complete_fielding_runs_by_target_group_ids",
        account_id=account,
        target_group_ids=[new_ulid() for _ in range(12)],  # 12 units of 5 a window
    )
    await send(settings, bulk, headers=auth_headers([account]))
    await outputs.results.read(at_least=1)
    assert outputs.results.values()[0]["status"] == 201, outputs.results.values()[0]

    charged = await pool.fetchval(
        "SELECT extract(epoch FROM max(window_start)) FROM account_command_rates "
        "WHERE account_id = $1",
        account,
    )

    async def in_window(n: int, run: FieldingRunRecord, at_least: int) -> dict[str, Any]:
        """Sends a command for `run` early in the n-th window after the bulk job's."""
        await asyncio.sleep(max(0.0, float(charged) + n * window + 0.2 - time.time()))
        await send(settings, for_run(run), headers=auth_headers([account]))
        await outputs.results.read(at_least=at_least)
        return outputs.results.values()[-1]

    # The next window opens with the 7 units taken beyond the limit: refused.
    refused = await in_window(1, runs[0], 2)
    assert refused["status"] == 429
    # The one after opens with 7 - 5 = 2 (a refused command takes none): allowed.
    allowed = await in_window(2, runs[1], 3)
    assert allowed["status"] == 204, allowed


async def test_500_for_a_command_that_keeps_failing_with_a_dlq_copy_and_the_partition_moves_on(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    poisoned = await make_run(RunStatus.LIVE)
    healthy = await make_run(RunStatus.LIVE)
    # A bug the worker cannot know about: the database rejects this one row's update.
    await pool.execute(f"""
        CREATE OR REPLACE FUNCTION reject_{poisoned.id.lower()}() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'poisoned row'; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER poison_{poisoned.id.lower()} BEFORE UPDATE ON fielding_runs
        FOR EACH ROW WHEN (OLD.id = '{poisoned.id}') EXECUTE FUNCTION reject_{poisoned.id.lower()}();
    """)
    try:
        await workers.start(settings)
        bad, good = for_run(poisoned), for_run(healthy)
        # Same key, so both land on one partition, the poisoned one first.
        await produce(
            settings.kafka_bootstrap_servers,
            settings.commands_topic,
            [
                Outgoing(encode(bad), b"same-key", auth_headers([101])),
                Outgoing(encode(good), b"same-key", auth_headers([101])),
            ],
        )
        await outputs.results.read(at_least=2)
        by_command = {r["command_id"]: r for r in outputs.results.values()}
        assert_error(by_command[bad["command_id"]], 500, "unexpected_internal_error")
        assert by_command[good["command_id"]]["status"] == 204
        [copy] = await outputs.dlq.read(at_least=1)
        assert copy.value == encode(bad) and copy.key == b"same-key"
        assert dict(copy.headers)["dlq.reason"].startswith(b"unexpected_internal_error")
        await assert_unchanged(pool, poisoned)
    finally:
        await pool.execute(f"DROP TRIGGER poison_{poisoned.id.lower()} ON fielding_runs")
