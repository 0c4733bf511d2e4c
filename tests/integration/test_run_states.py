"""The states topic through real Kafka and Postgres: made compacted by create-topics, and, read
from the beginning as a read_committed consumer, equal to the store after lifecycle commands,
a draft job and a bulk job (one state per change, the last of each run its current state)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.commands import command
from tests.support.harness import Outputs, RunMaker, WorkerFactory, expected_state, for_run
from tests.support.kafka import send
from worker.adapters.kafka.admin import admin_client
from worker.adapters.kafka.topics import CLEANUP_POLICY, topic_configs
from worker.adapters.postgres.runs import get_run, runs_of_target_group
from worker.settings import Settings

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


def states_by_run(outputs: Outputs) -> dict[str, list[dict[str, Any]]]:
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in outputs.states.records:
        state = json.loads(record.value)
        assert record.key == state["id"].encode()  # keyed by the run: compaction keeps its last
        by_run[state["id"]].append(state)
    return by_run


async def test_create_topics_makes_the_states_topic_compacted(settings: Settings) -> None:
    async with admin_client(settings.kafka_bootstrap_servers) as admin:
        policy = await topic_configs(admin, [settings.states_topic], CLEANUP_POLICY)
        described = await admin.describe_topics([settings.states_topic, settings.events_topic])
    assert policy == {settings.states_topic: "compact"}
    assert [len(topic["partitions"]) for topic in described] == [settings.output_partitions] * 2


async def test_the_states_topic_read_from_the_beginning_equals_the_store(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    paused = await make_run(RunStatus.LIVE, end_fielding_at=now + 9 * HOUR)
    updated = await make_run(
        RunStatus.SCHEDULED, start_fielding_at=now + HOUR, end_fielding_at=now + 2 * HOUR
    )
    bulk = [await make_run(RunStatus.LIVE, project_id=paused.project_id) for _ in range(2)]
    draft_group = new_ulid()
    commands = [
        for_run(paused, "pause_fielding_run"),
        for_run(paused, "resume_fielding_run", if_match=f'W/"{paused.version + 1}"'),
        for_run(paused, "complete_fielding_run", if_match=f'W/"{paused.version + 2}"'),
        for_run(
            updated,
            "update_fielding_run",
            start_fielding_at=(now + 3 * HOUR).isoformat(),
            end_fielding_at=(now + 4 * HOUR).isoformat(),
        ),
        for_run(updated, "launch_now_fielding_run", if_match=f'W/"{updated.version + 1}"'),
        command(
            "pause_fielding_runs_by_target_group_ids",
            account_id=101,
            project_id=paused.project_id,
            target_group_ids=[run.target_group_id for run in bulk],
        ),
        command(
            "launch_fielding_run_from_draft",
            account_id=101,
            project_id=paused.project_id,
            target_group_id=draft_group,
            end_fielding_at=(now + HOUR).isoformat(),
        ),
    ]
    changes = 3 + 2 + 2 + 1
    await workers.start(settings)
    await send(settings, *commands)
    results = await outputs.results.read(at_least=len(commands))
    assert all(json.loads(r.value)["status"] in (200, 201, 202, 204) for r in results)
    await outputs.states.read(at_least=changes, settle=2)

    by_run = states_by_run(outputs)
    [created] = await runs_of_target_group(pool, 101, paused.project_id, draft_group)
    before = {run.id: run.version for run in (paused, updated, *bulk)} | {created.id: 0}
    assert set(by_run) == set(before)
    for run_id, states in by_run.items():
        stored = await get_run(pool, run_id)
        assert stored is not None
        assert [s["version"] for s in states] == list(
            range(before[run_id] + 1, stored.version + 1)
        ), run_id
        assert states[-1] == expected_state(stored)
    assert [s["status"] for s in by_run[paused.id]] == ["paused", "live", "completed"]
    assert sum(len(states) for states in by_run.values()) == changes


async def test_with_the_states_topic_empty_no_state_is_published(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    run = await make_run(RunStatus.LIVE)
    await workers.start(settings.model_copy(update={"states_topic": ""}))
    await send(settings, for_run(run, "pause_fielding_run"))
    await outputs.events.read(at_least=1)
    assert await outputs.states.read(at_least=0, settle=2) == []
