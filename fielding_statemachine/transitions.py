"""The machine's transitions as a lookup table, compiled once from the declaration.

python-statemachine's `send()` costs a few hundred microseconds per call; the worker decides
thousands of commands a second, so it looks transitions up here instead. The table is derived
from `FieldingRunMachine` at import, never written by hand, and a unit test checks it
against the live machine for every (status, event) pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from fielding_statemachine.machine import FieldingRunMachine
from fielding_statemachine.status import RunStatus


class RunEvent(StrEnum):
    LAUNCH_NOW = "launch_now"
    PAUSE = "pause"
    RESUME = "resume"
    RELAUNCH = "relaunch"
    COMPLETE = "complete"


def compile_transitions(
    machine: type[FieldingRunMachine],
) -> Mapping[tuple[RunStatus, RunEvent], RunStatus]:
    table: dict[tuple[RunStatus, RunEvent], RunStatus] = {}
    for state in machine.states:
        for transition in state.transitions:
            for event in transition.events:
                table[(RunStatus(state.value), RunEvent(event.id))] = RunStatus(
                    transition.target.value
                )
    return MappingProxyType(table)


TRANSITIONS = compile_transitions(FieldingRunMachine)


def next_status(status: RunStatus, event: RunEvent) -> RunStatus | None:
    """The status after `event`, or None where the machine allows no such transition."""
    return TRANSITIONS.get((status, event))
