"""Due runs and the scheduler's lease, in Postgres.

Due runs are read from `fielding_run_timers` (migration 0005: the runs that can come due, kept
by triggers), in time order, so a scan costs what the due runs cost, not what the table holds.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from worker.adapters.postgres.errors import translate_transient
from worker.service.scheduler import DueRun, TimerKind


def _due(after: bool) -> str:
    # An index range scan of fielding_run_timers_due (kind, due_at, run_id).
    return f"""
        SELECT r.id, r.account_id, r.project_id, r.target_group_id, r.version, t.due_at
          FROM fielding_run_timers AS t JOIN fielding_runs AS r ON r.id = t.run_id
         WHERE t.kind = $2 AND t.due_at <= now()
           {"AND (t.due_at, t.run_id) > ($3, $4)" if after else ""}
         ORDER BY t.due_at, t.run_id
         LIMIT $1
    """


DUE_FIRST, DUE_AFTER = _due(after=False), _due(after=True)

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
                rows = await self._pool.fetch(DUE_FIRST, limit, kind)
            else:
                rows = await self._pool.fetch(DUE_AFTER, limit, kind, *after)
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
