"""Due runs and the scheduler's lease, in Postgres.

Due runs are read through the partial indexes of migration 0005 (runs that can come due, in
time order), so a scan costs what the due runs cost, not what the table holds.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from worker.adapters.postgres.errors import translate_transient
from worker.service.scheduler import DueRun, TimerKind


def _due(column: str, statuses: str, after: bool) -> str:
    # The predicate is the partial index's, and the order its key: an index range scan.
    return f"""
        SELECT id, account_id, project_id, target_group_id, version, {column}
          FROM fielding_runs
         WHERE status IN ({statuses}) AND {column} IS NOT NULL AND {column} <= now()
           {f"AND ({column}, id) > ($2, $3)" if after else ""}
         ORDER BY {column}, id
         LIMIT $1
    """


DUE = {
    ("start", False): _due("start_fielding_at", "'scheduled'", after=False),
    ("start", True): _due("start_fielding_at", "'scheduled'", after=True),
    ("end", False): _due("end_fielding_at", "'live', 'paused'", after=False),
    ("end", True): _due("end_fielding_at", "'live', 'paused'", after=True),
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

    async def due(
        self, kind: TimerKind, after: tuple[datetime, str] | None, limit: int
    ) -> list[DueRun]:
        with translate_transient():
            if after is None:
                rows = await self._pool.fetch(DUE[(kind, False)], limit)
            else:
                rows = await self._pool.fetch(DUE[(kind, True)], limit, *after)
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
