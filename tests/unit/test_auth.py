"""Token checks beyond HS256: RS256 with a public key, next to HS256."""

from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.commands import SECRET
from worker.service.auth import AuthFailure, Principal, TokenVerifier

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
CLAIMS = {"sub": str(uuid.uuid4()), "account_ids": [101], "exp": int(time.time()) + 600}


def bearer(token: str) -> bytes:
    return f"Bearer {token}".encode()


def test_rs256_tokens_are_accepted_with_the_public_key() -> None:
    verifier = TokenVerifier(SECRET, PUBLIC_PEM)
    principal = verifier.verify(bearer(jwt.encode(CLAIMS, PRIVATE, algorithm="RS256")))
    assert isinstance(principal, Principal) and principal.may_act_on(101)


def test_rs256_is_refused_without_a_public_key() -> None:
    verifier = TokenVerifier(SECRET)
    failure = verifier.verify(bearer(jwt.encode(CLAIMS, PRIVATE, algorithm="RS256")))
    assert isinstance(failure, AuthFailure) and "RS256" in failure.detail


def test_hs256_still_needs_the_right_secret_when_rs256_is_configured() -> None:
    verifier = TokenVerifier(SECRET, PUBLIC_PEM)
    forged = jwt.encode(CLAIMS, "another-hs256-secret-that-is-long-enough", algorithm="HS256")
    failure = verifier.verify(bearer(forged))
    assert isinstance(failure, AuthFailure) and "signature" in failure.detail
