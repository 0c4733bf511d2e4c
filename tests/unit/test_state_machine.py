"""The fielding-run machine: every (status, event) pair, and the table compiled from it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from statemachine.contrib.diagram import MermaidGraphMachine
from statemachine.exceptions import TransitionNotAllowed

from fielding_statemachine.machine import FieldingRunMachine
from fielding_statemachine.status import RunStatus
from fielding_statemachine.transitions import TRANSITIONS, RunEvent, next_status

S, E = RunStatus, RunEvent
# The public API's lifecycle, as the contract states it. Every other pair is not allowed.
LIFECYCLE = {
    (S.SCHEDULED, E.LAUNCH_NOW): S.LIVE,
    (S.LIVE, E.PAUSE): S.PAUSED,
    (S.PAUSED, E.RESUME): S.LIVE,
    (S.COMPLETED, E.RELAUNCH): S.LIVE,
    (S.LIVE, E.COMPLETE): S.COMPLETED,
    (S.SCHEDULED, E.COMPLETE): S.COMPLETED,
}
ALL_PAIRS = list(itertools.product(RunStatus, RunEvent))


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_the_machine_follows_the_public_lifecycle(status: RunStatus, event: RunEvent) -> None:
    machine = FieldingRunMachine(start_value=status)
    expected = LIFECYCLE.get((status, event))
    if expected is None:
        with pytest.raises(TransitionNotAllowed):
            machine.send(event.value)
        assert machine.current_state_value == status
    else:
        machine.send(event.value)
        assert machine.current_state_value == expected


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_the_compiled_table_agrees_with_the_machine(status: RunStatus, event: RunEvent) -> None:
    machine = FieldingRunMachine(start_value=status)
    try:
        machine.send(event.value)
        reached: RunStatus | None = machine.current_state_value
    except TransitionNotAllowed:
        reached = None
    assert next_status(status, event) == reached


def test_the_table_has_exactly_the_machines_events_and_states() -> None:
    assert {e.id for e in FieldingRunMachine.events} == {e.value for e in RunEvent}
    assert {s.value for s in FieldingRunMachine.states} == set(RunStatus)
    assert len(TRANSITIONS) == len(LIFECYCLE)


def test_the_readme_diagram_is_generated_from_the_declaration() -> None:
    diagram = MermaidGraphMachine(FieldingRunMachine)().strip()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"```mermaid\n{diagram}\n```" in readme, (
        "README's diagram is stale; regenerate it with\n"
        "python -m statemachine.contrib.diagram fielding_statemachine.machine.FieldingRunMachine - "
        "--format mermaid"
    )
