"""The AsyncAPI document: valid AsyncAPI 3.1 (checked against the specification's own JSON
Schema, from the AsyncAPI initiative's @asyncapi/specs 6.11.1, Apache-2.0, in tests/data), and
true to the code: the topics, the command and event types, and the messages the worker
actually writes validate against their payloads."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from fielding_statemachine.decisions import Change, RunKey, RunState
from fielding_statemachine.status import RunStatus
from fielding_statemachine.transitions import RunEvent
from schemas.command import COMMAND_TYPES
from schemas.result import Status
from schemas.types import new_ulid
from tests.support.commands import command
from worker.adapters.kafka.asyncapi import asyncapi_document
from worker.service import envelope, outputs
from worker.service.ports import RecordOrigin
from worker.settings import Settings

ASYNCAPI_SCHEMA = Path(__file__).parents[1] / "data" / "asyncapi-3.1.0.schema.json"
DOCUMENT = asyncapi_document()


def payload_validator(message: str) -> jsonschema_rs.Validator:
    """A validator of `message`'s payload, its references resolved within the document."""
    reference = DOCUMENT["components"]["messages"][message]["payload"]["$ref"]
    return jsonschema_rs.validator_for({"$ref": reference, "components": DOCUMENT["components"]})


def test_it_is_valid_asyncapi_3_1() -> None:
    validator = jsonschema_rs.validator_for(json.loads(ASYNCAPI_SCHEMA.read_text()))
    errors = [f"{e.instance_path}: {e.message[:200]}" for e in validator.iter_errors(DOCUMENT)]
    assert errors == []


def test_the_specification_schema_refuses_a_broken_document() -> None:
    """The check above can fail: an operation with no such action is refused."""
    validator = jsonschema_rs.validator_for(json.loads(ASYNCAPI_SCHEMA.read_text()))
    broken = json.loads(json.dumps(DOCUMENT))
    broken["operations"]["sendEvents"]["action"] = "publish"  # AsyncAPI 2's word
    assert not validator.is_valid(broken)


def test_every_reference_resolves() -> None:
    text = json.dumps(DOCUMENT)
    for reference in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = DOCUMENT
        for part in reference.split("/"):
            node = node[part]
        assert isinstance(node, dict), reference


def test_the_topics_are_the_settings_defaults() -> None:
    settings = Settings()
    addresses = {name: channel["address"] for name, channel in DOCUMENT["channels"].items()}
    assert addresses == {
        "commands": settings.commands_topic,
        "results": settings.results_topic,
        "events": settings.events_topic,
        "deadLetters": settings.dlq_topic,
        "replies": settings.replies_topic,
        "runStates": settings.states_topic,
    }
    assert addresses["commands"] == "fielding-run-commands"  # the contract's default names
    assert addresses["events"] == "target-group-events"
    assert addresses["runStates"] == "fielding-run-states"


def test_the_states_topic_is_described_as_compacted_and_sent_by_the_worker() -> None:
    kafka = DOCUMENT["channels"]["runStates"]["bindings"]["kafka"]
    assert kafka["topicConfiguration"] == {"cleanup.policy": ["compact"]}
    assert kafka["partitions"] == DOCUMENT["channels"]["events"]["bindings"]["kafka"]["partitions"]
    sent = DOCUMENT["operations"]["sendRunStates"]
    assert sent["action"] == "send" and sent["channel"] == {"$ref": "#/channels/runStates"}


def test_a_run_state_as_the_worker_writes_it_fits_its_payload() -> None:
    key = RunKey(101, new_ulid(), new_ulid(), new_ulid())
    start = datetime.now(UTC)
    end = start + timedelta(days=1)  # every run has its times (docs/decisions/public-api-shapes.md)
    before = RunState(key, RunStatus.LIVE, 4, start, end)
    change = Change(RunEvent.PAUSE, before, RunState(key, RunStatus.PAUSED, 5, start, end))
    value = json.loads(outputs.state_value(change, datetime.now(UTC), uuid.uuid4()))
    assert payload_validator("fielding_run_state").is_valid(value), value
    assert not payload_validator("fielding_run_state").is_valid({**value, "status": "draft"})


def test_every_command_and_event_type_has_its_message() -> None:
    channels = DOCUMENT["channels"]
    assert set(channels["commands"]["messages"]) == COMMAND_TYPES
    assert set(channels["events"]["messages"]) == {
        "target_group_opened",
        "target_group_paused",
        "target_group_closed",
        "fielding_run_updated",
    }
    received = DOCUMENT["operations"]["receiveCommands"]
    assert received["action"] == "receive" and len(received["messages"]) == len(COMMAND_TYPES)
    assert received["reply"]["channel"] == {"$ref": "#/channels/results"}


@pytest.mark.parametrize("kind", sorted(COMMAND_TYPES))
def test_a_command_as_producers_write_it_fits_its_payload(kind: str) -> None:
    assert payload_validator(kind).is_valid(command(kind))
    assert not payload_validator(kind).is_valid(command(kind, account_id="101"))


def test_results_and_stubs_as_the_worker_writes_them_fit_their_payloads() -> None:
    echo = envelope.Echo(command_id="c-1", type="complete_fielding_run", fielding_run_id=new_ulid())
    now = datetime.now(UTC)
    for status, extra in [
        (Status.NO_CONTENT, {"etag": 'W/"2"'}),
        (Status.PRECONDITION_FAILED, {"detail": "stale"}),
        (Status.TOO_MANY_REQUESTS, {"retry_after_seconds": 3}),
    ]:
        result = json.loads(outputs.result_value(echo, status, now, **extra))
        assert payload_validator("command_result").is_valid(result), result
    stub = outputs.dlq_stub(RecordOrigin("fielding-run-commands", 3, 41), b"k", b"\xff", "why")
    assert stub.value is not None
    assert payload_validator("dead_letter_stub").is_valid(json.loads(stub.value))
    headers = dict(stub.headers)
    assert set(DOCUMENT["components"]["schemas"]["DeadLetterHeaders"]["properties"]) >= set(headers)
