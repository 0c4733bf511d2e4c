"""Connections to Postgres."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
import asyncpg.transaction

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 10.0
# Beyond the server's statement_timeout, how long a call waits for any answer before the client
# gives up on its connection. Only a silent network (a dropped NAT or firewall entry, a relay or
# host gone without a reset) gets that far: the server answers a timed-out statement itself.
CLIENT_DEADLINE_MARGIN_SECONDS = 5.0
# How long closing a pool may take before its connections are dropped unannounced.
CLOSE_SECONDS = 5.0
# Refusals that waiting cannot mend: the settings are wrong.
NEVER_WORKS = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


class DatabaseMisconfigured(Exception):
    """Postgres answered, and refused these settings (password, role, database name)."""


class _DropsConnectionOnTimeout(asyncpg.Connection):  # type: ignore[misc]
    """A call that times out or is cancelled closes its connection at once. asyncpg would keep
    it until the server acknowledges the cancel, and release it to the pool only then: a
    silent peer never does, and the caller waits on the release. (executemany, prepare and
    cursors are not covered: the worker uses none of them.)"""

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._or_drop(super().execute(*args, **kwargs))

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._or_drop(super().fetch(*args, **kwargs))

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._or_drop(super().fetchrow(*args, **kwargs))

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._or_drop(super().fetchval(*args, **kwargs))

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False, deferrable: bool = False
    ) -> asyncpg.transaction.Transaction:
        self._check_open()
        return _Transaction(self, isolation, readonly, deferrable)

    async def _or_drop(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (TimeoutError, asyncio.CancelledError):
            self.terminate()
            raise


class _Transaction(asyncpg.transaction.Transaction):  # type: ignore[misc]
    """A transaction whose failed call dropped the connection ends with that call's error (a
    timeout, a cancellation), not with asyncpg's complaint that it cannot roll back on a closed
    connection: the server rolls back a transaction whose connection is gone."""

    async def __aexit__(self, extype: Any, ex: Any, tb: Any) -> None:
        if extype is not None and self._connection.is_closed():
            return
        await super().__aexit__(extype, ex, tb)


async def _check_client(connection: asyncpg.Connection) -> None:
    """A call dropped by the client (timed out, cancelled) sends no cancel request: its
    statement ends once the server sees the connection closed, which Postgres 14 and later
    look for while a statement runs. Older servers do not know the setting."""
    if connection.get_server_version() >= (14,):
        await connection.execute("SET client_connection_check_interval = '1s'")


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The worker changes no session state (only `SET LOCAL`, no advisory locks, cursors or
    LISTEN), so a connection needs no reset query, which would cost a round trip per batch."""


async def create_pool(
    database_url: str, max_size: int = 10, statement_timeout: float | None = None
) -> asyncpg.Pool:
    settings = {
        "application_name": "fielding-worker",
        # A worker frozen or cut off inside a transaction must not hold row locks forever.
        "idle_in_transaction_session_timeout": "30s",
    }
    command_timeout = None
    if statement_timeout is not None:
        settings["statement_timeout"] = f"{int(statement_timeout * 1000)}ms"
        # A call past it raises TimeoutError (a transient failure) instead of waiting for ever
        # on a connection whose far side is gone; the connection is dropped, so the retry gets a
        # fresh one.
        command_timeout = statement_timeout + CLIENT_DEADLINE_MARGIN_SECONDS
    return await asyncpg.create_pool(
        database_url,
        # No connection at creation: a worker (re)started while Postgres is away starts, joins
        # its group and waits on the database batch by batch, as it does when Postgres goes
        # away later, instead of exiting.
        min_size=0,
        max_size=max_size,
        # A connection attempt into a silent network gives up soon and is tried again.
        timeout=CONNECT_TIMEOUT_SECONDS,
        init=_check_client,
        reset=_keep_session,
        server_settings=settings,
        command_timeout=command_timeout,
        connection_class=_DropsConnectionOnTimeout,
    )


async def first_contact(pool: asyncpg.Pool) -> None:
    """Raises DatabaseMisconfigured when Postgres refuses the settings, which no wait can mend;
    returns, with a warning, when Postgres is merely away (batches wait for it)."""
    try:
        await pool.fetchval("SELECT 1")
    except NEVER_WORKS as error:
        raise DatabaseMisconfigured(f"Postgres refused the connection: {error}") from error
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        log.warning("Postgres unreachable at start (%r); waiting for it", error)


async def close_pool(pool: asyncpg.Pool) -> None:
    """Closes `pool` within CLOSE_SECONDS: a connection whose peer went silent would hold a
    graceful close up for the command timeout and then raise."""
    try:
        async with asyncio.timeout(CLOSE_SECONDS):
            await pool.close()
    except (TimeoutError, OSError, asyncpg.InterfaceError) as error:
        log.warning("Postgres connections dropped unannounced at close (%r)", error)
        pool.terminate()
