"""Who sent a command: the verifier that turns a command's `authorization` header into a
principal (or a 401), the issuer that mints tokens for tools and tests, and the system key that
derives and signs the worker's own timer commands.

Decoding a token is too costly to repeat per command, and upstream services reuse one token for
many commands, so a verified token is cached (bounded) and only its expiry is checked again per
command (docs/decisions/outputs-serialisation.md).
Whatever a header holds, `verify` returns: a hostile token is a 401, never an exception.

Timer commands carry no token: a token of the system actor would be good for any account, and
anyone who can read the commands topic could copy it. They carry a signature of their own
exact identity instead (`SystemKey.sign`, about 2 µs to check): a copy is good for that one
command and nothing else, and sending it again is what the scheduler does anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
import jwt.types

from schemas.command import RunCommand

# Tokens longer than this are refused unread: they would be cached, and echoed nowhere.
MAX_TOKEN_BYTES = 8192
# A 401's detail names what was wrong, never more than this much of what the token said.
MAX_ECHO = 80


# Who the worker's own scheduler acts as (`last_changed_by` of time-driven changes), and the
# `kid` the tokens of older schedulers carry: such a token is checked with the system key and
# nothing else, and only a worker holding that key (never `serve`) accepts it.
SYSTEM_ACTOR = UUID("00000000-0000-4000-8000-00000000f1e1")
SYSTEM_KEY_ID = "fielding-worker-system"
# The header of a timer command that proves it: the hex HMAC of its identity (`SystemKey.sign`).
TIMER_SIGNATURE = "fielding-timer-signature"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: UUID
    account_ids: frozenset[int]
    expires_at: float
    # The scheduler, proved with the system key: it sends timer commands (and only those, and
    # only the ones it derives itself) for the runs of any account, and may act on no account
    # otherwise.
    system: bool = False

    def may_act_on(self, account_id: int) -> bool:
        return account_id in self.account_ids


# A timer command proved by its signature: the scheduler, with no token and so no expiry.
SYSTEM_PRINCIPAL = Principal(SYSTEM_ACTOR, frozenset(), math.inf, system=True)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    detail: str


def timer_command_id(secret: str, fielding_run_id: str, version: int, command_type: str) -> str:
    """The `command_id` of the timer the scheduler sends for a run at a version: the same for
    every replica, unknowable without the system key (so no one can take the id first), and
    the only id the system actor may use."""
    message = f"{fielding_run_id}:{version}:{command_type}".encode()
    return "timer-" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


class SystemKey:
    """The worker's own key (`FIELDING_SYSTEM_JWT_SECRET`): it derives the ids of timer
    commands and signs each timer command the scheduler sends."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._key = secret.encode()

    def timer_command_id(self, fielding_run_id: str, version: int, command_type: str) -> str:
        return timer_command_id(self.secret, fielding_run_id, version, command_type)

    def sign(self, command: RunCommand) -> bytes:
        """The value of the command's TIMER_SIGNATURE header: an HMAC of its type, ids,
        version and `command_id` (not `issued_at`: a timer sent again is the same command).
        The version pins the run's times, so the due time needs no place of its own."""
        identity = "\x1f".join(
            (
                "fielding-timer/v1",
                command.type,
                str(command.account_id),
                command.project_id,
                command.target_group_id,
                command.fielding_run_id,
                str(command.expected_version),
                command.command_id,  # last: the only field of free text
            )
        )
        message = identity.encode("utf-8", "surrogatepass")  # whatever a command_id holds
        return hmac.new(self._key, message, hashlib.sha256).hexdigest().encode()

    def signed(self, command: RunCommand, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(command), signature)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"


