"""Due runs and the scheduler's lease, in Postgres.

Due runs are read through the partial indexes of migration 0005 (runs that can come due, in
time order), so a scan costs what the due runs cost, not what the table holds.
"""

from __future__ import annotations

import asyncpg

from worker.adapters.postgres.errors import translate_transient
from worker.service.scheduler import DueRun, TimerKind

DUE = {
    "start": """
        SELECT id, account_id, project_id, target_group_id, version, start_fielding_at
          FROM fielding_runs
         WHERE status = 'scheduled' AND start_fielding_at IS NOT NULL
           AND start_fielding_at <= now()
         ORDER BY start_fielding_at, id
         LIMIT $1
    """,
    "end": """
        SELECT id, account_id, project_id, target_group_id, version, end_fielding_at
          FROM fielding_runs
         WHERE status IN ('live', 'paused') AND end_fielding_at IS NOT NULL
           AND end_fielding_at <= now()
         ORDER BY end_fielding_at, id
         LIMIT $1
    """,
}

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
            rows = await self._pool.fetch(DUE[kind], limit)
        return [
            DueRun(
                kind=kind,
                account_id=row["account_id"],
                project_id=row["project_id"],
                target_group_id=row["target_group_id"],
                fielding_run_id=row["id"],
                version=row["version"],
                due_at=row[5],
            )
            for row in rows
        ]

    async def hold_lease(self, holder: str, seconds: float) -> bool:
        with translate_transient():
            held = await self._pool.fetchval(HOLD, holder, seconds)
        return bool(held == holder)
