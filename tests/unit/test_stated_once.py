"""Facts that the domain, the messages and the outputs state in their own terms, held to each
other: a change to one that the other misses fails here, not in a consumer."""

from __future__ import annotations

from typing import get_args

from fielding_statemachine.status import RunStatus
from fielding_statemachine.transitions import TARGETS, RunEvent
from schemas.errors import ErrorObjectName
from schemas.event import RunChanged
from schemas.result import Status
from schemas.types import RunStatusName
from worker.adapters.kafka.asyncapi import DLQ_HEADERS
from worker.service import outputs
from worker.service.ports import RecordOrigin


def literal_values(model: type[RunChanged], name: str) -> set[str]:
    return set(get_args(model.model_fields[name].annotation))


def test_messages_name_the_statuses_a_run_has() -> None:
    assert list(get_args(RunStatusName)) == [status.value for status in RunStatus]


def test_every_machine_event_has_an_event_with_a_reason_its_schema_allows() -> None:
    assert set(outputs.EVENTS) == set(RunEvent)
    for event, (model, reason) in outputs.EVENTS.items():
        assert reason in literal_values(model, "reason"), (event, reason)


def test_every_reason_an_event_schema_allows_is_given() -> None:
    for model in {model for model, _ in outputs.EVENTS.values()}:
        given = {reason for m, reason in outputs.EVENTS.values() if m is model}
        assert given == literal_values(model, "reason"), model


def test_an_event_with_a_fixed_status_follows_the_transitions_to_it() -> None:
    for event, (model, _) in outputs.EVENTS.items():
        fixed = literal_values(model, "status")
        if len(fixed) == 1:
            assert {status.value for status in TARGETS[event]} == fixed, event


def test_every_error_status_has_one_of_the_error_objects() -> None:
    assert set(outputs.ERROR_OBJECTS.values()) == set(get_args(ErrorObjectName))
    errors = {status for status in Status if status >= 400} - {Status.TOO_MANY_REQUESTS}
    assert set(outputs.ERROR_OBJECTS) == errors


def test_the_dlq_headers_written_are_the_documented_ones() -> None:
    origin = RecordOrigin("commands", 1, 2)
    stub = outputs.dlq_stub(origin, b"k", b"v", "why")
    copy = outputs.dlq_copy(origin, b"k", b"v", [("own", b"1")], "why")
    written = {name for name, _ in [*stub.headers, *copy.headers]} - {"own"}
    assert written == set(DLQ_HEADERS)
