"""The complete path over real Kafka and Postgres: command in, run completed, result and event out."""

from __future__ import annotations

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from tests.support.commands import USER, auth_headers, command, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory
from tests.support.kafka import Outgoing, produce
from worker.adapters.kafka.lag import group_lag
from worker.adapters.postgres.runs import get_run
from worker.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("status", [RunStatus.LIVE, RunStatus.SCHEDULED])
async def test_a_complete_command_completes_the_run_and_announces_it_once(
    status: RunStatus,
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(status, version=5)
    body = command(
        account_id=run.account_id,
        project_id=run.project_id,
        target_group_id=run.target_group_id,
        fielding_run_id=run.id,
        if_match='W/"5"',
    )
    headers = [
        *auth_headers([run.account_id]),
        ("traceparent", TRACEPARENT),
        ("tracestate", b"v=1"),
    ]
    await workers.start(settings)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [Outgoing(encode(body), run.id.encode(), headers)],
    )

    [result_record] = await outputs.results.read(at_least=1)
    [event_record] = await outputs.events.read(at_least=1)

    result = outputs.results.values()[0]
    assert result["status"] == 204 and result["etag"] == 'W/"6"' and result["error"] is None
    assert result["command_id"] == body["command_id"] and result["fielding_run_id"] == run.id
    assert result_record.key == run.id.encode()
    result_headers = dict(result_record.headers)
    assert result_headers["traceparent"].decode().split("-")[1] == TRACE_ID
    assert result_headers["traceparent"] != TRACEPARENT
    assert result_headers["tracestate"] == b"v=1"

    event = outputs.events.values()[0]
    assert event_record.key == run.target_group_id.encode()
    assert event["type"] == "target_group_closed" and event["previous_status"] == status.value
    assert event["fielding_run_version"] == 6 and event["command_id"] == body["command_id"]
    assert dict(event_record.headers)["traceparent"].decode().split("-")[1] == TRACE_ID

    stored = await get_run(pool, run.id)
    assert stored is not None
    assert (stored.status, stored.version, stored.last_changed_by) == (RunStatus.COMPLETED, 6, USER)

    lag = await group_lag(
        settings.kafka_bootstrap_servers, settings.consumer_group, settings.commands_topic
    )
    assert sum(p.lag for p in lag) == 0 and sum(p.committed or 0 for p in lag) == 1


async def test_many_commands_over_all_partitions_each_get_one_result(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    runs = [await make_run(RunStatus.LIVE) for _ in range(60)]
    commands = [
        command(
            account_id=r.account_id,
            project_id=r.project_id,
            target_group_id=r.target_group_id,
            fielding_run_id=r.id,
            if_match='W/"1"',
        )
        for r in runs
    ]
    await workers.start(settings)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [Outgoing(encode(c), c["fielding_run_id"].encode(), auth_headers([101])) for c in commands],
    )
    await outputs.results.read(at_least=60)
    await outputs.events.read(at_least=60)
    assert sorted(r["command_id"] for r in outputs.results.values()) == sorted(
        c["command_id"] for c in commands
    )
    assert {r["status"] for r in outputs.results.values()} == {204}
    assert len({e["event_id"] for e in outputs.events.values()}) == 60
