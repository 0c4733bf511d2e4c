"""The rules that turn a command and a fielding run into an outcome. Pure: no I/O.

Which transitions exist is the machine's to say (`transitions.py`); the rules here are the
ones that are not transitions: which run a command addresses, the order of the checks (a
missing run, then a stale version, then the state), the times (the end must be in the future
to resume or relaunch; launching now keeps the run's duration; a timer is not early), and
the leniency of bulk jobs. A refusal says why; the service layer picks the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from fielding_statemachine.status import RunStatus
from fielding_statemachine.transitions import TARGETS, RunEvent, next_status

# A timer may arrive this much before its time (clocks of replicas and database differ).
CLOCK_SKEW = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class RunKey:
    """Where the public API finds a run: all four ids must match."""

    account_id: int
    project_id: str
    target_group_id: str
    fielding_run_id: str


@dataclass(frozen=True, slots=True)
class RunState:
    key: RunKey
    status: RunStatus
    version: int
    start_fielding_at: datetime | None = None
    end_fielding_at: datetime | None = None


class Refusal(Enum):
    NOT_FOUND = "not_found"  # no such run under these ids
    VERSION_MISMATCH = "version_mismatch"  # If-Match is not the current version
    INVALID_STATE = "invalid_state"  # the machine has no such transition from here
    END_TIME_PASSED = "end_time_passed"  # resume or relaunch after the run's end time
    NOT_DUE = "not_due"  # a timer before its time
    ALREADY_HAS_RUN = "already_has_run"  # a draft job for a target group that has a run
    INVALID_TIMES = "invalid_times"  # a run from a draft starting in the past or ending first


class TimeFault(Enum):
    """A rule the times of a run created from a draft break (each one a job's failure names)."""

    START_IN_THE_PAST = "start_in_the_past"
    END_NOT_AFTER_START = "end_not_after_start"


@dataclass(frozen=True, slots=True)
class Change:
    """A run changed (or created: `before` is None) by `event`."""

    event: RunEvent
    before: RunState | None
    after: RunState


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A bulk job's run already in the status the operation leads to: it counts as updated."""

    run: RunState


Decision = Change | Refusal


def decide(
    run: RunState | None,
    key: RunKey,
    expected_version: int,
    event: RunEvent,
    now: datetime,
    times: tuple[datetime, datetime] | None = None,
) -> Decision:
    """Decides a command addressed to one run at one version: a lifecycle operation, a timer,
    or (`times` given) an update of its times.

    The order is the public API's: a missing run is not found; a stale version is refused
    even when the state is also wrong; only then does the machine say whether the event is
    allowed, and then the time rules."""
    if run is None or run.key != key:
        return Refusal.NOT_FOUND
    if run.version != expected_version:
        return Refusal.VERSION_MISMATCH
    return _apply(run, event, now, times)


def _apply(
    run: RunState, event: RunEvent, now: datetime, times: tuple[datetime, datetime] | None = None
) -> Decision:
    target = next_status(run.status, event)
    if target is None:
        return Refusal.INVALID_STATE
    start, end = run.start_fielding_at, run.end_fielding_at
    if event in (RunEvent.RESUME, RunEvent.RELAUNCH) and end is not None and end <= now:
        return Refusal.END_TIME_PASSED
    if event is RunEvent.START_TIME_REACHED and (start is None or start > now + CLOCK_SKEW):
        return Refusal.NOT_DUE
    if event is RunEvent.END_TIME_REACHED and (end is None or end > now + CLOCK_SKEW):
        return Refusal.NOT_DUE
    if event is RunEvent.LAUNCH_NOW:
        start, end = launched_now(start, end, now)
    if event is RunEvent.UPDATE_TIMES:
        assert times is not None
        start, end = times
    # Made directly rather than by dataclasses.replace, which is slower, on every command.
    return Change(event, run, RunState(run.key, target, run.version + 1, start, end))


def launched_now(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime | None]:
    """A run launched now starts now and keeps its duration: its end moves as far as its
    start did. A run with no start keeps its end."""
    if start is None or end is None:
        return now, end
    return now, end + (now - start)


def decide_creation(
    existing: RunState | None,
    key: RunKey,
    event: RunEvent,
    now: datetime,
    start: datetime | None,
    end: datetime,
) -> Decision:
    """A run created from the target group's draft: live from now (`launch_from_draft`) or
    scheduled from `start` (`schedule_from_draft`). A target group has one run at most."""
    if existing is not None:
        mine = (existing.key.account_id, existing.key.project_id) == (
            key.account_id,
            key.project_id,
        )
        # Another account's target group is not found, as the public API would say; that it
        # exists is not this account's to learn.
        return Refusal.ALREADY_HAS_RUN if mine else Refusal.NOT_FOUND
    target = next_status(None, event)
    assert target is not None, f"{event} does not create a run"
    begins = now if target is RunStatus.LIVE else start
    if begins is None or creation_time_faults(begins, end, now):
        return Refusal.INVALID_TIMES
    return Change(event, None, RunState(key, target, 1, begins, end))


def creation_time_faults(begins: datetime, end: datetime, now: datetime) -> list[TimeFault]:
    """What is wrong with the times of a run created from a draft, beginning at `begins` (now,
    for one launched at once): nothing, or each rule broken."""
    faults = []
    if begins < now - CLOCK_SKEW:
        faults.append(TimeFault.START_IN_THE_PAST)
    if end <= begins:
        faults.append(TimeFault.END_NOT_AFTER_START)
    return faults


def decide_bulk_item(
    run: RunState | None, account_id: int, project_id: str, event: RunEvent, now: datetime
) -> Decision | Unchanged:
    """One target group of a bulk job, at its run's current version. Lenient as the public
    API's bulk jobs: a run already where the operation leads counts as updated."""
    if run is None or (run.key.account_id, run.key.project_id) != (account_id, project_id):
        return Refusal.NOT_FOUND
    if run.status in TARGETS[event]:
        return Unchanged(run)
    return _apply(run, event, now)
