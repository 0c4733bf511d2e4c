"""Hostile records, judged without services: whatever the bytes, headers, tokens or nesting,
intake returns, every readable command_id gets an answer that can be serialised, and every
output is small enough for its topic."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from schemas.result import Status
from tests.support.commands import SECRET, auth_headers, command, encode, forged_token
from worker.service import envelope, outputs
from worker.service.auth import AuthFailure, Principal, TokenVerifier
from worker.service.handler import rejected, unreadable
from worker.service.intake import Admitted, CommandRecord, Rejected, Unreadable, triage
from worker.service.lenient_json import UNREADABLE, NotAnObject, NotJson, top_level_members
from worker.service.ports import RecordOrigin

VERIFIER = TokenVerifier(SECRET)
ORIGIN = RecordOrigin("commands", 0, 7)
LIVE = {"sub": "5b0f8c7e-1d2a-4e3b-9c4d-5e6f7a8b9c0d", "account_ids": [101]}
# Results and events go to topics with Kafka's default limit; they stay far below it.
RESULT_BUDGET = 64 * 1024


def record(
    value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None
) -> CommandRecord:
    return CommandRecord(
        ORIGIN, b"key", value, tuple(auth_headers([101]) if headers is None else headers), 0
    )


def answer(triaged: Any) -> outputs.Emission:
    """What the worker publishes for a record judged at intake."""
    if isinstance(triaged, Unreadable):
        return unreadable(triaged)
    assert isinstance(triaged, Rejected)
    return rejected(triaged, outputs_time())


def outputs_time() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 11, 30, tzinfo=UTC)


def bearer(token: str) -> list[tuple[str, bytes | None]]:
    return [("authorization", f"Bearer {token}".encode())]


def in_an_hour() -> int:
    return int(time.time()) + 3600


# --- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        ({"alg": "HS256", "kid": 1}, {**LIVE, "exp": in_an_hour()}),
        ({"alg": "HS256", "crit": ["x"]}, {**LIVE, "exp": in_an_hour()}),
        ({"alg": "HS256"}, {**LIVE, "exp": "9999999999"}),
        ({"alg": "HS256"}, {**LIVE, "exp": True}),
        ({"alg": "HS256"}, {**LIVE, "exp": 1e400}),
        ({"alg": {"nested": ["alg"]}}, {**LIVE, "exp": in_an_hour()}),
        ({"alg": "HS256"}, {**LIVE, "sub": 7, "exp": in_an_hour()}),
        ({"alg": "HS256"}, {**LIVE, "account_ids": [True], "exp": in_an_hour()}),
        ({"alg": "HS256"}, {**LIVE, "account_ids": "101", "exp": in_an_hour()}),
        ({"alg": "HS256"}, [1, 2, 3]),
        ([1], {**LIVE, "exp": in_an_hour()}),
        ({"alg": "none"}, {**LIVE, "exp": in_an_hour()}),
    ],
    ids=[
        "kid int",
        "crit",
        "exp string",
        "exp bool",
        "exp inf",
        "alg object",
        "sub int",
        "account bool",
        "accounts string",
        "claims list",
        "header list",
        "alg none",
    ],
)
def test_a_malformed_token_of_any_shape_is_a_401(header: object, claims: object) -> None:
    failure = VERIFIER.verify(f"Bearer {forged_token(header, claims)}".encode())
    assert isinstance(failure, AuthFailure)


def test_a_401_never_echoes_more_than_a_few_characters_of_the_token() -> None:
    token = forged_token({"alg": "\\" * 330_000}, {**LIVE, "exp": in_an_hour()})
    failure = VERIFIER.verify(f"Bearer {token}".encode())
    assert isinstance(failure, AuthFailure) and len(failure.detail) < 200


def test_an_over_long_token_is_refused_unread_and_not_cached() -> None:
    verifier = TokenVerifier(SECRET)
    failure = verifier.verify(b"Bearer " + b"a" * 100_000)
    assert isinstance(failure, AuthFailure) and "longer than" in failure.detail


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(SECRET, audience="fielding", issuer="https://issuer.example")
    good = forged_token(
        {"alg": "HS256", "typ": "JWT"},
        {**LIVE, "exp": in_an_hour(), "aud": "fielding", "iss": "https://issuer.example"},
    )
    assert isinstance(verifier.verify(f"Bearer {good}".encode()), Principal)
    for claims in (
        {**LIVE, "exp": in_an_hour(), "aud": "other", "iss": "https://issuer.example"},
        {**LIVE, "exp": in_an_hour(), "aud": "fielding", "iss": "https://evil.example"},
        {**LIVE, "exp": in_an_hour(), "aud": 7, "iss": ["x"]},
        {**LIVE, "exp": in_an_hour()},
    ):
        token = forged_token({"alg": "HS256"}, claims)
        assert isinstance(verifier.verify(f"Bearer {token}".encode()), AuthFailure)


# --- intake ----------------------------------------------------------------------------------


def surrogate_command() -> bytes:
    return json.dumps(command()).replace('"type"', '"x":"\\ud800","type"', 1).encode()


@pytest.mark.parametrize(
    ("value", "headers", "status"),
    [
        (b'{"command_id":"\\ud800"}', [], 401),
        (b'{"command_id":"\\ud800","type":"\\udfff","project_id":"\\ud83d"}', None, 400),
        (json.dumps({**command(), "command_id": "a\x00b"}).encode(), None, 400),
        (
            json.dumps(command())[:-1].encode() + b', "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            None,
            400,
        ),
        (json.dumps(command())[:-1].encode() + b', "account_id": ' + b"9" * 5000 + b"}", None, 400),
        (b'{"command_id":"c1","account_id":' + b"1" * 5000 + b"}", None, 400),
    ],
    ids=[
        "surrogate id, no token",
        "surrogates echoed",
        "NUL in command_id",
        "deep nesting",
        "5,000-digit account_id",
        "5,000-digit number, little else",
    ],
)
def test_a_readable_command_id_always_gets_a_result_that_serialises(
    value: bytes, headers: list[tuple[str, bytes | None]] | None, status: int
) -> None:
    triaged = triage(record(value, headers), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == status
    emission = answer(triaged)
    result = json.loads(emission.value)
    assert result["status"] == status and result["command_id"]
    assert emission.size < RESULT_BUDGET


def test_a_null_or_undecodable_trace_header_starts_a_fresh_trace() -> None:
    traces = set()
    for traceparent in (None, b"\xff\xfe\x00", b"00-" + b"f" * 10_000):
        headers = [*auth_headers([101]), ("traceparent", traceparent), ("tracestate", None)]
        triaged = triage(record(encode(command()), headers), VERIFIER)
        assert isinstance(triaged, Admitted)
        read = triaged.envelope
        version, trace_id, span_id, _ = dict(read.trace_headers)["traceparent"].decode().split("-")
        assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
        assert read.trace_id == trace_id and "tracestate" not in dict(read.trace_headers)
        traces.add(trace_id)
    assert len(traces) == 3, "each a trace of its own"


def test_a_record_with_a_header_key_that_is_not_utf8_goes_to_the_dlq_as_a_stub() -> None:
    bad_key = b"bad\xff\xfekey".decode("utf-8", "surrogateescape")  # as the consumer reads it
    triaged = triage(record(encode(command()), [*auth_headers([101]), (bad_key, b"x")]), VERIFIER)
    assert isinstance(triaged, Unreadable) and "header key" in triaged.reason
    stub = answer(triaged)
    body = json.loads(stub.value)
    assert body["original"] == {"topic": "commands", "partition": 0, "offset": 7}
    assert body["value_sha256"] and dict(stub.headers)["dlq.stub"] == b"true"
    for key, _ in stub.headers:
        key.encode("utf-8")  # every header of the stub can be written


def test_a_null_header_value_is_copied_as_null() -> None:
    triaged = triage(record(b"{not json", [("x-null", None)]), VERIFIER)
    assert isinstance(triaged, Unreadable)
    assert ("x-null", None) in answer(triaged).headers


# --- outputs ---------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None), max_size=2000)  # surrogates and NUL included


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    command_id=any_text.filter(bool),
    fields=st.lists(any_text, min_size=4, max_size=4),
    detail=any_text,
)
def test_building_a_result_never_fails_and_stays_small(
    command_id: str, fields: list[str], detail: str
) -> None:
    members = {
        "type": fields[0],
        "project_id": fields[1],
        "target_group_id": fields[2],
        "fielding_run_id": fields[3],
        "account_id": 10**30,
    }
    echo = envelope.Echo.of_members(members, command_id)
    for status in (Status.BAD_REQUEST, Status.UNAUTHORIZED, Status.TOO_MANY_REQUESTS):
        value = outputs.result_value(echo, status, outputs_time(), detail=detail)
        value.decode("utf-8")
        assert len(value) < RESULT_BUDGET


def test_a_detail_quoting_a_lone_surrogate_is_cleaned_not_fatal() -> None:
    echo = envelope.Echo("c1", "complete_fielding_run")
    value = outputs.result_value(echo, Status.UNAUTHORIZED, outputs_time(), detail="bad \udc80 kid")
    assert json.loads(value)["error"]["detail"] == "bad \ufffd kid"


def test_a_tombstones_copy_is_a_tombstone() -> None:
    triaged = triage(record(None), VERIFIER)
    assert isinstance(triaged, Unreadable) and answer(triaged).value is None


def test_a_dlq_stub_never_carries_the_records_content() -> None:
    stub = outputs.dlq_stub(ORIGIN, b"k" * 5000, b"v" * 2_000_000, "x" * 100_000)
    assert stub.size < 8 * 1024 and stub.key is None
    assert json.loads(stub.value)["value_bytes"] == 2_000_000


# --- reading what can be read ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    document=st.dictionaries(st.text(), json_values, max_size=6), indent=st.sampled_from([None, 1])
)
def test_the_skim_reads_top_level_scalars_as_json_loads_does(
    document: dict[str, Any], indent: int | None
) -> None:
    from worker.service.lenient_json import _skim

    text = json.dumps(document, indent=indent)
    skimmed = _skim(text)
    assert skimmed.keys() == document.keys()
    for key, value in document.items():
        if isinstance(value, list | dict):
            assert skimmed[key] is UNREADABLE
        else:
            assert skimmed[key] == value


def test_a_document_too_deep_for_json_loads_still_gives_its_command_id() -> None:
    deep = (
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + ', "command_id": "c-1", "n": ' + "7" * 5000 + "}"
    )
    members = top_level_members(deep)
    assert members["command_id"] == "c-1" and members["a"] is UNREADABLE
    assert members["n"] is UNREADABLE


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[" * 5000 + "]" * 5000, NotAnObject),
        ('{"a": ' + "[" * 5000 + "]" * 4999 + "}", NotJson),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + ", }", NotJson),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "} trailing", NotJson),
        ('{"a" "b": ' + "[" * 5000 + "]" * 5000 + "}", NotJson),
    ],
)
def test_a_deep_document_that_is_not_a_json_object_is_refused(text: str, error: type) -> None:
    with pytest.raises(error):
        top_level_members(text)
