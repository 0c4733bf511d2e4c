"""The catalogue of command types against the schemas, the machine and the contract's tables:
a type the worker parses has an entry, and each entry says what the contract says."""

from __future__ import annotations

import pytest

from fielding_statemachine.transitions import TARGETS
from schemas.command import COMMAND_MODELS, COMMAND_TYPES
from schemas.result import Status
from worker.service.catalogue import CATALOGUE, SEND_NAMES, SYSTEM_COMMAND_TYPES, Family

# The contract's "Lifecycle commands", "Time-driven transitions" and "Jobs": the success status.
SUCCESS = {
    "complete_fielding_run": 204,
    "launch_now_fielding_run": 200,
    "pause_fielding_run": 204,
    "resume_fielding_run": 204,
    "relaunch_fielding_run": 204,
    "update_fielding_run": 202,
    "start_scheduled_fielding_run": 204,
    "end_fielding_run": 204,
    "launch_fielding_run_from_draft": 201,
    "schedule_fielding_run_from_draft": 201,
    **{
        f"{action}_fielding_runs_by_target_group_ids": 201
        for action in ("complete", "launch", "pause", "resume", "relaunch")
    },
}


def test_every_command_type_of_the_schemas_has_one_entry() -> None:
    assert set(CATALOGUE) == COMMAND_TYPES
    assert {entry.model for entry in CATALOGUE.values()} == set(COMMAND_MODELS)


@pytest.mark.parametrize("kind", sorted(COMMAND_TYPES))
def test_each_type_succeeds_with_the_contracts_status(kind: str) -> None:
    assert CATALOGUE[kind].success == SUCCESS[kind]


@pytest.mark.parametrize("kind", sorted(COMMAND_TYPES))
def test_each_type_sends_an_event_the_machine_has(kind: str) -> None:
    assert TARGETS[CATALOGUE[kind].event], f"{kind}: the machine has no such transition"


def test_only_the_timers_are_the_systems() -> None:
    assert SYSTEM_COMMAND_TYPES == {"start_scheduled_fielding_run", "end_fielding_run"}


def test_every_type_but_the_timers_can_be_sent_and_served() -> None:
    for kind, entry in CATALOGUE.items():
        public = kind not in SYSTEM_COMMAND_TYPES
        assert (entry.send is not None, entry.route is not None) == (public, public), kind
    assert len(SEND_NAMES) == len(CATALOGUE) - len(SYSTEM_COMMAND_TYPES)


def test_a_body_only_where_the_success_has_one() -> None:
    for kind, entry in CATALOGUE.items():
        has_body = entry.family is Family.RUN and entry.success not in (Status.NO_CONTENT,)
        assert (entry.body is not None) == has_body, kind
