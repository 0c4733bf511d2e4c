"""Connections to Postgres."""

from __future__ import annotations

import asyncpg


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
    if statement_timeout is not None:
        settings["statement_timeout"] = f"{int(statement_timeout * 1000)}ms"
    return await asyncpg.create_pool(
        database_url,
        # No connection at creation: a worker (re)started while Postgres is away starts, joins
        # its group and waits on the database batch by batch, as it does when Postgres goes
        # away later, instead of exiting.
        min_size=0,
        max_size=max_size,
        reset=_keep_session,
        server_settings=settings,
    )
