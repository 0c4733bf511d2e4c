"""Reading a remembered command's result, for `GET .../command-results/{command_id}` and
`fielding-worker results get`."""

from __future__ import annotations

import asyncpg

GET = "SELECT result FROM command_outcomes WHERE account_id = $1 AND command_id = $2"


async def get_result(
    connection: asyncpg.Connection | asyncpg.Pool, account_id: int, command_id: str
) -> bytes | None:
    """The command's result as it was published (the same JSON text), or None: unknown,
    expired, or of a status that is not remembered (400, 401, 403, 429, 500)."""
    result = await connection.fetchval(GET, account_id, command_id)
    return None if result is None else str(result).encode()
