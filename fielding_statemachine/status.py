"""The statuses a fielding run can be in."""

from enum import StrEnum
from typing import Final


class RunStatus(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    PAUSED = "paused"
    COMPLETED = "completed"


# Not a status a run has: where the machine starts, a target group with no fielding run yet
# (its draft). Runs are created from it by the draft jobs.
DRAFT: Final = "draft"
