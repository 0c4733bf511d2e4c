"""Bearer-token checks for commands: 401 for a bad token, the claims for a good one.

PyJWT's decode costs about 60 µs; upstream services reuse one token for many commands, so a
verified token is cached (bounded) and only its expiry is checked again per command.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

import jwt


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: UUID
    account_ids: frozenset[int]
    expires_at: float

    def may_act_on(self, account_id: int) -> bool:
        return account_id in self.account_ids


@dataclass(frozen=True, slots=True)
class AuthFailure:
    detail: str


class TokenVerifier:
    def __init__(
        self, hs256_secret: str | None, rs256_public_key: str | None = None, cache_size: int = 4096
    ) -> None:
        self._keys: list[tuple[str | bytes, str]] = []
        if hs256_secret:
            self._keys.append((hs256_secret, "HS256"))
        if rs256_public_key:
            self._keys.append((rs256_public_key, "RS256"))
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cache_size = cache_size

    def verify(
        self, authorization: bytes | None, now: float | None = None
    ) -> Principal | AuthFailure:
        now = time.time() if now is None else now
        if not authorization:
            return AuthFailure("the authorization header is missing")
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return AuthFailure("the authorization header is not a Bearer token")
        token = token.strip()
        principal = self._cache.get(token)
        if principal is None:
            verified = self._decode(token)
            if isinstance(verified, AuthFailure):
                return verified
            principal = verified
            self._cache[token] = principal
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if principal.expires_at <= now:
            return AuthFailure("the token has expired")
        return principal

    def _decode(self, token: bytes) -> Principal | AuthFailure:
        if not self._keys:
            return AuthFailure("no key is configured to verify tokens")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.DecodeError:
            return AuthFailure("the token is malformed")
        key = next((key for key, alg in self._keys if alg == algorithm), None)
        if key is None:
            return AuthFailure(f"tokens signed with {algorithm!r} are not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            return AuthFailure("the token has expired")
        except jwt.InvalidSignatureError:
            return AuthFailure("the token's signature is invalid")
        except jwt.InvalidTokenError as error:
            return AuthFailure(f"the token is invalid: {error}")
        return _principal(claims)


def _principal(claims: dict[str, object]) -> Principal | AuthFailure:
    try:
        user_id = UUID(str(claims["sub"]))
    except ValueError:
        return AuthFailure("the token's sub is not a user id (UUID)")
    account_ids = claims.get("account_ids")
    if not isinstance(account_ids, list) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in account_ids
    ):
        return AuthFailure("the token's account_ids is not a list of integers")
    expires_at = claims["exp"]
    assert isinstance(expires_at, int | float)  # PyJWT has checked it is a number
    return Principal(
        user_id=user_id, account_ids=frozenset(account_ids), expires_at=float(expires_at)
    )
