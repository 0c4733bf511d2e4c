"""A run written by hand always gets both times: those given, the others derived; and
`runs put` refuses times out of order before it touches the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from fielding_statemachine.status import RunStatus
from worker.entrypoints.cli import main
from worker.service.runs_by_hand import DEFAULT_DURATION, SCHEDULED_LEAD, run_times

NOW = datetime(2026, 12, 6, 15, tzinfo=UTC)
DAY = timedelta(days=1)


def test_a_run_without_times_starts_now_for_thirty_days() -> None:
    for status in (RunStatus.LIVE, RunStatus.PAUSED, RunStatus.COMPLETED):
        assert run_times(status, NOW, None, None) == (NOW, NOW + DEFAULT_DURATION)
    assert DEFAULT_DURATION == 30 * DAY


def test_a_scheduled_run_without_times_starts_a_day_from_now() -> None:
    start, end = run_times(RunStatus.SCHEDULED, NOW, None, None)
    assert (start, end) == (NOW + SCHEDULED_LEAD, NOW + SCHEDULED_LEAD + DEFAULT_DURATION)
    assert start - NOW == DAY


def test_a_given_end_alone_gives_the_start_thirty_days_before_it() -> None:
    end = NOW - DAY
    assert run_times(RunStatus.COMPLETED, NOW, None, end) == (end - DEFAULT_DURATION, end)


def test_a_given_start_alone_gives_the_end_thirty_days_after_it() -> None:
    start = NOW + 3 * DAY
    assert run_times(RunStatus.SCHEDULED, NOW, start, None) == (start, start + DEFAULT_DURATION)


def test_given_times_are_kept() -> None:
    start, end = NOW - DAY, NOW + DAY
    assert run_times(RunStatus.LIVE, NOW, start, end) == (start, end)


def test_runs_put_refuses_an_end_that_is_not_after_the_start() -> None:
    result = CliRunner().invoke(
        main,
        [
            "runs",
            "put",
            "--account-id=101",
            "--project-id=01BTGNYV6HRNK8K8VKZASZCFP0",
            "--target-group-id=01BTGNYV6HRNK8K8VKZASZCFP1",
            "--id=01BTGNYV6HRNK8K8VKZASZCFP2",
            "--status=live",
            "--start-fielding-at=2030-01-02T00:00:00",
            "--end-fielding-at=2030-01-01T00:00:00",
        ],
        # No database: the refusal comes before any connection is tried.
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert result.exit_code == 2, result.output
    assert "--end-fielding-at" in result.output and "must be after the start" in result.output
