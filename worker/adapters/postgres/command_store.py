"""The CommandStore port on Postgres: set-based statements, one transaction per batch."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import asyncpg

from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from worker.adapters.postgres.errors import translate_transient
from worker.service.ports import Quota, RecordOrigin, RememberedOutcome, RunChange, TransientFailure

REMEMBERED = """
SELECT o.account_id, o.command_id, o.fingerprint, o.status, o.result, o.event,
       o.source_topic, o.source_partition, o.source_offset
FROM command_outcomes o
JOIN unnest($1::int[], $2::text[]) AS k(account_id, command_id)
  ON o.account_id = k.account_id AND o.command_id = k.command_id
"""

LOCK_RUNS = """
SELECT id, account_id, project_id, target_group_id, status, version
FROM fielding_runs WHERE id = ANY($1::text[])
ORDER BY id
FOR UPDATE
"""

# The compare-and-swap: a row is written only if its version is still the one read.
UPDATE_RUNS = """
UPDATE fielding_runs AS r
SET status = u.status, version = u.version, last_changed_at = u.changed_at,
    last_changed_by = u.changed_by
FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::uuid[])
     AS u(id, status, version, expected_version, changed_at, changed_by)
WHERE r.id = u.id AND r.version = u.expected_version
"""

REMEMBER = """
INSERT INTO command_outcomes (account_id, command_id, fingerprint, status, result, event,
                              source_topic, source_partition, source_offset)
SELECT * FROM unnest($1::int[], $2::text[], $3::bytea[], $4::smallint[], $5::json[], $6::json[],
                     $7::text[], $8::int[], $9::bigint[])
ON CONFLICT (account_id, command_id) DO NOTHING
"""

# Counters in one window per account, shared by every replica. The table is UNLOGGED and
# written with synchronous_commit off: a counter lost in a crash costs nothing that matters,
# and the limit must not cost an fsync per batch.
TAKE_QUOTA = """
INSERT INTO account_command_rates AS r (account_id, window_start, used)
SELECT k.account_id, to_timestamp(floor(extract(epoch FROM now()) / $3) * $3), k.requested
FROM unnest($1::int[], $2::int[]) AS k(account_id, requested)
ON CONFLICT (account_id, window_start) DO UPDATE SET used = r.used + excluded.used
RETURNING r.account_id, r.used,
          extract(epoch FROM r.window_start + make_interval(secs => $3) - now())::float8
"""


class PostgresDecisionTransaction:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def remembered(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], RememberedOutcome]:
        rows = await self._connection.fetch(REMEMBERED, [k[0] for k in keys], [k[1] for k in keys])
        return {
            (row["account_id"], row["command_id"]): RememberedOutcome(
                account_id=row["account_id"], command_id=row["command_id"],
                fingerprint=bytes(row["fingerprint"]), status=row["status"],
                result=row["result"].encode(),
                event=row["event"].encode() if row["event"] is not None else None,
                origin=RecordOrigin(row["source_topic"], row["source_partition"], row["source_offset"]),
            )
            for row in rows
        }

    async def lock_runs(self, run_ids: Sequence[str]) -> dict[str, RunState]:
        rows = await self._connection.fetch(LOCK_RUNS, list(run_ids))
        return {
            row["id"]: RunState(
                key=RunKey(row["account_id"], row["project_id"], row["target_group_id"], row["id"]),
                status=RunStatus(row["status"]), version=row["version"],
            )
            for row in rows
        }

    async def save(self, changes: Sequence[RunChange], outcomes: Sequence[RememberedOutcome]) -> None:
        if changes:
            status = await self._connection.execute(
                UPDATE_RUNS,
                [c.run.key.fielding_run_id for c in changes],
                [c.run.status.value for c in changes],
                [c.run.version for c in changes],
                [c.expected_version for c in changes],
                [c.changed_at for c in changes],
                [c.changed_by for c in changes],
            )
            if int(status.split()[-1]) != len(changes):
                raise TransientFailure("a fielding run changed under the batch; retrying it")
        if outcomes:
            status = await self._connection.execute(
                REMEMBER,
                [o.account_id for o in outcomes],
                [o.command_id for o in outcomes],
                [o.fingerprint for o in outcomes],
                [o.status for o in outcomes],
                [o.result.decode() for o in outcomes],
                [o.event.decode() if o.event is not None else None for o in outcomes],
                [o.origin.topic for o in outcomes],
                [o.origin.partition for o in outcomes],
                [o.origin.offset for o in outcomes],
            )
            if int(status.split()[-1]) != len(outcomes):
                # Another worker decided one of these command ids meanwhile (the same command
                # on two partitions). Roll back; the retry replays what that worker decided.
                raise TransientFailure("a command was decided concurrently; retrying the batch")


class PostgresCommandStore:
    def __init__(self, pool: asyncpg.Pool, rate_window_seconds: int, rate_limit: int) -> None:
        self._pool = pool
        self._rate_window_seconds = rate_window_seconds
        self._rate_limit = rate_limit

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresDecisionTransaction]:
        with translate_transient():
            async with self._pool.acquire() as connection, connection.transaction():
                yield PostgresDecisionTransaction(connection)

    async def take_quota(self, requested: Mapping[int, int]) -> dict[int, Quota]:
        accounts = list(requested)
        with translate_transient():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SET LOCAL synchronous_commit = off")
                rows = await connection.fetch(
                    TAKE_QUOTA, accounts, [requested[a] for a in accounts], self._rate_window_seconds
                )
        quotas = {}
        for account_id, used, seconds_left in rows:
            before = used - requested[account_id]
            quotas[account_id] = Quota(
                allowed=max(0, min(requested[account_id], self._rate_limit - before)),
                retry_after_seconds=max(1, math.ceil(seconds_left)),
            )
        return quotas
