"""Run states (the compacted `fielding-run-states` topic), through the handler with an in-memory
store: one per change, keyed by the run, equal to what GET then shows; remembered with the
outcome, so that a redelivery publishes the state as decided and never a newer one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from tests.support.commands import SECRET, SYSTEM_SECRET, USER, auth_headers, command, encode
from tests.support.fakes import InMemoryStore
from worker.adapters.http.answers import run_item
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.bootstrap import output_channels, output_topics
from worker.service.auth import TokenVerifier
from worker.service.handler import CommandHandler
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin
from worker.settings import Settings

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY = RunKey(
    101, "01BTGNYV6HRNK8K8VKZASZCFP0", "01BTGNYV6HRNK8K8VKZASZCFP1", "01BTGNYV6HRNK8K8VKZASZCFP2"
)


class Harness:
    def __init__(self, *runs: RunState, run_states: bool = True) -> None:
        self.store = InMemoryStore(clock=lambda: NOW)
        for run in runs:
            self.store.put(run)
        self.run_states = run_states
        self.offset = 0

    @property
    def handler(self) -> CommandHandler:
        verifier = TokenVerifier(SECRET, system_secret=SYSTEM_SECRET)
        return CommandHandler(self.store, verifier, 0, lambda: NOW, run_states=self.run_states)

    def record(self, body: dict[str, Any]) -> CommandRecord:
        self.offset += 1
        return CommandRecord(
            RecordOrigin("commands", 0, self.offset),
            KEY.fielding_run_id.encode(),
            encode(body),
            tuple(auth_headers([101])),
            0,
        )

    async def handle(self, *records: CommandRecord) -> list[Emission]:
        return await self.handler.handle(list(records))

    def as_get_shows(self, run_id: str) -> dict[str, Any]:
        """The run as the store holds it, through serve's GET, with its ids."""
        run = self.store.runs[run_id]
        record = FieldingRunRecord(
            run.key.account_id,
            run.key.project_id,
            run.key.target_group_id,
            run_id,
            run.status,
            run.version,
            run.start_fielding_at,
            run.end_fielding_at,
            self.store.changed_at[run_id],
            self.store.changed_by[run_id],
        )
        shown: dict[str, Any] = run_item(record).model_dump(mode="json")
        return shown | {
            "account_id": run.key.account_id,
            "project_id": run.key.project_id,
            "target_group_id": run.key.target_group_id,
        }


def states(out: list[Emission]) -> list[Emission]:
    return [e for e in out if e.channel is Channel.STATE]


def values(out: list[Emission]) -> list[dict[str, Any]]:
    return [json.loads(e.value or b"") for e in states(out)]


def to_run(kind: str, version: int, key: RunKey = KEY, **fields: Any) -> dict[str, Any]:
    return command(
        kind,
        account_id=key.account_id,
        project_id=key.project_id,
        target_group_id=key.target_group_id,
        fielding_run_id=key.fielding_run_id,
        if_match=f'W/"{version}"',
        **fields,
    )


def live(key: RunKey = KEY, version: int = 5) -> RunState:
    return RunState(key, RunStatus.LIVE, version, NOW - HOUR, NOW + 10 * HOUR)


async def test_a_change_publishes_one_state_keyed_by_the_run_equal_to_what_get_shows() -> None:
    h = Harness(live())
    out = await h.handle(h.record(to_run("pause_fielding_run", 5)))
    [state] = states(out)
    assert state.key == KEY.fielding_run_id.encode()
    assert json.loads(state.value or b"") == h.as_get_shows(KEY.fielding_run_id)
    assert json.loads(state.value or b"")["status"] == "paused"
    assert json.loads(state.value or b"")["last_changed_by"] == str(USER)


async def test_the_state_follows_the_event_it_belongs_to_in_the_same_batch() -> None:
    h = Harness(live())
    out = await h.handle(h.record(to_run("pause_fielding_run", 5)))
    assert [e.channel for e in out] == [Channel.RESULT, Channel.EVENT, Channel.STATE]
    [event] = [json.loads(e.value or b"") for e in out if e.channel is Channel.EVENT]
    assert values(out)[0]["version"] == event["fielding_run_version"] == 6


