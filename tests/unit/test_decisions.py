"""The rules that decide a complete command (the order of 404, 412, 422)."""

from __future__ import annotations

import pytest

from fielding_statemachine.decisions import Completed, Refusal, RunKey, RunState, decide_complete
from fielding_statemachine.status import RunStatus

KEY = RunKey(
    101, "01BTGNYV6HRNK8K8VKZASZCFP0", "01BTGNYV6HRNK8K8VKZASZCFP1", "01BTGNYV6HRNK8K8VKZASZCFP2"
)


def run(status: RunStatus, version: int = 5, key: RunKey = KEY) -> RunState:
    return RunState(key=key, status=status, version=version)


@pytest.mark.parametrize("status", [RunStatus.LIVE, RunStatus.SCHEDULED])
def test_a_live_or_scheduled_run_is_completed_with_the_next_version(status: RunStatus) -> None:
    decision = decide_complete(run(status), KEY, expected_version=5)
    assert decision == Completed(previous_status=status, run=run(RunStatus.COMPLETED, version=6))


@pytest.mark.parametrize("status", [RunStatus.PAUSED, RunStatus.COMPLETED])
def test_a_paused_or_completed_run_is_an_invalid_state(status: RunStatus) -> None:
    assert decide_complete(run(status), KEY, expected_version=5) is Refusal.INVALID_STATE


def test_a_stale_version_is_412_even_when_the_state_is_also_wrong() -> None:
    assert (
        decide_complete(run(RunStatus.PAUSED), KEY, expected_version=4) is Refusal.VERSION_MISMATCH
    )
    assert decide_complete(run(RunStatus.LIVE), KEY, expected_version=6) is Refusal.VERSION_MISMATCH


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
    assert (
        decide_complete(run(RunStatus.LIVE, key=other), KEY, expected_version=5)
        is Refusal.NOT_FOUND
    )


def test_a_missing_run_is_not_found() -> None:
    assert decide_complete(None, KEY, expected_version=5) is Refusal.NOT_FOUND
