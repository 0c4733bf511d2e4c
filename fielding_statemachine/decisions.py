"""The rules that turn a complete command and a fielding run into an outcome. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fielding_statemachine.status import RunStatus
from fielding_statemachine.transitions import RunEvent, next_status


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


class Refusal(Enum):
    NOT_FOUND = 404
    VERSION_MISMATCH = 412
    INVALID_STATE = 422


@dataclass(frozen=True, slots=True)
class Completed:
    previous_status: RunStatus
    run: RunState


Decision = Completed | Refusal


def decide_complete(run: RunState | None, key: RunKey, expected_version: int) -> Decision:
    """Decides a complete command against the run's current state.

    The order is the public API's: a missing run is 404; a stale version is 412 even when the
    state is also wrong; only then does the machine say whether `complete` is allowed (422).
    """
    if run is None or run.key != key:
        return Refusal.NOT_FOUND
    if run.version != expected_version:
        return Refusal.VERSION_MISMATCH
    target = next_status(run.status, RunEvent.COMPLETE)
    if target is None:
        return Refusal.INVALID_STATE
    return Completed(
        previous_status=run.status,
        run=RunState(key=key, status=target, version=run.version + 1),
    )
