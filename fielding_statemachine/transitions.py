"""The machine's transitions as a lookup table, compiled once from the declaration.

python-statemachine's `send()` is too slow to call per command (docs/decisions/compiled-table.md),
so the worker looks transitions up here instead. The table is derived
from `FieldingRunMachine` at import, never written by hand, and a unit test checks it
against the live machine for every (state, event) pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from fielding_statemachine.machine import FieldingRunMachine
from fielding_statemachine.status import DRAFT, RunStatus


class RunEvent(StrEnum):
    LAUNCH_FROM_DRAFT = "launch_from_draft"
    SCHEDULE_FROM_DRAFT = "schedule_from_draft"
    LAUNCH_NOW = "launch_now"
    START_TIME_REACHED = "start_time_reached"
    PAUSE = "pause"
    RESUME = "resume"
    RELAUNCH = "relaunch"
    COMPLETE = "complete"
    END_TIME_REACHED = "end_time_reached"
    UPDATE_TIMES = "update_times"


State = RunStatus | None  # None: the draft, a target group without a run


def _state(value: object) -> State:
    return None if value == DRAFT else RunStatus(str(value))


def compile_transitions(
    machine: type[FieldingRunMachine],
) -> Mapping[tuple[State, RunEvent], RunStatus]:
    table: dict[tuple[State, RunEvent], RunStatus] = {}
    for state in machine.states:
        for transition in state.transitions:
            target = _state(transition.target.value)
            assert target is not None  # nothing goes back to the draft
            for event in transition.events:
                table[(_state(state.value), RunEvent(event.id))] = target
    return MappingProxyType(table)


TRANSITIONS = compile_transitions(FieldingRunMachine)
# Where each event leads, whatever the state it starts from (one target per event).
TARGETS: Mapping[RunEvent, frozenset[RunStatus]] = MappingProxyType(
    {
        event: frozenset(target for (_, e), target in TRANSITIONS.items() if e is event)
        for event in RunEvent
    }
)


def next_status(status: State, event: RunEvent) -> RunStatus | None:
    """The status after `event`, or None where the machine allows no such transition."""
    return TRANSITIONS.get((status, event))
