"""Which Postgres failures are worth retrying: the server unreachable or going away, too busy
(connections, memory, disk), read-only while a failover promotes a replica, or a lost race."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from worker.service.ports import StatementTimeout, TransientFailure

TRANSIENT = (
    OSError,  # includes ConnectionError: the server is unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # e.g. the connection was closed mid-query
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash shutdown (57P0x)
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.LockNotAvailableError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or a primary being demoted
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
)


@contextmanager
def translate_transient() -> Iterator[None]:
    try:
        yield
    except asyncpg.QueryCanceledError as error:  # statement_timeout, or a cancel by an admin
        raise StatementTimeout(f"database: {type(error).__name__}: {error}") from error
    except TRANSIENT as error:
        raise TransientFailure(f"database: {type(error).__name__}: {error}") from error
