"""The statuses a fielding run can be in."""

from enum import StrEnum


class RunStatus(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    PAUSED = "paused"
    COMPLETED = "completed"
