"""Building commands, tokens and ids for tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.command import COMPLETE_FIELDING_RUN, MODELS, BulkCommand, RunCommand, new_command
from schemas.types import new_ulid
from worker.service.auth import SYSTEM_ACTOR, TIMER_SIGNATURE, SystemKey, TokenIssuer

SECRET = "test-secret-for-hs256-at-least-32-bytes-long"
# The worker's system key in the tests: a key of its own, as `run` requires outside development.
SYSTEM_SECRET = "test-system-key-for-timer-commands-0123456789"
USER = uuid.UUID("5b0f8c7e-1d2a-4e3b-9c4d-5e6f7a8b9c0d")


ISSUER = TokenIssuer(SECRET)


def token(
    account_ids: list[int],
    *,
    secret: str = SECRET,
    expires_in: int = 3600,
    sub: str = str(USER),
    **extra: Any,
) -> str:
    return TokenIssuer(secret).issue(account_ids, lifetime_seconds=expires_in, sub=sub, **extra)


def auth_headers(account_ids: list[int], **kwargs: Any) -> list[tuple[str, bytes]]:
    return [("authorization", f"Bearer {token(account_ids, **kwargs)}".encode())]


def system_headers(secret: str = SYSTEM_SECRET) -> list[tuple[str, bytes]]:
    """The token an older scheduler sent with its timer commands (the system actor's)."""
    return [("authorization", TokenIssuer(secret).bearer([], user_id=SYSTEM_ACTOR))]


def timer_id(fielding_run_id: str, version: int, kind: str, secret: str = SYSTEM_SECRET) -> str:
    """The `command_id` the scheduler gives the timer `kind` of a run at `version`."""
    return SystemKey(secret).timer_command_id(fielding_run_id, version, kind)


def timer_headers(body: dict[str, Any], secret: str = SYSTEM_SECRET) -> list[tuple[str, bytes]]:
    """The headers the scheduler gives the timer command `body`: its signature, no token."""
    timer = MODELS[body["type"]].model_validate_json(json.dumps(body))
    assert isinstance(timer, RunCommand)
    return [(TIMER_SIGNATURE, SystemKey(secret).sign(timer))]


def _fields(type: str) -> dict[str, Any]:
    """Valid fields for a command of `type`, with new ids."""
    model = MODELS[type]
    fields: dict[str, Any] = {"account_id": 101, "project_id": new_ulid()}
    now = datetime.now(UTC)
    if issubclass(model, RunCommand):
        fields |= {
            "target_group_id": new_ulid(),
            "fielding_run_id": new_ulid(),
            "if_match": 'W/"1"',
        }
    elif issubclass(model, BulkCommand):
        fields["target_group_ids"] = [new_ulid()]
    else:
        fields["target_group_id"] = new_ulid()
    if "start_fielding_at" in model.model_fields:
        fields["start_fielding_at"] = now + timedelta(hours=1)
    if "end_fielding_at" in model.model_fields:
        fields["end_fielding_at"] = now + timedelta(days=7)
    return fields


def command(kind: str = COMPLETE_FIELDING_RUN, /, **overrides: Any) -> dict[str, Any]:
    """A command of type `kind` as JSON (account 101, new ids), built from its schema model;
    `overrides` then replace fields of the JSON as they are (valid or not)."""
    fields = _fields(kind)
    model_fields = {
        k: v for k, v in overrides.items() if k != "type" and k in MODELS[kind].model_fields
    }
    try:  # all of them together (times valid only as a pair)
        new_command(kind, **{**fields, **model_fields})
        valid = model_fields
    except ValueError:  # else each that is valid on its own; the rest go in the JSON as given
        valid = {k: v for k, v in model_fields.items() if _fits(kind, k, v)}
    body = new_command(kind, **{**fields, **valid}).model_dump(mode="json")
    body.update({k: v for k, v in overrides.items() if k not in valid})
    return body


def _fits(kind: str, name: str, value: Any) -> bool:
    """Whether `value` is a valid `name` of a `kind` command (else it only goes in the JSON)."""
    try:
        new_command(kind, **{**_fields(kind), name: value})
        return True
    except ValueError:
        return False


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_token(header: object, claims: object, *, secret: str = SECRET) -> str:
    """A JWT with any JSON as its JOSE header and claims, signed with HS256 by hand (PyJWT
    would refuse to write most of these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
