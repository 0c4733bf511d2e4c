"""The fielding-run lifecycle, declared once.

This declaration is the single source of truth for which transitions exist. The hot path
does not call it per command: `transitions.py` compiles it into a lookup table at import.
"""

from statemachine import State, StateMachine

from fielding_statemachine.status import RunStatus


class FieldingRunMachine(StateMachine):
    """Lifecycle of one fielding run, as the public API exposes it.

    `StateMachine` (not `StateChart`) on purpose: an event with no transition from the
    current state raises `TransitionNotAllowed` instead of being silently ignored.
    """

    scheduled = State(value=RunStatus.SCHEDULED, initial=True)
    live = State(value=RunStatus.LIVE)
    paused = State(value=RunStatus.PAUSED)
    completed = State(value=RunStatus.COMPLETED)

    launch_now = scheduled.to(live)
    pause = live.to(paused)
    resume = paused.to(live)
    relaunch = completed.to(live)
    complete = live.to(completed) | scheduled.to(completed)
