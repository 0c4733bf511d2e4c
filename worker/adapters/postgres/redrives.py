"""The store's side of `fielding-worker dlq`: the re-drives recorded so far, the outcomes the
worker remembers for dead letters' commands, and claiming a dead letter before it is sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from worker.service.dead_letters import DeadLetter, Redrive, later_redrive

# Every re-drive of the DLQ topic, with its command: the plan matches dead letters of the same
# command in memory (served by the primary key's leading column, dlq_topic).
REDRIVES = """
SELECT dlq_partition, dlq_offset, began_at, sent_partition, sent_offset, account_id, command_id
  FROM dlq_redrives WHERE dlq_topic = $1
"""
# A claim of a dead letter with a command holds this lock until its transaction ends, and reads
# the command's re-drives (COMMAND_REDRIVES, by dlq_redrives_by_command, migration 0011) only
# once it holds it: of two re-drives claiming dead letters of one command at once, the second
# waits for the first's claim to commit and then sees it. A statement's snapshot is taken when
# it starts, so the lock is a statement of its own, before the read.
LOCK_COMMAND = "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))"
# A lock held elsewhere longer than this (another application's advisory lock of the same two
# numbers) stops the re-drive with its report rather than leaving it hanging.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'"
COMMAND_REDRIVES = """
SELECT dlq_partition, dlq_offset, began_at, sent_partition, sent_offset, account_id, command_id
  FROM dlq_redrives WHERE dlq_topic = $1 AND account_id = $2 AND command_id = $3
"""
ANSWERED = """
SELECT o.account_id, o.command_id, o.status
  FROM command_outcomes o
  JOIN unnest($1::int[], $2::text[]) AS c(account_id, command_id)
    ON o.account_id = c.account_id AND o.command_id = c.command_id
