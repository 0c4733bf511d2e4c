"""Runs past their due time that have not moved: a scheduler stopped, a lease held by a
replica that died, a worker behind. Read from `fielding_run_timers` (the runs that can come
due), through its (kind, due_at) index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# How late a run is counted as, each bucket counting every run at least that late.
LATENESS = {"1m": 60, "10m": 600, "1h": 3600}

COUNT = """
SELECT kind,
       count(*) FILTER (WHERE due_at < now() - make_interval(secs => $1)),
       count(*) FILTER (WHERE due_at < now() - make_interval(secs => $2)),
       count(*) FILTER (WHERE due_at < now() - make_interval(secs => $3))
  FROM fielding_run_timers
 WHERE kind IN ('start', 'end') AND due_at < now() - make_interval(secs => $1)
 GROUP BY kind
"""
LIST = """
SELECT r.id, r.account_id, r.status, t.kind, t.due_at,
       extract(epoch FROM now() - t.due_at)::float8 AS late_seconds
  FROM fielding_run_timers AS t JOIN fielding_runs AS r ON r.id = t.run_id
 WHERE t.kind IN ('start', 'end') AND t.due_at < now() - make_interval(secs => $1)
 ORDER BY t.due_at
 LIMIT $2
"""


@dataclass(frozen=True)
class OverdueRun:
    fielding_run_id: str
    account_id: int
    status: str
    kind: str  # start or end
    due_at: datetime
    late_seconds: float


async def overdue_counts(pool: asyncpg.Pool) -> dict[tuple[str, str], int]:
    """(kind, lateness bucket) -> runs at least that late; every pair present, zeros too."""
    rows = await pool.fetch(COUNT, *LATENESS.values())
    counts = {(kind, late): 0 for kind in ("start", "end") for late in LATENESS}
    for row in rows:
        for n, late in enumerate(LATENESS, start=1):
            counts[(row["kind"], late)] = row[n]
    return counts


async def overdue_runs(
    pool: asyncpg.Pool, late_seconds: float, limit: int = 1000
) -> list[OverdueRun]:
    """The runs due more than `late_seconds` ago, most overdue first."""
    rows = await pool.fetch(LIST, late_seconds, limit)
    return [OverdueRun(*row) for row in rows]
