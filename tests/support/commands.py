"""Building commands, tokens and ids for tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt

from schemas.types import format_timestamp
from worker.entrypoints.send import new_ulid

SECRET = "test-secret-for-hs256-at-least-32-bytes-long"
USER = uuid.UUID("5b0f8c7e-1d2a-4e3b-9c4d-5e6f7a8b9c0d")


def token(
    account_ids: list[int],
    *,
    secret: str = SECRET,
    expires_in: int = 3600,
    sub: str = str(USER),
    **extra: Any,
) -> str:
    claims = {"sub": sub, "account_ids": account_ids, "exp": int(time.time()) + expires_in, **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


def auth_headers(account_ids: list[int], **kwargs: Any) -> list[tuple[str, bytes]]:
    return [("authorization", f"Bearer {token(account_ids, **kwargs)}".encode())]


def command(
    *,
    account_id: int = 101,
    project_id: str | None = None,
    target_group_id: str | None = None,
    fielding_run_id: str | None = None,
    if_match: str = 'W/"1"',
    command_id: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "complete_fielding_run",
        "command_id": command_id or new_ulid(),
        "account_id": account_id,
        "project_id": project_id or new_ulid(),
        "target_group_id": target_group_id or new_ulid(),
        "fielding_run_id": fielding_run_id or new_ulid(),
        "if_match": if_match,
        "issued_at": format_timestamp(datetime.now(UTC)),
    }
    body.update(overrides)
    return body


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
