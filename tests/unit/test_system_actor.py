"""The system actor (the worker's own scheduler) and the keys: a timer command is proved by a
signature of its exact identity, good for no other command; the system key is never the user
secret unless development says so; `serve` honours no system token; tokens are taken with a
leeway for clock skew."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.commands import (
    SECRET,
    SYSTEM_SECRET,
    auth_headers,
    command,
    encode,
    forged_token,
    system_headers,
    timer_headers,
    timer_id,
)
from worker.service.auth import (
    SYSTEM_ACTOR,
    SYSTEM_KEY_ID,
    TIMER_SIGNATURE,
    AuthFailure,
    Principal,
    TokenVerifier,
)
from worker.service.intake import Admitted, CommandRecord, Rejected, triage
from worker.service.ports import RecordOrigin

WORKER = TokenVerifier(SECRET, system_secret=SYSTEM_SECRET)  # as `run` builds it
SERVE = TokenVerifier(SECRET)  # as `serve` builds it: no system key
RUN_ID = "01BTGNYV6HRNK8K8VKZASZCFP2"


def timer(kind: str = "end_fielding_run", version: int = 5, **overrides: Any) -> dict[str, Any]:
    """A timer command as the scheduler sends it, for the run at `version`."""
    body = command(
        kind,
        fielding_run_id=RUN_ID,
        if_match=f'W/"{version}"',
        command_id=timer_id(RUN_ID, version, kind),
    )
    return body | overrides


def triaged(body: dict[str, Any], headers: list[tuple[str, bytes]]) -> Admitted | Rejected:
    record = CommandRecord(RecordOrigin("commands", 0, 7), b"key", encode(body), tuple(headers), 0)
    result = triage(record, WORKER)
    assert isinstance(result, Admitted | Rejected)
    return result


def status(result: Admitted | Rejected) -> int:
    return 0 if isinstance(result, Admitted) else result.status


# --- timer signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("account_id", [101, 555])
def test_a_signed_timer_without_a_token_is_the_system_actor_for_any_account(
    account_id: int,
) -> None:
    body = timer(account_id=account_id)
    result = triaged(body, timer_headers(body))
    assert isinstance(result, Admitted)
    assert result.principal.system and result.principal.user_id == SYSTEM_ACTOR
    assert not result.principal.may_act_on(account_id), "the system actor holds no account"


@pytest.mark.parametrize(
    "change",
    [
        {"type": "start_scheduled_fielding_run"},
        {"account_id": 555},
        {"project_id": "01BTGNYV6HRNK8K8VKZASZCFP9"},
        {"target_group_id": "01BTGNYV6HRNK8K8VKZASZCFP9"},
        {"fielding_run_id": "01BTGNYV6HRNK8K8VKZASZCFP9"},
        {"if_match": 'W/"6"'},
        {"command_id": "timer-0000000000000000000000000000000000000000"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_timers_signature_is_good_for_that_exact_command_only(change: dict[str, Any]) -> None:
    signed = timer()
    result = triaged(signed | change, timer_headers(signed))
    assert status(result) == 401


def test_a_timer_sent_again_later_is_the_same_command_and_still_accepted() -> None:
    first = timer()
    again = first | {"issued_at": "2030-01-01T00:00:00.000Z"}
    assert status(triaged(again, timer_headers(first))) == 0


def test_a_timer_signature_proves_no_user_command() -> None:
    body = command("complete_fielding_run", fielding_run_id=RUN_ID, if_match='W/"5"')
    result = triaged(body, timer_headers(timer()))
    assert status(result) == 401
    assert isinstance(result, Rejected) and "timer commands only" in result.detail


@pytest.mark.parametrize(
    "signature", [b"", b"\xff" * 100_000, b"0" * 64, b"\x00"], ids=["empty", "huge", "zeros", "nul"]
)
def test_any_other_signature_is_a_401_never_an_exception(signature: bytes) -> None:
    assert status(triaged(timer(), [(TIMER_SIGNATURE, signature)])) == 401


def test_a_signature_made_with_the_user_secret_is_refused() -> None:
    body = timer()
    assert status(triaged(body, timer_headers(body, secret=SECRET))) == 401


def test_with_a_token_the_token_is_judged_and_a_user_never_sends_a_timer() -> None:
    body = timer()
    result = triaged(body, [*auth_headers([101]), *timer_headers(body)])
    assert status(result) == 403


def test_a_worker_without_a_system_key_accepts_no_timer() -> None:
    body = timer()
    record = CommandRecord(
        RecordOrigin("commands", 0, 7), b"key", encode(body), tuple(timer_headers(body)), 0
    )
    result = triage(record, SERVE)
    assert isinstance(result, Rejected) and result.status == 401


# --- the tokens older schedulers sent ----------------------------------------------------------


def test_an_older_schedulers_token_still_sends_its_own_timers_to_the_worker() -> None:
    assert status(triaged(timer(), system_headers())) == 0


@pytest.mark.parametrize("verifier", [SERVE, TokenVerifier(SECRET, system_secret=None)])
def test_a_system_token_is_401_where_there_is_no_system_key(verifier: TokenVerifier) -> None:
    [(_, authorization)] = system_headers()
    failure = verifier.verify(authorization)
    assert isinstance(failure, AuthFailure) and "system" in failure.detail


def test_the_system_key_is_never_the_user_secret_by_default() -> None:
    [(_, signed_with_user_secret)] = system_headers(secret=SECRET)
    assert isinstance(TokenVerifier(SECRET).verify(signed_with_user_secret), AuthFailure)
    assert isinstance(WORKER.verify(signed_with_user_secret), AuthFailure)


def test_a_system_token_acts_on_no_account_even_where_it_is_verified() -> None:
    [(_, authorization)] = system_headers()
    principal = WORKER.verify(authorization)
    assert isinstance(principal, Principal) and principal.system
    assert not principal.may_act_on(555)
    result = triaged(command(account_id=555), system_headers())
    assert status(result) == 403


def test_the_system_actors_id_in_a_user_token_is_401() -> None:
    forged = forged_token(
        {"alg": "HS256", "kid": "user"},
        {"sub": str(SYSTEM_ACTOR), "account_ids": [], "exp": int(time.time()) + 60},
    )
    assert isinstance(WORKER.verify(f"Bearer {forged}".encode()), AuthFailure)
    with_kid = forged_token(
        {"alg": "HS256", "kid": SYSTEM_KEY_ID},
        {"sub": str(SYSTEM_ACTOR), "account_ids": [], "exp": int(time.time()) + 60},
    )
    assert isinstance(WORKER.verify(f"Bearer {with_kid}".encode()), AuthFailure), "user secret"


def test_the_signature_header_is_hex_of_an_hmac() -> None:
    [(name, value)] = timer_headers(timer())
    assert name == TIMER_SIGNATURE and len(value) == 64 and int(value, 16) >= 0


# --- leeway ------------------------------------------------------------------------------------


def claims(**times: float) -> dict[str, Any]:
    now = time.time()
    return {"sub": "5b0f8c7e-1d2a-4e3b-9c4d-5e6f7a8b9c0d", "account_ids": [101]} | {
        name: int(now + offset) for name, offset in times.items()
    }


def bearer(body: dict[str, Any]) -> bytes:
    return f"Bearer {forged_token({'alg': 'HS256', 'typ': 'JWT'}, body)}".encode()


@pytest.mark.parametrize(
    "times",
    [{"iat": 5, "exp": 600}, {"nbf": 5, "exp": 600}, {"exp": -10}],
    ids=["iat ahead", "nbf ahead", "just expired"],
)
def test_clock_skew_within_the_leeway_is_taken_and_without_one_refused(
    times: dict[str, float],
) -> None:
    token = bearer(claims(**times))
    assert isinstance(TokenVerifier(SECRET, leeway_seconds=30).verify(token), Principal)
    assert isinstance(TokenVerifier(SECRET).verify(token), AuthFailure)


@pytest.mark.parametrize(
    "times", [{"iat": 60, "exp": 600}, {"exp": -60}], ids=["iat too far ahead", "long expired"]
)
def test_skew_beyond_the_leeway_is_refused(times: dict[str, float]) -> None:
    verifier = TokenVerifier(SECRET, leeway_seconds=30)
    assert isinstance(verifier.verify(bearer(claims(**times))), AuthFailure)


def test_a_cached_token_expires_with_the_same_leeway() -> None:
    verifier = TokenVerifier(SECRET, leeway_seconds=30)
    token = bearer(claims(exp=60))
    assert isinstance(verifier.verify(token), Principal)  # decoded and cached
    later = time.time() + 60
    assert isinstance(verifier.verify(token, now=later + 20), Principal)
    assert isinstance(verifier.verify(token, now=later + 31), AuthFailure)
