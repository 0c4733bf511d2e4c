"""Due runs and the scheduler's lease, in Postgres.

Due runs are read from `fielding_run_timers` (migrations 0005 and 0007: the runs that can come
due, with what their timer commands need, kept by triggers), account by account through the
(kind, account_id, due_at, run_id) index: a scan costs the due runs it reads plus one index probe
per account with a timer, not what the table holds (docs/decisions/fair-timers.md).
"""

from __future__ import annotations

import asyncpg

from worker.adapters.postgres.errors import translate_transient
from worker.service.scheduler import DueRun, TimerKind

# The accounts with a timer of the kind, one index probe each (a loose index scan), those with
# one due kept; then each one's earliest due runs, an even share of the limit each, in turns.
DUE = """
WITH RECURSIVE accounts(account_id, first_due) AS (
    (SELECT account_id, due_at FROM fielding_run_timers WHERE kind = $1
      ORDER BY account_id, due_at LIMIT 1)
    UNION ALL
    SELECT later.account_id, later.due_at
      FROM accounts AS a CROSS JOIN LATERAL (
           SELECT account_id, due_at FROM fielding_run_timers
            WHERE kind = $1 AND account_id > a.account_id
            ORDER BY account_id, due_at LIMIT 1) AS later
), due_accounts AS (
    SELECT account_id FROM accounts WHERE first_due <= now()
)
SELECT t.run_id, t.account_id, t.project_id, t.target_group_id, t.version, t.due_at
  FROM due_accounts AS a CROSS JOIN LATERAL (
       SELECT run_id, account_id, project_id, target_group_id, version, due_at,
              row_number() OVER (ORDER BY due_at, run_id) AS turn
         FROM fielding_run_timers
        WHERE kind = $1 AND account_id = a.account_id AND due_at <= now()
        ORDER BY account_id, due_at, run_id
        LIMIT greatest(1, $2 / (SELECT count(*) FROM due_accounts))) AS t
 ORDER BY t.turn, t.due_at, t.run_id
 LIMIT $2
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

    async def due(self, kind: TimerKind, limit: int) -> list[DueRun]:
        with translate_transient():
            rows = await self._pool.fetch(DUE, kind, limit)
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
