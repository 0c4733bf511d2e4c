"""Every command type against every status, as the contract's tables give them, through the
handler with an in-memory store: the status, the result's extras, the event (type, reason),
and what the store holds after. Jobs: runs from drafts, bulk changes with their leniency."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from tests.support.commands import (
    SECRET,
    SYSTEM_SECRET,
    USER,
    auth_headers,
    command,
    encode,
    system_headers,
    timer_headers,
    timer_id,
)
from tests.support.fakes import InMemoryStore
from worker.service.auth import SYSTEM_ACTOR, TokenVerifier
from worker.service.catalogue import SYSTEM_COMMAND_TYPES
from worker.service.handler import CommandHandler
from worker.service.intake import CommandRecord
from worker.service.operations import job_id_of
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY = RunKey(
    101, "01BTGNYV6HRNK8K8VKZASZCFP0", "01BTGNYV6HRNK8K8VKZASZCFP1", "01BTGNYV6HRNK8K8VKZASZCFP2"
)
S = RunStatus

# The contract's "Lifecycle commands" and "Time-driven transitions": the status each command
# gets for a run in each status (at the right version, times allowing), and the event.
EXPECTED: dict[tuple[str, RunStatus], tuple[int, str | None, str | None]] = {}
for status in RunStatus:
    for kind in (
        "complete_fielding_run",
        "launch_now_fielding_run",
        "pause_fielding_run",
        "resume_fielding_run",
        "relaunch_fielding_run",
        "update_fielding_run",
        "start_scheduled_fielding_run",
        "end_fielding_run",
    ):
        EXPECTED[(kind, status)] = (422, None, None)
EXPECTED.update(
    {
        ("complete_fielding_run", S.LIVE): (204, "target_group_closed", "fielding_run_completed"),
        ("complete_fielding_run", S.SCHEDULED): (
            204,
            "target_group_closed",
            "fielding_run_completed",
        ),
        ("launch_now_fielding_run", S.SCHEDULED): (200, "target_group_opened", "launched_now"),
        ("pause_fielding_run", S.LIVE): (204, "target_group_paused", "paused"),
        ("resume_fielding_run", S.PAUSED): (204, "target_group_opened", "resumed"),
        ("relaunch_fielding_run", S.COMPLETED): (204, "target_group_opened", "relaunched"),
        ("update_fielding_run", S.SCHEDULED): (202, "fielding_run_updated", "times_changed"),
        ("update_fielding_run", S.LIVE): (202, "fielding_run_updated", "times_changed"),
        ("update_fielding_run", S.PAUSED): (202, "fielding_run_updated", "times_changed"),
        ("start_scheduled_fielding_run", S.SCHEDULED): (
            204,
            "target_group_opened",
            "start_time_reached",
        ),
        ("end_fielding_run", S.LIVE): (204, "target_group_closed", "end_time_reached"),
        ("end_fielding_run", S.PAUSED): (204, "target_group_closed", "end_time_reached"),
    }
)


class Harness:
    def __init__(self, *runs: RunState, now: datetime = NOW) -> None:
        self.store = InMemoryStore(clock=lambda: now)
        for run in runs:
            self.store.put(run)
        verifier = TokenVerifier(SECRET, system_secret=SYSTEM_SECRET)
        self.handler = CommandHandler(self.store, verifier, 0, clock=lambda: now)
        self.offset = 0

    async def send(
        self, body: dict[str, Any], headers: list[tuple[str, bytes]] | None = None
    ) -> list[Emission]:
        self.offset += 1
        record = CommandRecord(
            RecordOrigin("commands", 0, self.offset),
            b"key",
            encode(body),
            tuple(auth_headers([101]) if headers is None else headers),
            0,
        )
        return await self.handler.handle([record])


def results(out: list[Emission]) -> list[dict[str, Any]]:
    return [json.loads(e.value or b"") for e in out if e.channel is Channel.RESULT]


def events(out: list[Emission]) -> list[dict[str, Any]]:
    return [json.loads(e.value or b"") for e in out if e.channel is Channel.EVENT]


def run_in(status: RunStatus, kind: str = "", **times: datetime | None) -> RunState:
    """A run at version 5 whose times let every rule pass: started an hour ago (a scheduled
    one starts now) and ends in ten hours, or now for the end timer."""
    start = times.get("start", NOW if status is S.SCHEDULED else NOW - HOUR)
    end = times.get("end", NOW if kind == "end_fielding_run" else NOW + 10 * HOUR)
    return RunState(KEY, status, 5, start, end)


def addressed(kind: str, **overrides: Any) -> dict[str, Any]:
    """A command of `kind` for the run at version 5 (a timer with the id the scheduler gives)."""
    fields: dict[str, Any] = {
        "account_id": KEY.account_id,
        "project_id": KEY.project_id,
        "target_group_id": KEY.target_group_id,
        "fielding_run_id": KEY.fielding_run_id,
        "if_match": 'W/"5"',
    }
    if kind == "update_fielding_run":
        fields |= {"start_fielding_at": NOW + HOUR, "end_fielding_at": NOW + 2 * HOUR}
    if kind in SYSTEM_COMMAND_TYPES:
        fields["command_id"] = timer_id(KEY.fielding_run_id, 5, kind)
    return command(kind, **{**fields, **overrides})


@pytest.mark.parametrize(("kind", "status"), sorted(EXPECTED), ids=lambda v: str(v))
async def test_every_command_in_every_status(kind: str, status: RunStatus) -> None:
    expected_status, event_type, reason = EXPECTED[(kind, status)]
    h = Harness(run_in(status, kind))
    body = addressed(kind)
    headers = timer_headers(body) if kind in SYSTEM_COMMAND_TYPES else None
    out = await h.send(body, headers)
    [result] = results(out)
    assert result["status"] == expected_status, result
    stored = h.store.runs[KEY.fielding_run_id]
    if event_type is None:
        assert result["error"]["object"] == "invalid_state_error" and events(out) == []
        assert stored.version == 5
        return
    [event] = events(out)
    assert (event["type"], event["reason"], event["fielding_run_version"]) == (
        event_type,
        reason,
        6,
    )
    assert event["previous_status"] == status.value and event["status"] == stored.status.value
    assert result["etag"] == 'W/"6"' and stored.version == 6
    expected_author = SYSTEM_ACTOR if headers else USER
    assert h.store.changed_by[KEY.fielding_run_id] == expected_author


async def test_launch_now_answers_200_with_the_new_times_keeping_the_duration() -> None:
    h = Harness(run_in(S.SCHEDULED, start=NOW + 24 * HOUR, end=NOW + 72 * HOUR))
    [result] = results(await h.send(addressed("launch_now_fielding_run")))
    assert result["status"] == 200
    assert result["body"] == {
        "start_fielding_at": "2026-11-30T12:00:00.000Z",
        "end_fielding_at": "2026-12-02T12:00:00.000Z",
    }


async def test_update_answers_202_with_the_run_id_and_refuses_times_out_of_order() -> None:
    h = Harness(run_in(S.LIVE))
    [ok] = results(await h.send(addressed("update_fielding_run")))
    assert (ok["status"], ok["body"]) == (202, {"id": KEY.fielding_run_id})
    assert h.store.runs[KEY.fielding_run_id].end_fielding_at == NOW + 2 * HOUR
    backwards = addressed(
        "update_fielding_run",
        if_match='W/"6"',
        start_fielding_at=(NOW + 3 * HOUR).isoformat(),
        end_fielding_at=(NOW + 2 * HOUR).isoformat(),
    )
    [bad] = results(await h.send(backwards))
    assert bad["status"] == 400
    assert [p["name"] for p in bad["error"]["invalid_params"]] == ["end_fielding_at"]


@pytest.mark.parametrize(
    ("kind", "status"), [("resume_fielding_run", S.PAUSED), ("relaunch_fielding_run", S.COMPLETED)]
)
async def test_resume_and_relaunch_after_the_end_time_are_422_saying_why(
    kind: str, status: RunStatus
) -> None:
    h = Harness(run_in(status, end=NOW - HOUR))
    [result] = results(await h.send(addressed(kind)))
    assert result["status"] == 422 and "end time" in result["error"]["detail"]


async def test_a_timer_from_a_users_token_is_403_and_changes_nothing() -> None:
    h = Harness(run_in(S.SCHEDULED))
    [result] = results(await h.send(addressed("start_scheduled_fielding_run")))
    assert result["status"] == 403
    assert h.store.runs[KEY.fielding_run_id].status is S.SCHEDULED


@pytest.mark.parametrize(
    "body",
    [
        addressed("complete_fielding_run"),
        addressed("end_fielding_run", command_id="timer-made-up"),
        addressed("end_fielding_run", if_match='W/"4"'),  # the id is version 5's
    ],
    ids=["a user command", "a timer id it did not derive", "another version's id"],
)
async def test_an_older_schedulers_token_sends_only_the_timers_the_scheduler_derives(
    body: dict[str, Any],
) -> None:
    h = Harness(run_in(S.LIVE, "end_fielding_run"))
    [result] = results(await h.send(body, system_headers()))
    assert result["status"] == 403
    assert h.store.runs[KEY.fielding_run_id].status is S.LIVE


async def test_a_timer_before_its_time_is_422_and_not_remembered() -> None:
    early = run_in(S.LIVE, end=NOW + HOUR)
    h = Harness(early)
    body = addressed("end_fielding_run")
    [first] = results(await h.send(body, timer_headers(body)))
    assert first["status"] == 422 and h.store.outcomes == {}
    h.store.clock = lambda: NOW + 2 * HOUR  # its time has come: the same timer now applies
    [again] = results(await h.send(body, timer_headers(body)))
    assert again["status"] == 204


# --- jobs ------------------------------------------------------------------------------------


def draft(kind: str, target_group_id: str = KEY.target_group_id, **fields: Any) -> dict[str, Any]:
    return command(
        kind,
        account_id=KEY.account_id,
        project_id=KEY.project_id,
        target_group_id=target_group_id,
        **fields,
    )


async def test_a_draft_job_creates_the_run_live_from_now() -> None:
    h = Harness()
    body = draft("launch_fielding_run_from_draft", end_fielding_at=(NOW + HOUR).isoformat())
    out = await h.send(body)
    [result] = results(out)
    job = result["body"]["job"]
    assert (result["status"], job["status"]) == (201, "Completed")
    # What has no value is left out: the public API's document does not let it be null.
    assert "failure_reason" not in job and "job_trace_id" not in job
    assert job["job_id"] == job_id_of(KEY.account_id, body["command_id"])
    created = h.store.runs[job["created_fielding_run_id"]]
    assert (created.status, created.version, created.start_fielding_at) == (S.LIVE, 1, NOW)
    [event] = events(out)
    assert (event["type"], event["reason"], event["previous_status"]) == (
        "target_group_opened",
        "launched_from_draft",
        None,
    )
    assert h.store.jobs[job["job_id"]].body == json.dumps(job, separators=(",", ":")).encode()


async def test_a_draft_job_schedules_the_run_with_an_updated_event() -> None:
    h = Harness()
    out = await h.send(
        draft(
            "schedule_fielding_run_from_draft",
            start_fielding_at=(NOW + HOUR).isoformat(),
            end_fielding_at=(NOW + 2 * HOUR).isoformat(),
        )
    )
    [event] = events(out)
    assert (event["type"], event["reason"], event["status"]) == (
        "fielding_run_updated",
        "scheduled_from_draft",
        "scheduled",
    )


async def test_a_second_draft_job_for_the_target_group_fails_and_changes_nothing() -> None:
    h = Harness(run_in(S.LIVE))
    out = await h.send(
        draft("launch_fielding_run_from_draft", end_fielding_at=(NOW + HOUR).isoformat())
    )
    [result] = results(out)
    job = result["body"]["job"]
    assert (result["status"], job["status"]) == (201, "Failed")
    assert "created_fielding_run_id" not in job and job["job_trace_id"]
    assert job["failure_reason"] == {
        "code": "TargetGroupInvalidState",
        "description": "The target group is not in a draft state: it has a fielding run.",
        "reasons": [
            {
                "name": "target_group_id",
                "reason": "fielding_run_exists",
                "detail": "The target group has a fielding run: it is no longer a draft.",
            }
        ],
    }
    assert events(out) == [] and len(h.store.runs) == 1


async def test_a_draft_job_starting_in_the_past_fails_with_invalid_dates() -> None:
    h = Harness()
    [result] = results(
        await h.send(
            draft(
                "schedule_fielding_run_from_draft",
                start_fielding_at=(NOW - HOUR).isoformat(),
                end_fielding_at=(NOW + HOUR).isoformat(),
            )
        )
    )
    failure = result["body"]["job"]["failure_reason"]
    assert failure["code"] == "InvalidFieldingDates"
    assert [(r["name"], r["reason"]) for r in failure["reasons"]] == [
        ("start_fielding_at", "start_in_the_past")
    ]


async def test_a_draft_job_breaking_both_time_rules_names_each() -> None:
    h = Harness()
    [result] = results(
        await h.send(
            draft(
                "schedule_fielding_run_from_draft",
                start_fielding_at=(NOW - HOUR).isoformat(),
                end_fielding_at=(NOW - 2 * HOUR).isoformat(),
            )
        )
    )
    reasons = result["body"]["job"]["failure_reason"]["reasons"]
    assert [(r["name"], r["reason"]) for r in reasons] == [
        ("start_fielding_at", "start_in_the_past"),
        ("end_fielding_at", "end_not_after_start"),
    ]


async def test_a_launch_from_draft_ending_before_now_names_its_end() -> None:
    h = Harness()
    [result] = results(
        await h.send(
            draft("launch_fielding_run_from_draft", end_fielding_at=(NOW - HOUR).isoformat())
        )
    )
    job = result["body"]["job"]
    assert (job["status"], job["failure_reason"]["code"]) == ("Failed", "InvalidFieldingDates")
    assert [(r["name"], r["reason"]) for r in job["failure_reason"]["reasons"]] == [
        ("end_fielding_at", "end_not_after_start")
    ]


def runs_for_bulk() -> dict[str, RunState]:
    groups = {
        f"01BTGNYV6HRNK8K8VKZASZCG{n:02d}": status
        for n, status in enumerate([S.LIVE, S.LIVE, S.PAUSED, S.SCHEDULED, S.COMPLETED])
    }
    return {
        tg: RunState(
            RunKey(KEY.account_id, KEY.project_id, tg, f"01BTGNYV6HRNK8K8VKZASZCR{n:02d}"),
            status,
            3,
            NOW - HOUR,
            NOW + HOUR,
        )
        for n, (tg, status) in enumerate(groups.items())
    }


async def test_a_bulk_job_mixes_found_missing_and_wrong_state_in_one_pass() -> None:
    runs = runs_for_bulk()
    h = Harness(*runs.values())
    missing = "01BTGNYV6HRNK8K8VKZASZCG99"
    groups = [*runs, missing, next(iter(runs))]  # and a repeat of the first
    out = await h.send(
        command(
            "pause_fielding_runs_by_target_group_ids",
            account_id=101,
            project_id=KEY.project_id,
            target_group_ids=groups,
        )
    )
    [result] = results(out)
    job = result["body"]["job"]
    assert (result["status"], job["status"]) == (201, "Completed")
    updated = [g["target_group_id"] for g in job["updated_target_groups"]["data"]]
    failed = {
        g["target_group_id"]: g["failure_reason"]["code"]
        for g in job["failed_target_groups"]["data"]
    }
    tgs = list(runs)
    assert updated == [tgs[0], tgs[1], tgs[2]]  # two paused now, one already paused
    assert failed == {
        tgs[3]: "StatusTransitionNotAllowed",
        tgs[4]: "StatusTransitionNotAllowed",
        missing: "TargetGroupNotFound",
    }
    assert [e["target_group_id"] for e in events(out)] == [tgs[0], tgs[1]], "one per run changed"
    assert h.store.saves == 1


async def test_a_bulk_job_of_1000_target_groups_is_one_read_and_one_write() -> None:
    runs = [
        RunState(
            RunKey(
                101,
                KEY.project_id,
                f"01BTGNYV6HRNK8K8VKZASZ{n:04d}",
                f"01BTGNYV6HRNK8K8VKZASR{n:04d}",
            ),
            S.LIVE,
            1,
            NOW - HOUR,
            NOW + HOUR,
        )
        for n in range(1000)
    ]
    h = Harness(*runs)
    out = await h.send(
        command(
            "complete_fielding_runs_by_target_group_ids",
            account_id=101,
            project_id=KEY.project_id,
            target_group_ids=[r.key.target_group_id for r in runs],
        )
    )
    assert len(events(out)) == 1000 and h.store.saves == 1
    assert all(r.status is S.COMPLETED for r in h.store.runs.values())


async def test_a_bulk_job_where_every_target_group_fails_is_failed() -> None:
    h = Harness()
    [result] = results(
        await h.send(
            command(
                "resume_fielding_runs_by_target_group_ids",
                account_id=101,
                project_id=KEY.project_id,
                target_group_ids=["01BTGNYV6HRNK8K8VKZASZCG99"],
            )
        )
    )
    assert result["body"]["job"]["status"] == "Failed"


async def test_repeating_a_job_returns_the_same_job_and_changes_nothing_more() -> None:
    runs = runs_for_bulk()
    h = Harness(*runs.values())
    body = command(
        "complete_fielding_runs_by_target_group_ids",
        account_id=101,
        project_id=KEY.project_id,
        target_group_ids=list(runs),
    )
    first = await h.send(body)
    again = await h.send(body)
    assert results(again) == results(first) and events(again) == []


async def test_a_redelivered_bulk_record_replays_its_result_and_every_event_byte_for_byte() -> None:
    runs = runs_for_bulk()
    h = Harness(*runs.values())
    body = command(
        "complete_fielding_runs_by_target_group_ids",
        account_id=101,
        project_id=KEY.project_id,
        target_group_ids=list(runs),
    )
    record = CommandRecord(
        RecordOrigin("commands", 3, 77), b"k", encode(body), tuple(auth_headers([101])), 0
    )
    first = await h.handler.handle([record])
    redelivered = await h.handler.handle([record])  # a crash before the Kafka commit
    assert [(e.channel, e.key, e.value) for e in redelivered] == [
        (e.channel, e.key, e.value) for e in first
    ]
    assert len(events(first)) == 3


async def test_one_batch_creating_a_run_and_changing_it_writes_it_once_as_it_ends_up() -> None:
    h = Harness()
    group = "01BTGNYV6HRNK8K8VKZASZCG77"
    create = draft(
        "launch_fielding_run_from_draft",
        target_group_id=group,
        end_fielding_at=(NOW + HOUR).isoformat(),
    )
    pause = command(
        "pause_fielding_runs_by_target_group_ids",
        account_id=101,
        project_id=KEY.project_id,
        target_group_ids=[group],
    )
    records = [
        CommandRecord(
            RecordOrigin("commands", 0, n), b"k", encode(b), tuple(auth_headers([101])), 0
        )
        for n, b in enumerate((create, pause))
    ]
    out = await h.handler.handle(records)
    assert [e["type"] for e in events(out)] == ["target_group_opened", "target_group_paused"]
    [run] = h.store.runs.values()
    assert (run.status, run.version, h.store.saves) == (S.PAUSED, 2, 1)
