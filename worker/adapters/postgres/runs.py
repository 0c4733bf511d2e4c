"""Reading and writing whole fielding runs, for `fielding-worker runs put|get`. A run always has
its times and who last changed it (the columns are NOT NULL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from fielding_statemachine.status import RunStatus
from schemas.types import etag_of, format_timestamp


@dataclass(frozen=True, slots=True)
class FieldingRunRecord:
    account_id: int
    project_id: str
    target_group_id: str
    id: str
    status: RunStatus
    version: int
    start_fielding_at: datetime
    end_fielding_at: datetime
    last_changed_at: datetime
    last_changed_by: UUID

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "project_id": self.project_id,
            "target_group_id": self.target_group_id,
            "id": self.id,
            "status": self.status.value,
            "version": self.version,
            "etag": etag_of(self.version),
            "start_fielding_at": format_timestamp(self.start_fielding_at),
            "end_fielding_at": format_timestamp(self.end_fielding_at),
            "last_changed_at": format_timestamp(self.last_changed_at),
            "last_changed_by": str(self.last_changed_by),
        }


COLUMNS = (
    "account_id, project_id, target_group_id, id, status, version, start_fielding_at, "
    "end_fielding_at, last_changed_at, last_changed_by"
)

# A replace is a change like any other: the version grows by one, unless one is given.
PUT = f"""
INSERT INTO fielding_runs ({COLUMNS})
VALUES ($1, $2, $3, $4, $5, coalesce($6, 1), $7, $8, now(), $9)
ON CONFLICT (id) DO UPDATE SET
    account_id = excluded.account_id, project_id = excluded.project_id,
    target_group_id = excluded.target_group_id, status = excluded.status,
    version = coalesce($6, fielding_runs.version + 1),
    start_fielding_at = excluded.start_fielding_at, end_fielding_at = excluded.end_fielding_at,
    last_changed_at = now(), last_changed_by = excluded.last_changed_by
RETURNING {COLUMNS}
"""


def _record(row: asyncpg.Record) -> FieldingRunRecord:
    return FieldingRunRecord(**{**dict(row), "status": RunStatus(row["status"])})


async def put_run(
    connection: asyncpg.Connection | asyncpg.Pool,
    *,
    account_id: int,
    project_id: str,
    target_group_id: str,
    fielding_run_id: str,
    status: RunStatus,
    start_fielding_at: datetime,
    end_fielding_at: datetime,
    changed_by: UUID,
    version: int | None = None,
) -> FieldingRunRecord:
    row = await connection.fetchrow(
        PUT,
        account_id,
        project_id,
        target_group_id,
        fielding_run_id,
        status.value,
        version,
        start_fielding_at,
        end_fielding_at,
        changed_by,
    )
    assert row is not None
    return _record(row)


async def get_run(
    connection: asyncpg.Connection | asyncpg.Pool, fielding_run_id: str
) -> FieldingRunRecord | None:
    row = await connection.fetchrow(
        f"SELECT {COLUMNS} FROM fielding_runs WHERE id = $1", fielding_run_id
    )
    return _record(row) if row else None


async def runs_of_target_group(
    connection: asyncpg.Connection | asyncpg.Pool,
    account_id: int,
    project_id: str,
    target_group_id: str,
) -> list[FieldingRunRecord]:
    """The target group's run under this account and project: none or one."""
    rows = await connection.fetch(
        f"SELECT {COLUMNS} FROM fielding_runs"
        " WHERE target_group_id = $1 AND account_id = $2 AND project_id = $3",
        target_group_id,
        account_id,
        project_id,
    )
    return [_record(row) for row in rows]
