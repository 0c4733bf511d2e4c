"""Connections to Postgres."""

from __future__ import annotations

import asyncpg


async def create_pool(database_url: str, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        database_url, min_size=1, max_size=max_size,
        server_settings={
            "application_name": "fielding-worker",
            # A worker frozen or cut off inside a transaction must not hold row locks forever.
            "idle_in_transaction_session_timeout": "30s",
        },
    )