async def test_every_change_of_a_batch_has_its_own_state_in_order() -> None:
    h = Harness(live())
    out = await h.handle(
        h.record(to_run("pause_fielding_run", 5)),
        h.record(to_run("resume_fielding_run", 6)),
        h.record(to_run("complete_fielding_run", 7)),
    )
    assert [(s["version"], s["status"]) for s in values(out)] == [
        (6, "paused"),
        (7, "live"),
        (8, "completed"),
    ]
    assert values(out)[-1] == h.as_get_shows(KEY.fielding_run_id)


async def test_a_redelivered_command_publishes_the_state_it_decided_not_the_runs_newer_one() -> (
    None
):
    h = Harness(live())
    paused = h.record(to_run("pause_fielding_run", 5))
    first = await h.handle(paused)
    await h.handle(h.record(to_run("resume_fielding_run", 6)))  # the run moves on to version 7
    redelivered = await h.handle(paused)  # its earlier outputs never committed
    assert [s.value for s in states(redelivered)] == [s.value for s in states(first)]
    assert values(redelivered)[0]["version"] == 6
    assert h.store.runs[KEY.fielding_run_id].version == 7


async def test_a_repeated_command_and_a_refused_one_publish_no_state() -> None:
    h = Harness(live())
    body = to_run("pause_fielding_run", 5)
    await h.handle(h.record(body))
    assert states(await h.handle(h.record(body))) == []  # a new record of the same command
    assert states(await h.handle(h.record(to_run("complete_fielding_run", 5)))) == []  # 412


async def test_a_bulk_job_publishes_one_state_per_run_it_changed() -> None:
    keys = [
        RunKey(
            101,
            KEY.project_id,
            f"01BTGNYV6HRNK8K8VKZASZCG{n:02d}",
            f"01BTGNYV6HRNK8K8VKZASZCR{n:02d}",
        )
        for n in range(3)
    ]
    h = Harness(live(keys[0]), live(keys[1]), RunState(keys[2], RunStatus.COMPLETED, 2))
    body = command(
        "pause_fielding_runs_by_target_group_ids",
        account_id=101,
        project_id=KEY.project_id,
        target_group_ids=[k.target_group_id for k in keys],
    )
    out = await h.handle(h.record(body))
    assert [s.key for s in states(out)] == [k.fielding_run_id.encode() for k in keys[:2]]
    for state in values(out):
        assert state == h.as_get_shows(state["id"])


async def test_a_run_created_from_a_draft_publishes_its_first_state() -> None:
    h = Harness()
    body = command(
        "launch_fielding_run_from_draft",
        account_id=101,
        project_id=KEY.project_id,
        target_group_id=KEY.target_group_id,
        end_fielding_at=(NOW + HOUR).isoformat(),
    )
    [state] = values(await h.handle(h.record(body)))
    assert (state["version"], state["status"], state["target_group_id"]) == (
        1,
        "live",
        KEY.target_group_id,
    )
    assert state == h.as_get_shows(state["id"])


async def test_with_states_off_nothing_is_built_kept_or_published() -> None:
    h = Harness(live(), run_states=False)
    paused = h.record(to_run("pause_fielding_run", 5))
    out = await h.handle(paused)
    assert states(out) == [] and [e.channel for e in out] == [Channel.RESULT, Channel.EVENT]
    assert all(outcome.states == () for outcome in h.store.outcomes.values())
    h.run_states = True  # turned on later: a redelivery publishes what was decided, no state
    assert states(await h.handle(paused)) == []


async def test_an_outcome_decided_with_states_replays_none_once_they_are_off() -> None:
    h = Harness(live())
    paused = h.record(to_run("pause_fielding_run", 5))
    await h.handle(paused)
    h.run_states = False  # the states topic is gone from the settings: nothing goes there
    redelivered = await h.handle(paused)
    assert states(redelivered) == [] and len(redelivered) == 2


def test_the_states_topic_is_an_output_the_hanging_watch_covers_unless_it_is_off() -> None:
    on = Settings(jwt_secret=SECRET)
    assert on.states_topic == "fielding-run-states"
    assert output_channels(on)[Channel.STATE] == "fielding-run-states"
    assert "fielding-run-states" in output_topics(on)
    off = Settings(jwt_secret=SECRET, states_topic="")
    assert Channel.STATE not in output_channels(off)
    assert output_topics(off) == [t for t in output_topics(on) if t != "fielding-run-states"]


def test_the_states_topic_must_differ_from_the_other_topics() -> None:
    with pytest.raises(ValidationError, match="states topics must all differ"):
        Settings(jwt_secret=SECRET, states_topic="target-group-events")
