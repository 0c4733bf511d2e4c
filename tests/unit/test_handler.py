"""Deciding batches: outcomes, idempotency, rate limits, order within a batch (in memory)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.commands import SECRET, auth_headers, command, encode
from tests.support.fakes import InMemoryStore
from worker.service.auth import TokenVerifier
from worker.service.cooperative import SLICE
from worker.service.handler import CommandHandler
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin

KEY = RunKey(
    101, "01BTGNYV6HRNK8K8VKZASZCFP0", "01BTGNYV6HRNK8K8VKZASZCFP1", "01BTGNYV6HRNK8K8VKZASZCFP2"
)


def for_run(**overrides: Any) -> dict[str, Any]:
    return command(
        account_id=KEY.account_id,
        project_id=KEY.project_id,
        target_group_id=KEY.target_group_id,
        fielding_run_id=KEY.fielding_run_id,
        **overrides,
    )


class Harness:
    def __init__(
        self, status: RunStatus = RunStatus.LIVE, version: int = 1, rate_limit: int = 0
    ) -> None:
        self.store = InMemoryStore(rate_limit=rate_limit)
        self.store.put(RunState(KEY, status, version))
        self.handler = CommandHandler(self.store, TokenVerifier(SECRET), rate_limit)
        self.offset = 0

    def record(self, body: dict[str, Any], offset: int | None = None) -> CommandRecord:
        if offset is None:
            offset = self.offset
            self.offset += 1
        return CommandRecord(
            RecordOrigin("commands", 0, offset),
            KEY.fielding_run_id.encode(),
            encode(body),
            tuple(auth_headers([101])),
            0,
        )

    async def handle(self, *records: CommandRecord) -> list[Emission]:
        return await self.handler.handle(list(records))


def results(emissions: list[Emission]) -> list[dict[str, Any]]:
    return [json.loads(e.value) for e in emissions if e.channel is Channel.RESULT]


def events(emissions: list[Emission]) -> list[dict[str, Any]]:
    return [json.loads(e.value) for e in emissions if e.channel is Channel.EVENT]


async def test_completing_a_live_run_answers_204_with_the_new_etag_and_one_event() -> None:
    h = Harness(version=5)
    body = for_run(if_match='W/"5"')
    out = await h.handle(h.record(body))
    [result] = results(out)
    assert (result["status"], result["etag"], result["error"]) == (204, 'W/"6"', None)
    [event] = events(out)
    assert event["previous_status"] == "live" and event["fielding_run_version"] == 6
    assert event["command_id"] == body["command_id"] and event["reason"] == "fielding_run_completed"
    assert h.store.runs[KEY.fielding_run_id].status is RunStatus.COMPLETED


async def test_a_repeated_command_gets_the_same_result_and_no_second_event() -> None:
    h = Harness()
    body = for_run()
    first = await h.handle(h.record(body))
    again = await h.handle(h.record(body))
    assert results(again) == results(first)
    assert events(again) == []
    assert h.store.runs[KEY.fielding_run_id].version == 2


async def test_a_redelivered_record_re_emits_its_result_and_event_byte_for_byte() -> None:
    h = Harness()
    record = h.record(for_run())
    first = await h.handle(record)
    redelivered = await h.handle(record)  # same topic, partition and offset: a crash before publish
    assert [e.value for e in redelivered] == [e.value for e in first]
    assert len(events(redelivered)) == 1


async def test_a_repeat_with_a_new_issued_at_is_the_same_command() -> None:
    h = Harness()
    body = for_run()
    await h.handle(h.record(body))
    again = await h.handle(h.record({**body, "issued_at": "2030-01-01T00:00:00.000Z"}))
    assert results(again)[0]["status"] == 204


async def test_a_reused_command_id_with_other_content_is_400() -> None:
    h = Harness()
    body = for_run()
    await h.handle(h.record(body))
    other = await h.handle(h.record({**body, "if_match": 'W/"9"'}))
    [result] = results(other)
    assert result["status"] == 400
    assert result["error"]["invalid_params"][0]["name"] == "command_id"
    assert events(other) == []


async def test_refusals_are_remembered_too() -> None:
    h = Harness(status=RunStatus.PAUSED)
    body = for_run()
    [first] = results(await h.handle(h.record(body)))
    h.store.put(RunState(KEY, RunStatus.LIVE, 1))  # the run was resumed meanwhile
    [again] = results(await h.handle(h.record(body)))
    assert first["status"] == again["status"] == 422
    assert again == first


async def test_commands_for_one_run_in_one_batch_apply_in_order() -> None:
    h = Harness()
    out = await h.handle(
        h.record(for_run(if_match='W/"1"')),
        h.record(for_run(if_match='W/"1"')),
        h.record(for_run(if_match='W/"2"')),
    )
    assert [r["status"] for r in results(out)] == [204, 412, 422]
    assert len(events(out)) == 1
    assert h.store.saves == 1


async def test_a_duplicate_within_one_batch_is_replayed_not_applied_twice() -> None:
    h = Harness()
    body = for_run()
    out = await h.handle(h.record(body), h.record(body))
    first, second = results(out)
    assert first == second and first["status"] == 204
    assert len(events(out)) == 1


async def test_over_the_rate_limit_is_429_with_retry_after_and_is_not_remembered() -> None:
    h = Harness(rate_limit=1)
    other_run = command(account_id=101)
    out = await h.handle(h.record(for_run()), h.record(other_run))
    first, second = results(out)
    assert first["status"] == 204
    assert second["status"] == 429
    assert second["error"] == {
        "object": "too_many_requests_problem_details",
        "details": second["error"]["details"],
    }
    assert second["retry_after_seconds"] >= 1
    assert (101, other_run["command_id"]) not in h.store.outcomes


async def test_a_bulk_job_costs_its_target_groups_against_the_rate_limit() -> None:
    h = Harness(rate_limit=3)
    bulk = command(
        "complete_fielding_runs_by_target_group_ids",
        account_id=101,
        target_group_ids=[new_ulid() for _ in range(5)],
    )
    out = await h.handle(h.record(bulk), h.record(for_run()))
    first, second = results(out)
    assert first["status"] != 429  # the account had quota left when it came
    assert second["status"] == 429  # the job took 5 units of 3
    assert h.store.used[101] == 5  # a refused command takes none


async def test_a_repeated_command_is_replayed_whatever_the_quota_and_counts_one_unit() -> None:
    h = Harness(rate_limit=2)
    body = for_run()
    [first] = results(await h.handle(h.record(body)))
    again, other = results(await h.handle(h.record(body), h.record(command(account_id=101))))
    assert first["status"] == again["status"] == 204
    assert other["status"] == 429  # the repeat took the second unit
    assert h.store.used[101] == 2


async def test_a_repeat_of_a_refused_command_in_the_same_batch_is_refused_too() -> None:
    h = Harness(rate_limit=1)
    await h.handle(h.record(command(account_id=101)))  # the account's one unit
    bulk = command(
        "complete_fielding_runs_by_target_group_ids",
        account_id=101,
        target_group_ids=[KEY.target_group_id],
    )
    out = await h.handle(h.record(bulk), h.record(bulk))
    assert [r["status"] for r in results(out)] == [429, 429]
    assert h.store.runs[KEY.fielding_run_id].status is RunStatus.LIVE
    assert h.store.used[101] == 1


async def test_outputs_keep_the_records_order_and_carry_trace_headers() -> None:
    h = Harness()
    unreadable = CommandRecord(RecordOrigin("commands", 0, 99), b"k", b"{oops", (), 0)
    out = await h.handle(h.record(for_run()), unreadable, h.record(command(project_id="bad")))
    assert [e.channel for e in out] == [Channel.RESULT, Channel.EVENT, Channel.DLQ, Channel.RESULT]
    dlq = out[2]
    assert dlq.value == b"{oops" and dlq.key == b"k"
    assert dict(dlq.headers)["dlq.original.offset"] == b"99"
    assert all(dict(e.headers).get("traceparent") for e in out if e.channel is not Channel.DLQ)


async def test_per_command_log_lines_only_at_debug_and_with_their_ids(caplog: Any) -> None:
    h = Harness()
    body = for_run()
    with caplog.at_level("INFO", logger="worker.service.handler"):
        await h.handle(h.record(body))
    assert caplog.records == []
    with caplog.at_level("DEBUG", logger="worker.service.handler"):
        await h.handle(h.record(for_run()))
    [line] = caplog.records
    assert (
        line.command_id and line.fielding_run_id == KEY.fielding_run_id and len(line.trace_id) == 32
    )


def test_json_logs_carry_the_extra_fields(capsys: Any) -> None:
    import logging

    from worker.observability.logs import configure_logging

    configure_logging("INFO")
    try:
        logging.getLogger("worker.test").warning(
            "hello", extra={"command_id": "c1", "trace_id": "t1"}
        )
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert (line["level"], line["message"], line["command_id"], line["trace_id"]) == (
            "WARNING",
            "hello",
            "c1",
            "t1",
        )
    finally:
        logging.getLogger().handlers.clear()


async def test_a_large_batch_lets_other_tasks_run_while_it_is_decided() -> None:
    # The other pipeline stage reads its Kafka and database replies only when it gets a turn.
    h = Harness()
    records = [h.record(for_run()) for _ in range(1000)]
    turns = 0

    async def other_stage() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_stage())
    await asyncio.sleep(0)
    before = turns
    await h.handler.handle(records)
    other.cancel()
    assert turns - before >= 2 * 1000 // SLICE - 2  # a turn per slice, in intake and in deciding
