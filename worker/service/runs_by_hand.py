"""A fielding run written by hand (`fielding-worker runs put`, and the tests' runs): the times
it gets when they are not given, so that every run has both (the public API's run requires
them). Pure: the caller gives the clock.

- start: the given end minus `DEFAULT_DURATION` when only the end is given; otherwise now, or,
  for a `scheduled` run, `SCHEDULED_LEAD` from now (a scheduled run starting now would be
  launched by its timer at once);
- end: the start plus `DEFAULT_DURATION`.

Who changed it, without `--changed-by`, is the system actor (`auth.SYSTEM_ACTOR`): no user
did.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fielding_statemachine.status import RunStatus

DEFAULT_DURATION = timedelta(days=30)
SCHEDULED_LEAD = timedelta(days=1)


def run_times(
    status: RunStatus, now: datetime, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """The run's start and end: those given, the others derived (see the module)."""
    if start is None:
        if end is not None:
            start = end - DEFAULT_DURATION
        else:
            start = now + SCHEDULED_LEAD if status is RunStatus.SCHEDULED else now
    if end is None:
        end = start + DEFAULT_DURATION
    return start, end
