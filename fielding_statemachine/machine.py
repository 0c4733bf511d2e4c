"""The fielding-run lifecycle, declared once.

This declaration is the single source of truth for which transitions exist, including the
time-driven ones and creation from a draft. The hot path does not call it per command:
`transitions.py` compiles it into a lookup table at import.
"""

from statemachine import State, StateMachine

from fielding_statemachine.status import DRAFT, RunStatus


class FieldingRunMachine(StateMachine):
    """Lifecycle of one fielding run, as the public API exposes it.

    `StateMachine` (not `StateChart`) on purpose: an event with no transition from the
    current state raises `TransitionNotAllowed` instead of being silently ignored.
    `update_times` changes a run's times and not its status; declaring it as a transition of
    a state to itself keeps "a completed run's times cannot change" here too.
    """

    draft = State(value=DRAFT, initial=True)
    scheduled = State(value=RunStatus.SCHEDULED)
    live = State(value=RunStatus.LIVE)
    paused = State(value=RunStatus.PAUSED)
    completed = State(value=RunStatus.COMPLETED)

    launch_from_draft = draft.to(live)
    schedule_from_draft = draft.to(scheduled)
    launch_now = scheduled.to(live)
    start_time_reached = scheduled.to(live)
    pause = live.to(paused)
    resume = paused.to(live)
    relaunch = completed.to(live)
    complete = live.to(completed) | scheduled.to(completed)
    end_time_reached = live.to(completed) | paused.to(completed)
    update_times = (
        scheduled.to(scheduled, internal=True)
        | live.to(live, internal=True)
        | paused.to(paused, internal=True)
    )
