"""Due runs and the scheduler's lease, in Postgres.

Due runs are read from `fielding_run_timers` (migrations 0005 and 0007: the runs that can come
due, with what their timer commands need, kept by triggers). The accounts with due runs are
counted through the (kind, due_at) index, which carries the account: the cost follows the due
runs, not what the table holds. Each account's share is then read through the
(kind, account_id, due_at, run_id) index (docs/decisions/fair-timers.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from worker.adapters.postgres.errors import translate_transient
from worker.service.scheduler import DueRun, TimerKind

DUE_ACCOUNTS = """
SELECT account_id, count(*) FROM fielding_run_timers
 WHERE kind = $1 AND due_at <= now()
 GROUP BY account_id
"""

# Each account's earliest due runs, as many as its share.
DUE = """
SELECT t.run_id, t.account_id, t.project_id, t.target_group_id, t.version, t.due_at
  FROM unnest($2::integer[], $3::integer[]) AS a(account_id, share)
 CROSS JOIN LATERAL (
       SELECT run_id, account_id, project_id, target_group_id, version, due_at
         FROM fielding_run_timers
        WHERE kind = $1 AND account_id = a.account_id AND due_at <= now()
        ORDER BY account_id, due_at, run_id
        LIMIT a.share) AS t
"""

# Taken when free or expired, renewed by its holder; one row per lease name.
HOLD = """
INSERT INTO scheduler_leases AS l (name, holder, expires_at)
VALUES ('timers', $1, now() + make_interval(secs => $2))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
 WHERE l.holder = excluded.holder OR l.expires_at < now()
RETURNING holder
"""


class PostgresDueRuns:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def due_accounts(self, kind: TimerKind) -> dict[int, int]:
        with translate_transient():
            rows = await self._pool.fetch(DUE_ACCOUNTS, kind)
        return {account: count for account, count in rows}

    async def due(self, kind: TimerKind, limits: Mapping[int, int]) -> list[DueRun]:
        with translate_transient():
            rows = await self._pool.fetch(DUE, kind, list(limits), list(limits.values()))
        return [
            DueRun(
                kind=kind,
                account_id=row["account_id"],
                project_id=row["project_id"],
                target_group_id=row["target_group_id"],
                fielding_run_id=row["run_id"],
                version=row["version"],
                due_at=row["due_at"],
            )
            for row in rows
        ]

    async def hold_lease(self, holder: str, seconds: float) -> bool:
        with translate_transient():
            held = await self._pool.fetchval(HOLD, holder, seconds)
        return bool(held == holder)
