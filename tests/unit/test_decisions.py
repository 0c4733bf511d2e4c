"""The rules that are not transitions: the order of 404, 412, 422; the times (resume and
relaunch before the end, launch-now keeping the duration, timers not early, runs from drafts);
bulk leniency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fielding_statemachine.decisions import (
    CLOCK_SKEW,
    Change,
    Refusal,
    RunKey,
    RunState,
    TimeFault,
    Unchanged,
    creation_time_faults,
    decide,
    decide_bulk_item,
    decide_creation,
    launched_now,
)
from fielding_statemachine.status import RunStatus
from fielding_statemachine.transitions import RunEvent

KEY = RunKey(
    101, "01BTGNYV6HRNK8K8VKZASZCFP0", "01BTGNYV6HRNK8K8VKZASZCFP1", "01BTGNYV6HRNK8K8VKZASZCFP2"
)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
S, E = RunStatus, RunEvent


def run(
    status: RunStatus,
    version: int = 5,
    key: RunKey = KEY,
    start: datetime | None = NOW - HOUR,
    end: datetime | None = NOW + 10 * HOUR,
) -> RunState:
    return RunState(key, status, version, start, end)


@pytest.mark.parametrize("status", [S.LIVE, S.SCHEDULED])
def test_a_live_or_scheduled_run_is_completed_with_the_next_version(status: RunStatus) -> None:
    before = run(status)
    decision = decide(before, KEY, 5, E.COMPLETE, NOW)
    assert decision == Change(E.COMPLETE, before, run(S.COMPLETED, version=6))


@pytest.mark.parametrize("status", [S.PAUSED, S.COMPLETED])
def test_a_paused_or_completed_run_cannot_be_completed(status: RunStatus) -> None:
    assert decide(run(status), KEY, 5, E.COMPLETE, NOW) is Refusal.INVALID_STATE


def test_a_stale_version_is_refused_even_when_the_state_is_also_wrong() -> None:
    assert decide(run(S.PAUSED), KEY, 4, E.COMPLETE, NOW) is Refusal.VERSION_MISMATCH
    assert decide(run(S.LIVE), KEY, 6, E.COMPLETE, NOW) is Refusal.VERSION_MISMATCH


@pytest.mark.parametrize(
    "other",
    [
        RunKey(102, KEY.project_id, KEY.target_group_id, KEY.fielding_run_id),
        RunKey(
            KEY.account_id, "01BTGNYV6HRNK8K8VKZASZCFP9", KEY.target_group_id, KEY.fielding_run_id
        ),
        RunKey(KEY.account_id, KEY.project_id, "01BTGNYV6HRNK8K8VKZASZCFP9", KEY.fielding_run_id),
    ],
    ids=["other account", "other project", "other target group"],
)
def test_a_run_under_other_ids_is_not_found(other: RunKey) -> None:
    assert decide(run(S.LIVE, key=other), KEY, 5, E.PAUSE, NOW) is Refusal.NOT_FOUND
    assert decide(None, KEY, 5, E.PAUSE, NOW) is Refusal.NOT_FOUND


@pytest.mark.parametrize(("status", "event"), [(S.PAUSED, E.RESUME), (S.COMPLETED, E.RELAUNCH)])
def test_resume_and_relaunch_only_while_the_end_time_is_in_the_future(
    status: RunStatus, event: RunEvent
) -> None:
    assert isinstance(decide(run(status, end=NOW + HOUR), KEY, 5, event, NOW), Change)
    assert decide(run(status, end=NOW), KEY, 5, event, NOW) is Refusal.END_TIME_PASSED
    assert decide(run(status, end=NOW - HOUR), KEY, 5, event, NOW) is Refusal.END_TIME_PASSED
    assert isinstance(decide(run(status, end=None), KEY, 5, event, NOW), Change)


def test_launch_now_starts_now_and_keeps_the_duration() -> None:
    before = run(S.SCHEDULED, start=NOW + 24 * HOUR, end=NOW + 72 * HOUR)
    decision = decide(before, KEY, 5, E.LAUNCH_NOW, NOW)
    assert isinstance(decision, Change)
    after = decision.after
    assert (after.status, after.start_fielding_at, after.end_fielding_at) == (
        S.LIVE,
        NOW,
        NOW + 48 * HOUR,
    )
    assert launched_now(None, NOW + HOUR, NOW) == (NOW, NOW + HOUR)


def test_an_update_changes_the_times_and_not_the_status() -> None:
    times = (NOW + HOUR, NOW + 2 * HOUR)
    decision = decide(run(S.PAUSED), KEY, 5, E.UPDATE_TIMES, NOW, times)
    assert isinstance(decision, Change)
    assert (decision.after.status, decision.after.version) == (S.PAUSED, 6)
    assert (decision.after.start_fielding_at, decision.after.end_fielding_at) == times
    assert decide(run(S.COMPLETED), KEY, 5, E.UPDATE_TIMES, NOW, times) is Refusal.INVALID_STATE


def test_timers_apply_once_their_time_is_reached_and_never_early() -> None:
    due = run(S.SCHEDULED, start=NOW - timedelta(seconds=1))
    assert isinstance(decide(due, KEY, 5, E.START_TIME_REACHED, NOW), Change)
    early = run(S.SCHEDULED, start=NOW + CLOCK_SKEW + timedelta(seconds=1))
    assert decide(early, KEY, 5, E.START_TIME_REACHED, NOW) is Refusal.NOT_DUE
    for status in (S.LIVE, S.PAUSED):
        ended = run(status, end=NOW)
        decision = decide(ended, KEY, 5, E.END_TIME_REACHED, NOW)
        assert isinstance(decision, Change) and decision.after.status is S.COMPLETED
        assert (
            decide(run(status, end=NOW + HOUR), KEY, 5, E.END_TIME_REACHED, NOW) is Refusal.NOT_DUE
        )
    assert decide(run(S.LIVE, end=None), KEY, 5, E.END_TIME_REACHED, NOW) is Refusal.NOT_DUE


def test_a_run_from_a_draft_is_created_live_from_now_or_scheduled() -> None:
    launched = decide_creation(None, KEY, E.LAUNCH_FROM_DRAFT, NOW, None, NOW + HOUR)
    assert launched == Change(E.LAUNCH_FROM_DRAFT, None, RunState(KEY, S.LIVE, 1, NOW, NOW + HOUR))
    scheduled = decide_creation(None, KEY, E.SCHEDULE_FROM_DRAFT, NOW, NOW + HOUR, NOW + 2 * HOUR)
    assert isinstance(scheduled, Change) and scheduled.after.status is S.SCHEDULED


def test_the_times_of_a_run_from_a_draft_name_each_rule_they_break() -> None:
    assert creation_time_faults(NOW + HOUR, NOW + 2 * HOUR, NOW) == []
    assert creation_time_faults(NOW - CLOCK_SKEW, NOW + HOUR, NOW) == []  # within the skew
    assert creation_time_faults(NOW - HOUR, NOW + HOUR, NOW) == [TimeFault.START_IN_THE_PAST]
    assert creation_time_faults(NOW + HOUR, NOW + HOUR, NOW) == [TimeFault.END_NOT_AFTER_START]
    assert creation_time_faults(NOW - HOUR, NOW - 2 * HOUR, NOW) == [
        TimeFault.START_IN_THE_PAST,
        TimeFault.END_NOT_AFTER_START,
    ]
    refused = decide_creation(None, KEY, E.SCHEDULE_FROM_DRAFT, NOW, NOW - HOUR, NOW + HOUR)
    assert refused is Refusal.INVALID_TIMES


def test_a_target_group_with_a_run_gets_no_second_one() -> None:
    assert (
        decide_creation(run(S.COMPLETED), KEY, E.LAUNCH_FROM_DRAFT, NOW, None, NOW + HOUR)
        is Refusal.ALREADY_HAS_RUN
    )


def test_another_accounts_target_group_is_not_found_rather_than_shown_to_exist() -> None:
    theirs = run(S.LIVE, key=RunKey(999, KEY.project_id, KEY.target_group_id, "X" * 26))
    assert (
        decide_creation(theirs, KEY, E.LAUNCH_FROM_DRAFT, NOW, None, NOW + HOUR)
        is Refusal.NOT_FOUND
    )


@pytest.mark.parametrize(
    ("event", "start", "end"),
    [
        (E.LAUNCH_FROM_DRAFT, None, NOW - HOUR),
        (E.SCHEDULE_FROM_DRAFT, NOW - HOUR, NOW + HOUR),
        (E.SCHEDULE_FROM_DRAFT, NOW + 2 * HOUR, NOW + HOUR),
    ],
    ids=["launch ending in the past", "schedule starting in the past", "end before start"],
)
def test_a_run_from_a_draft_needs_times_that_can_be(
    event: RunEvent, start: datetime | None, end: datetime
) -> None:
    assert decide_creation(None, KEY, event, NOW, start, end) is Refusal.INVALID_TIMES


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (E.COMPLETE, S.COMPLETED),
        (E.LAUNCH_NOW, S.LIVE),
        (E.PAUSE, S.PAUSED),
        (E.RESUME, S.LIVE),
        (E.RELAUNCH, S.LIVE),
    ],
)
def test_bulk_is_lenient_a_run_already_there_counts_as_updated(
    event: RunEvent, status: RunStatus
) -> None:
    already = run(status)
    assert decide_bulk_item(already, KEY.account_id, KEY.project_id, event, NOW) == Unchanged(
        already
    )


def test_bulk_items_at_their_current_version_and_under_their_project() -> None:
    live = run(S.LIVE, version=9)
    decision = decide_bulk_item(live, KEY.account_id, KEY.project_id, E.PAUSE, NOW)
    assert isinstance(decision, Change) and decision.after.version == 10
    other_project = "01BTGNYV6HRNK8K8VKZASZCFP9"
    assert decide_bulk_item(live, KEY.account_id, other_project, E.PAUSE, NOW) is Refusal.NOT_FOUND
    assert decide_bulk_item(None, KEY.account_id, KEY.project_id, E.PAUSE, NOW) is Refusal.NOT_FOUND
    assert (
        decide_bulk_item(run(S.SCHEDULED), KEY.account_id, KEY.project_id, E.PAUSE, NOW)
        is Refusal.INVALID_STATE
    )
    assert (
        decide_bulk_item(
            run(S.COMPLETED, end=NOW - HOUR), KEY.account_id, KEY.project_id, E.RELAUNCH, NOW
        )
        is Refusal.END_TIME_PASSED
    )
