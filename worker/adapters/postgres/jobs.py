"""Reading the jobs the worker kept, for `fielding-worker jobs get` and the HTTP API."""

from __future__ import annotations

import asyncpg

from worker.service.ports import JobRecord

GET = """
SELECT job_id, account_id, project_id, target_group_id, command_type, body
  FROM fielding_jobs WHERE job_id = $1
"""


async def get_job(connection: asyncpg.Connection | asyncpg.Pool, job_id: str) -> JobRecord | None:
    row = await connection.fetchrow(GET, job_id)
    if row is None:
        return None
    return JobRecord(
        row["job_id"],
        row["account_id"],
        row["project_id"],
        row["target_group_id"],
        row["command_type"],
        row["body"].encode(),
    )