"""
CLAIM = """
INSERT INTO dlq_redrives (dlq_topic, dlq_partition, dlq_offset, account_id, command_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING
RETURNING began_at
"""
# With --force, an earlier re-drive's claim that was never confirmed is taken over: the one
# the plan saw (began at $6), never one made since (another re-drive's, perhaps sending right
# now), and never a confirmed one.
TAKE_OVER = """
INSERT INTO dlq_redrives (dlq_topic, dlq_partition, dlq_offset, account_id, command_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE SET began_at = now()
 WHERE dlq_redrives.sent_offset IS NULL AND dlq_redrives.began_at = $6
RETURNING began_at
"""
# A claim whose send wrote nothing (the record is too large for the commands topic) is undone:
# only this run's claim (began at $4, never confirmed), never another run's made since.
# RELEASE removes a fresh claim; RESTORE puts back the unconfirmed claim a --force took over
# (began at $5), which still says an earlier send may have reached the commands topic.
RELEASE = """
DELETE FROM dlq_redrives
 WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3
   AND began_at = $4 AND sent_offset IS NULL
"""
RESTORE = """
UPDATE dlq_redrives SET began_at = $5
 WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3
   AND began_at = $4 AND sent_offset IS NULL
"""
CONFIRM = """
UPDATE dlq_redrives SET sent_partition = $4, sent_offset = $5
 WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3
"""


class RedrivesTableMissing(RuntimeError):
    """The store predates `dlq_redrives` (migration 0010)."""

    def __init__(self) -> None:
        super().__init__("the store has no dlq_redrives table: run `fielding-worker migrate`")


async def redrives(
    connection: asyncpg.Connection | asyncpg.Pool, dlq_topic: str
) -> dict[tuple[int, int], Redrive]:
    """Every re-drive recorded for `dlq_topic`, by the dead letter's (partition, offset), each
    with the dead letter's command."""
    try:
        rows = await connection.fetch(REDRIVES, dlq_topic)
    except asyncpg.UndefinedTableError:
        raise RedrivesTableMissing() from None
    return _by_coordinates(rows)


def _by_coordinates(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int], Redrive]:
    return {
        (row["dlq_partition"], row["dlq_offset"]): Redrive(
            row["began_at"],
            None if row["sent_offset"] is None else (row["sent_partition"], row["sent_offset"]),
            (
                None
                if row["account_id"] is None or row["command_id"] is None
                else (row["account_id"], row["command_id"])
            ),
        )
        for row in rows
    }


async def answered(
    connection: asyncpg.Connection | asyncpg.Pool, commands: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """The remembered status of each of `commands` (account_id, command_id) that has one."""
    unique = sorted(set(commands))
    if not unique:
        return {}
    rows = await connection.fetch(ANSWERED, [a for a, _ in unique], [c for _, c in unique])
    return {(row["account_id"], row["command_id"]): row["status"] for row in rows}


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming a dead letter came to. `began_at`: when this run's claim began (what
    `release` matches), None when it holds none. `command_redriven`: when it holds none because
    another dead letter of the command has a re-drive that began after this one was
    dead-lettered (`later_redrive`, the plan's rule, checked again under the command's lock),
    that one by (partition, offset)."""

    began_at: datetime | None
    command_redriven: tuple[tuple[int, int], Redrive] | None = None


async def claim(
    connection: asyncpg.Connection | asyncpg.Pool,
    dlq_topic: str,
    letter: DeadLetter,
    *,
    take_over: datetime | None = None,
) -> Claim:
    """Records that this dead letter is about to be sent, unless a re-drive already stands for
    it (another `dlq redrive` got there first: no `began_at`) or for its command since it was
    dead-lettered (`command_redriven`). `take_over`: when the unconfirmed re-drive the plan saw
    began; that one, still unconfirmed, does not count.

    Its own transaction, at READ COMMITTED: the read after the lock must see the claim of the
    run that held it (a REPEATABLE READ default would keep the snapshot taken before the wait).
    Never call it inside a caller's transaction: the lock and the claim would last until that
    commits, across the send."""
    if isinstance(connection, asyncpg.Pool):
        async with connection.acquire() as acquired:
            return await claim(acquired, dlq_topic, letter, take_over=take_over)
    command = letter.command
    account_id, command_id = command if command is not None else (None, None)
    key = (dlq_topic, *letter.coordinates, account_id, command_id)
    async with connection.transaction(isolation="read_committed"):
        if command is not None:
            await connection.execute(LOCK_TIMEOUT)
            await connection.execute(LOCK_COMMAND, *command)
            rows = await connection.fetch(COMMAND_REDRIVES, dlq_topic, *command)
            found = later_redrive(letter, _by_coordinates(rows))
            if found is not None:
                return Claim(None, found)
        if take_over is None:
            began_at: datetime | None = await connection.fetchval(CLAIM, *key)
        else:
            began_at = await connection.fetchval(TAKE_OVER, *key, take_over)
    return Claim(began_at)


async def release(
    connection: asyncpg.Connection | asyncpg.Pool,
    dlq_topic: str,
    coordinates: tuple[int, int],
    began_at: datetime,
    *,
    taken_over: datetime | None = None,
) -> None:
    """Undoes this run's claim (the one that began at `began_at`) after a send that wrote
    nothing: removed, or, when it took over an earlier unconfirmed claim (`taken_over`, when
    that one began), that one put back as it was."""
    if taken_over is None:
        await connection.execute(RELEASE, dlq_topic, *coordinates, began_at)
    else:
        await connection.execute(RESTORE, dlq_topic, *coordinates, began_at, taken_over)


async def confirm(
    connection: asyncpg.Connection | asyncpg.Pool,
    dlq_topic: str,
    coordinates: tuple[int, int],
    sent_to: tuple[int, int],
) -> None:
    """Records where the broker put the re-driven record on the commands topic."""
    await connection.execute(CONFIRM, dlq_topic, *coordinates, *sent_to)
