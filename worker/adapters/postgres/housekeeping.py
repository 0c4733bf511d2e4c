"""Keeping the store small: remembered outcomes expire, old rate windows go."""

from __future__ import annotations

import asyncpg

FORGET_OUTCOMES = """
DELETE FROM command_outcomes WHERE ctid IN (
    SELECT ctid FROM command_outcomes
    WHERE decided_at < now() - make_interval(secs => $1) LIMIT $2
)
"""
FORGET_RATE_WINDOWS = (
    "DELETE FROM account_command_rates WHERE window_start < now() - interval '1 hour'"
)


async def forget_expired(pool: asyncpg.Pool, retention_seconds: float, chunk: int = 10_000) -> int:
    """Deletes outcomes older than the retention, in chunks so no lock is held long."""
    forgotten = 0
    while True:
        status = await pool.execute(FORGET_OUTCOMES, retention_seconds, chunk)
        deleted = int(status.split()[-1])
        forgotten += deleted
        if deleted < chunk:
            break
    await pool.execute(FORGET_RATE_WINDOWS)
    return forgotten


async def database_reachable(pool: asyncpg.Pool) -> bool:
    try:
        return bool(await pool.fetchval("SELECT true", timeout=5))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
