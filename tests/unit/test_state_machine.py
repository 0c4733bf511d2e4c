"""The fielding-run machine: every (state, event) pair, and the table compiled from it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from statemachine.contrib.diagram import MermaidGraphMachine
from statemachine.exceptions import TransitionNotAllowed

from fielding_statemachine.machine import FieldingRunMachine
from fielding_statemachine.status import DRAFT, RunStatus
from fielding_statemachine.transitions import TRANSITIONS, RunEvent, next_status

S, E = RunStatus, RunEvent
# The public API's lifecycle, as the contract states it (None: the target group's draft, no
# run yet). Every other pair is not allowed.
LIFECYCLE = {
    (None, E.LAUNCH_FROM_DRAFT): S.LIVE,
    (None, E.SCHEDULE_FROM_DRAFT): S.SCHEDULED,
    (S.SCHEDULED, E.LAUNCH_NOW): S.LIVE,
    (S.SCHEDULED, E.START_TIME_REACHED): S.LIVE,
    (S.LIVE, E.PAUSE): S.PAUSED,
    (S.PAUSED, E.RESUME): S.LIVE,
    (S.COMPLETED, E.RELAUNCH): S.LIVE,
    (S.LIVE, E.COMPLETE): S.COMPLETED,
    (S.SCHEDULED, E.COMPLETE): S.COMPLETED,
    (S.LIVE, E.END_TIME_REACHED): S.COMPLETED,
    (S.PAUSED, E.END_TIME_REACHED): S.COMPLETED,
    # Times change in every state but completed; the status stays.
    (S.SCHEDULED, E.UPDATE_TIMES): S.SCHEDULED,
    (S.LIVE, E.UPDATE_TIMES): S.LIVE,
    (S.PAUSED, E.UPDATE_TIMES): S.PAUSED,
}
STATES: list[RunStatus | None] = [None, *RunStatus]
ALL_PAIRS = list(itertools.product(STATES, RunEvent))


def machine_in(state: RunStatus | None) -> FieldingRunMachine:
    return FieldingRunMachine(start_value=DRAFT if state is None else state)


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_the_machine_follows_the_public_lifecycle(state: RunStatus | None, event: RunEvent) -> None:
    machine = machine_in(state)
    expected = LIFECYCLE.get((state, event))
    if expected is None:
        with pytest.raises(TransitionNotAllowed):
            machine.send(event.value)
        assert machine.current_state_value == (DRAFT if state is None else state)
    else:
        machine.send(event.value)
        assert machine.current_state_value == expected


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_the_compiled_table_agrees_with_the_machine(
    state: RunStatus | None, event: RunEvent
) -> None:
    machine = machine_in(state)
    try:
        machine.send(event.value)
        reached: RunStatus | None = RunStatus(machine.current_state_value)
    except TransitionNotAllowed:
        reached = None
    assert next_status(state, event) == reached


def test_the_table_has_exactly_the_machines_events_and_states() -> None:
    assert {e.id for e in FieldingRunMachine.events} == {e.value for e in RunEvent}
    assert {s.value for s in FieldingRunMachine.states} == {DRAFT, *RunStatus}
    assert len(TRANSITIONS) == len(LIFECYCLE)


def test_the_readme_diagram_is_generated_from_the_declaration() -> None:
    diagram = MermaidGraphMachine(FieldingRunMachine)().strip()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"```mermaid\n{diagram}\n```" in readme, (
        "README's diagram is stale; regenerate it with\n"
        "python -m statemachine.contrib.diagram fielding_statemachine.machine.FieldingRunMachine - "
        "--format mermaid"
    )
