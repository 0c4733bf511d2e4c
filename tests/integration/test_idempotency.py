"""Idempotency over the real services: replays, conflicts, what is not remembered, retention."""

from __future__ import annotations

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import Outgoing, produce
from worker.adapters.postgres.housekeeping import forget_expired, forget_jobs
from worker.adapters.postgres.runs import get_run
from worker.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_repeated_command_replays_its_result_and_changes_nothing(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(RunStatus.LIVE)
    body = for_run(run)
    await workers.start(settings)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [Outgoing(encode(body), run.id.encode(), auth_headers([101]))],
    )
    await outputs.results.read(at_least=1)
    # The same command again, later, as an upstream retry would send it.
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [Outgoing(encode(body), run.id.encode(), auth_headers([101]))],
    )
    first, again = [r for r in (await outputs.results.read(at_least=2))]
    assert again.value == first.value  # byte for byte: same status, etag, processed_at
    assert outputs.results.values()[0]["status"] == 204
    assert len(await outputs.events.read(at_least=1)) == 1
    stored = await get_run(pool, run.id)
    assert stored is not None and stored.version == run.version + 1


async def test_a_reused_command_id_with_other_content_is_400_and_not_applied(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    refused = await make_run(RunStatus.PAUSED)
    other = await make_run(RunStatus.LIVE)
    body = for_run(refused)
    reuse = for_run(other, command_id=body["command_id"])
    await workers.start(settings)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [
            Outgoing(encode(body), b"k", auth_headers([101])),
            Outgoing(encode(reuse), b"k", auth_headers([101])),
        ],
    )
    await outputs.results.read(at_least=2)
    # Results are keyed by run, so they may come back in either order.
    by_run = {r["fielding_run_id"]: r for r in outputs.results.values()}
    first, second = by_run[refused.id], by_run[other.id]
    assert first["status"] == 422
    assert second["status"] == 400
    assert second["error"]["invalid_params"] == [
        {"name": "command_id", "reason": "this command_id was already used for a different command"}
    ]
    stored = await get_run(pool, other.id)
    assert stored is not None and stored.status is RunStatus.LIVE
    assert await outputs.events.read(at_least=0) == []


async def test_a_401_is_not_remembered_so_a_retry_with_a_good_token_succeeds(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    run = await make_run(RunStatus.LIVE)
    body = for_run(run)
    await workers.start(settings)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [
            Outgoing(encode(body), b"k", auth_headers([101], expires_in=-120)),  # past the leeway
            Outgoing(encode(body), b"k", auth_headers([101])),
        ],
    )
    await outputs.results.read(at_least=2)
    assert [r["status"] for r in outputs.results.values()] == [401, 204]


async def test_remembered_outcomes_expire_after_the_retention_once_their_records_committed(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute("""
        INSERT INTO command_outcomes (account_id, command_id, fingerprint, status, result,
                                      source_topic, source_partition, source_offset, decided_at)
        VALUES (909, 'old', '\\x00', 404, '{}', 't', 0, 0, now() - interval '2 hours'),
               (909, 'old-not-committed', '\\x00', 404, '{}', 't', 0, 7, now() - interval '2 hours'),
               (909, 'old-nothing-committed', '\\x00', 404, '{}', 't', 1, 0, now() - interval '2 hours'),
               (909, 'old-other-topic', '\\x00', 404, '{}', 'u', 0, 9, now() - interval '2 hours'),
               (909, 'new', '\\x00', 404, '{}', 't', 0, 1, now())
    """)
    # The group has committed partition 0 of topic t up to offset 5, and nothing of partition 1.
    forgotten = await forget_expired(pool, 3600, "t", {0: 5}, chunk=1)
    assert forgotten >= 2
    kept = await pool.fetch("SELECT command_id FROM command_outcomes WHERE account_id = 909")
    assert sorted(r["command_id"] for r in kept) == [
        "new",
        "old-not-committed",
        "old-nothing-committed",
    ]


async def test_jobs_are_removed_after_their_retention(pool: asyncpg.Pool) -> None:
    await pool.execute("""
        INSERT INTO fielding_jobs (job_id, account_id, project_id, target_group_id, command_type,
                                   body, created_at)
        VALUES ('job-old-1', 909, 'p', 'tg1', 'bulk', '{}', now() - interval '2 hours'),
               ('job-old-2', 909, 'p', 'tg2', 'bulk', '{}', now() - interval '3 hours'),
               ('job-new', 909, 'p', 'tg3', 'bulk', '{}', now())
    """)
    assert await forget_jobs(pool, 3600, chunk=1) >= 2
    kept = await pool.fetch("SELECT job_id FROM fielding_jobs WHERE account_id = 909")
    assert [r["job_id"] for r in kept] == ["job-new"]