class TokenVerifier:
    def __init__(
        self,
        hs256_secret: str | None,
        rs256_public_key: str | None = None,
        *,
        system_secret: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: float = 0.0,
        cache_size: int = 4096,
    ) -> None:
        self._keys: list[tuple[str, str]] = []
        if hs256_secret:
            self._keys.append((hs256_secret, "HS256"))
        if rs256_public_key:
            self._keys.append((rs256_public_key, "RS256"))
        # The system actor is proved with the system key only, never with a user secret; with
        # none (as in `serve`), there is no system actor.
        self.system_key = SystemKey(system_secret) if system_secret else None
        self._audience = audience
        self._issuer = issuer
        # Clock skew allowed on `exp`, `nbf` and `iat` (PyJWT refuses an `iat` in the future).
        self._leeway = leeway_seconds
        required = ["exp", "sub"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
        self._options: jwt.types.Options = {"require": required, "verify_aud": audience is not None}
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cache_size = cache_size

    def timer_command_id(self, fielding_run_id: str, version: int, command_type: str) -> str | None:
        """The id a genuine timer command for this run and version has (None: no system key)."""
        if self.system_key is None:
            return None
        return self.system_key.timer_command_id(fielding_run_id, version, command_type)

    def verify_timer(self, command: RunCommand, signature: bytes) -> Principal | AuthFailure:
        """A timer command proved by its TIMER_SIGNATURE header rather than a token."""
        if self.system_key is None:
            return AuthFailure("timer signatures are not accepted: no system key is configured")
        if not self.system_key.signed(command, signature):
            return AuthFailure("the timer signature is invalid")
        return SYSTEM_PRINCIPAL

    def verify(
        self, authorization: bytes | None, now: float | None = None
    ) -> Principal | AuthFailure:
        now = time.time() if now is None else now
        if not authorization:
            return AuthFailure("the authorization header is missing")
        if len(authorization) > MAX_TOKEN_BYTES:
            return AuthFailure(f"the authorization header is longer than {MAX_TOKEN_BYTES} bytes")
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return AuthFailure("the authorization header is not a Bearer token")
        principal = self._cache.get(token)
        if principal is None:
            verified = self._decode(token)
            if isinstance(verified, AuthFailure):
                return verified
            principal = verified
            self._cache[token] = principal
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if principal.expires_at + self._leeway <= now:
            return AuthFailure("the token has expired")
        return principal

    def _decode(self, token: bytes) -> Principal | AuthFailure:
        if not self._keys:
            return AuthFailure("no key is configured to verify tokens")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
        except Exception:  # InvalidTokenError, or whatever an older PyJWT lets through
            return AuthFailure("the token is malformed")
        system = header.get("kid") == SYSTEM_KEY_ID
        keys = self._keys
        if system:
            if self.system_key is None:
                return AuthFailure("the worker's system tokens are not accepted here")
            keys = [(self.system_key.secret, "HS256")]
        found = next(((key, alg) for key, alg in keys if alg == algorithm), None)
        if found is None:
            return AuthFailure(f"tokens signed with {_short(algorithm)} are not accepted")
        key, algorithm = found
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options=self._options,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            return AuthFailure("the token has expired")
        except jwt.InvalidSignatureError:
            return AuthFailure("the token's signature is invalid")
        except jwt.InvalidAudienceError:
            return AuthFailure("the token is not meant for this service (aud)")
        except jwt.InvalidIssuerError:
            return AuthFailure("the token's issuer is not accepted (iss)")
        except jwt.InvalidTokenError as error:
            return AuthFailure(f"the token is invalid: {str(error)[:MAX_ECHO]}")
        except Exception:  # a key library's error on hostile input is still a 401
            return AuthFailure("the token could not be verified")
        return _principal(claims, system)


def _principal(claims: dict[str, Any], system: bool) -> Principal | AuthFailure:
    try:
        user_id = UUID(claims["sub"])
    except (TypeError, ValueError, AttributeError):
        return AuthFailure("the token's sub is not a user id (UUID)")
    if (user_id == SYSTEM_ACTOR) != system:
        return AuthFailure("the system actor's id is reserved to the system key")
    account_ids = claims.get("account_ids")
    if not isinstance(account_ids, list) or not all(
        type(a) is int
        for a in account_ids  # bool is an int subclass, and not an account
    ):
        return AuthFailure("the token's account_ids is not a list of integers")
    expires_at = claims["exp"]
    if type(expires_at) not in (int, float):  # PyJWT also takes "123" (a string of digits)
        return AuthFailure("the token's exp is not a number")
    return Principal(
        user_id=user_id,
        account_ids=frozenset(account_ids),
        expires_at=float(expires_at),
        system=system,
    )


class TokenIssuer:
    """Signs HS256 tokens with the claims the verifier expects: for the `send` tool, the bench
    and the tests (a token with the system actor's `sub` is one as older schedulers sent)."""

    def __init__(
        self, secret: str, *, audience: str | None = None, issuer: str | None = None
    ) -> None:
        self._secret = secret
        self._audience = audience
        self._issuer = issuer

    def issue(
        self,
        account_ids: Iterable[int],
        *,
        user_id: UUID | None = None,
        lifetime_seconds: float = 3600,
        **extra_claims: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "sub": str(user_id or uuid.uuid4()),
            "account_ids": sorted(account_ids),
            "exp": int(time.time() + lifetime_seconds),
        }
        if self._audience:
            claims["aud"] = self._audience
        if self._issuer:
            claims["iss"] = self._issuer
        claims.update(extra_claims)
        headers = {"kid": SYSTEM_KEY_ID} if claims["sub"] == str(SYSTEM_ACTOR) else None
        return jwt.encode(claims, self._secret, algorithm="HS256", headers=headers)

    def bearer(self, account_ids: Iterable[int], **kwargs: Any) -> bytes:
        """The value of an `authorization` header carrying a new token."""
        return b"Bearer " + self.issue(account_ids, **kwargs).encode()
