"""Which Postgres failures are worth retrying."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from worker.service.ports import TransientFailure

TRANSIENT = (
    OSError,  # includes ConnectionError: the server is unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # e.g. the connection was closed mid-query
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
)


@contextmanager
def translate_transient() -> Iterator[None]:
    try:
        yield
    except TRANSIENT as error:
        raise TransientFailure(f"database: {type(error).__name__}: {error}") from error
