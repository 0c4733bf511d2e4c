"""The first look at a record: unreadable, 401, 400, 403 (in that order), or admitted."""

from __future__ import annotations

import pytest

from schemas.types import INT32_MAX
from tests.support.commands import SECRET, USER, auth_headers, command, encode, token
from worker.service.auth import TokenVerifier
from worker.service.intake import Admitted, CommandRecord, Rejected, Unreadable, triage
from worker.service.ports import RecordOrigin

VERIFIER = TokenVerifier(SECRET)
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def record(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> CommandRecord:
    return CommandRecord(
        RecordOrigin("commands", 0, 7),
        b"key",
        value,
        tuple(auth_headers([101]) if headers is None else headers),
        0,
    )


def test_a_good_command_is_admitted_with_its_user() -> None:
    body = command()
    triaged = triage(record(encode(body)), VERIFIER)
    assert isinstance(triaged, Admitted)
    assert triaged.command.command_id == body["command_id"]
    assert triaged.command.expected_version == 1
    assert triaged.principal.user_id == USER


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "complete_fielding_run"}', "no readable command_id"),
        (b'{"command_id": 42}', "no readable command_id"),
        (b'{"command_id": ""}', "no readable command_id"),
        (encode(command(command_id="x" * 256)), "no readable command_id"),
    ],
)
def test_records_without_a_readable_command_id_are_unreadable(
    value: bytes | None, reason: str
) -> None:
    triaged = triage(record(value), VERIFIER)
    assert isinstance(triaged, Unreadable)
    assert reason in triaged.reason


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("authorization", b"Basic abc")],
        [("authorization", b"Bearer not.a.jwt")],
        auth_headers([101], secret="another-secret-that-is-also-32-bytes-long!"),
        auth_headers([101], expires_in=-10),
        auth_headers([101], sub="not-a-uuid"),
    ],
    ids=["missing", "not bearer", "malformed", "bad signature", "expired", "sub not uuid"],
)
def test_bad_tokens_are_401(headers: list[tuple[str, bytes]]) -> None:
    triaged = triage(record(encode(command()), headers), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == 401


def test_authentication_is_judged_before_the_schema() -> None:
    triaged = triage(record(encode(command(account_id="x")), []), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == 401


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"project_id": "not-a-ulid"}, "project_id"),
        ({"target_group_id": "01btgnyv6hrnk8k8vkzaszcfp1"}, "target_group_id"),
        ({"fielding_run_id": 7}, "fielding_run_id"),
        ({"account_id": INT32_MAX + 1}, "account_id"),
        ({"account_id": 0}, "account_id"),
        ({"account_id": "101"}, "account_id"),
        ({"if_match": "5"}, "if_match"),
        ({"if_match": 'W/"abc"'}, "if_match"),
        ({"if_match": None}, "if_match"),
        ({"type": "unknown_command"}, "type"),
        ({"issued_at": "yesterday"}, "issued_at"),
    ],
)
def test_schema_violations_are_400_naming_the_field(
    overrides: dict[str, object], field: str
) -> None:
    triaged = triage(record(encode(command(**overrides))), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == 400
    assert triaged.invalid_params is not None
    assert [p.name for p in triaged.invalid_params] == [field]


@pytest.mark.parametrize(
    ("kind", "field", "instant"),
    [
        ("complete_fielding_run", "issued_at", "0001-01-01T00:00:00+01:00"),
        ("update_fielding_run", "end_fielding_at", "9999-12-31T23:59:59-01:00"),
        ("launch_fielding_run_from_draft", "end_fielding_at", "0001-01-01T00:30:00+00:45"),
    ],
)
def test_an_instant_that_utc_cannot_hold_is_400_not_a_crash(
    kind: str, field: str, instant: str
) -> None:
    # Found by schemathesis: such a time raised OverflowError out of validation.
    triaged = triage(record(encode(command(kind, **{field: instant}))), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == 400
    assert triaged.invalid_params is not None
    assert [p.name for p in triaged.invalid_params] == [field]


def test_a_missing_field_is_400_naming_it() -> None:
    body = command()
    del body["if_match"]
    triaged = triage(record(encode(body)), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == 400
    assert triaged.invalid_params is not None and [p.name for p in triaged.invalid_params] == [
        "if_match"
    ]


def test_every_broken_field_is_named() -> None:
    triaged = triage(record(encode(command(project_id="bad", account_id=-1))), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.invalid_params is not None
    assert sorted(p.name for p in triaged.invalid_params) == ["account_id", "project_id"]


def test_a_400_echoes_what_it_could_read() -> None:
    body = command(project_id="bad")
    triaged = triage(record(encode(body)), VERIFIER)
    assert isinstance(triaged, Rejected)
    assert triaged.echo.command_id == body["command_id"]
    assert triaged.echo.fielding_run_id == body["fielding_run_id"]
    assert triaged.echo.project_id == "bad"


def test_an_account_outside_the_token_is_403() -> None:
    triaged = triage(record(encode(command(account_id=102)), auth_headers([101, 103])), VERIFIER)
    assert isinstance(triaged, Rejected) and triaged.status == 403


def test_the_schema_is_judged_before_the_account() -> None:
    triaged = triage(
        record(encode(command(account_id=102, project_id="x")), auth_headers([101])), VERIFIER
    )
    assert isinstance(triaged, Rejected) and triaged.status == 400


def test_a_plain_etag_is_accepted_too() -> None:
    triaged = triage(record(encode(command(if_match='"5"'))), VERIFIER)
    assert isinstance(triaged, Admitted) and triaged.command.expected_version == 5


def test_trace_context_continues_the_commands_trace() -> None:
    headers = [
        *auth_headers([101]),
        ("traceparent", TRACEPARENT),
        ("tracestate", b"congo=t61rcWkgMzE"),
    ]
    triaged = triage(record(encode(command()), headers), VERIFIER)
    assert isinstance(triaged, Admitted)
    out = dict(triaged.envelope.trace_headers)
    version, trace_id, span_id, flags = out["traceparent"].decode().split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert span_id not in ("00f067aa0ba902b7", "0" * 16)
    assert out["tracestate"] == b"congo=t61rcWkgMzE"


@pytest.mark.parametrize(
    "traceparent", [None, b"garbage", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01"]
)
def test_a_missing_or_invalid_traceparent_starts_a_fresh_trace(traceparent: bytes | None) -> None:
    headers = auth_headers([101]) + ([("traceparent", traceparent)] if traceparent else [])
    triaged = triage(record(encode(command()), headers), VERIFIER)
    assert isinstance(triaged, Admitted)
    version, trace_id, span_id, _ = (
        dict(triaged.envelope.trace_headers)["traceparent"].decode().split("-")
    )
    assert version == "00" and len(trace_id) == 32 and trace_id != "0" * 32 and len(span_id) == 16
    assert triaged.envelope.trace_id == trace_id


def test_a_cached_token_still_expires() -> None:
    verifier = TokenVerifier(SECRET)
    header = f"Bearer {token([101], expires_in=60)}".encode()
    first = verifier.verify(header)
    assert not hasattr(first, "detail")
    later = verifier.verify(header, now=first.expires_at + 1)  # type: ignore[union-attr]
    assert getattr(later, "detail", "") == "the token has expired"


def test_the_envelope_holds_the_key_the_first_token_and_the_reply_address() -> None:
    reply_id = b"0123456789abcdef" * 2
    headers = [
        ("Authorization", b"Bearer first"),
        ("authorization", b"Bearer second"),
        ("fielding-reply-to", b"3"),
        ("fielding-reply-id", reply_id),
    ]
    triaged = triage(record(encode(command()), headers), VERIFIER)
    assert isinstance(triaged, Rejected)  # neither token is valid: the envelope is read anyway
    read = triaged.envelope
    assert (read.key, read.authorization, read.reply_to) == (b"key", b"Bearer first", (3, reply_id))
