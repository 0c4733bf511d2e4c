"""Keeping the store small: remembered outcomes and stored jobs expire, old rate windows go."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

# An outcome is forgotten only once the Kafka transaction that published it has committed,
# i.e. its record is below the group's committed offset: after an outage longer than the
# retention, a redelivered command must still find what it was decided as (else a completion
# would become a 422 with no event). A partition with nothing committed keeps its outcomes.
FORGET_OUTCOMES = """
DELETE FROM command_outcomes WHERE ctid IN (
    SELECT o.ctid FROM command_outcomes o
    LEFT JOIN unnest($3::int[], $4::bigint[]) AS c(partition, committed)
           ON o.source_topic = $5 AND o.source_partition = c.partition
    WHERE o.decided_at < now() - make_interval(secs => $1)
      AND (o.source_topic <> $5 OR o.source_offset < c.committed)
    LIMIT $2
)
"""
FORGET_JOBS = """
DELETE FROM fielding_jobs WHERE ctid IN (
    SELECT ctid FROM fielding_jobs WHERE created_at < now() - make_interval(secs => $1) LIMIT $2
)
"""
FORGET_RATE_WINDOWS = (
    "DELETE FROM account_command_rates WHERE window_start < now() - interval '1 hour'"
)


async def forget_expired(
    pool: asyncpg.Pool,
    retention_seconds: float,
    commands_topic: str,
    committed: Mapping[int, int],
    chunk: int = 10_000,
) -> int:
    """Deletes outcomes older than the retention whose records the group has committed
    (`committed`: partition -> committed offset of `commands_topic`), in chunks so no lock is
    held long."""
    partitions = sorted(committed)
    offsets = [committed[p] for p in partitions]
    forgotten = 0
    while True:
        status = await pool.execute(
            FORGET_OUTCOMES, retention_seconds, chunk, partitions, offsets, commands_topic
        )
        deleted = int(status.split()[-1])
        forgotten += deleted
        if deleted < chunk:
            break
    await pool.execute(FORGET_RATE_WINDOWS)
    return forgotten


async def forget_jobs(pool: asyncpg.Pool, retention_seconds: float, chunk: int = 1_000) -> int:
    """Deletes the draft and bulk jobs kept longer than the retention, in chunks; a job is
    then 404 to `GET`, as any unknown job."""
    forgotten = 0
    while True:
        deleted = int((await pool.execute(FORGET_JOBS, retention_seconds, chunk)).split()[-1])
        forgotten += deleted
        if deleted < chunk:
            return forgotten


async def database_reachable(pool: asyncpg.Pool) -> bool:
    try:
        return bool(await pool.fetchval("SELECT true", timeout=5))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
