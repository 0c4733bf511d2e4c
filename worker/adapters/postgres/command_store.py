"""The CommandStore port on Postgres: per batch, one read and one atomic write, one round trip each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from fielding_statemachine.decisions import RunKey, RunState
from fielding_statemachine.status import RunStatus
from worker.adapters.postgres.errors import translate_transient
from worker.service.ports import (
    JobRecord,
    Output,
    Quota,
    RecordOrigin,
    RememberedOutcome,
    RunChange,
    Snapshot,
)

# One statement, so one snapshot, and no locks: a decision that changes a run is checked by
# the compare-and-swap in save_decisions; one that changes nothing holds as of this read.
LOAD = """
SELECT
  now() AS now,
  ARRAY(SELECT ROW(id, account_id, project_id, target_group_id, status, version,
                   start_fielding_at, end_fielding_at)
          FROM fielding_runs WHERE id = ANY($1::text[]) OR target_group_id = ANY($2::text[])) AS runs,
  ARRAY(SELECT ROW(o.account_id, o.command_id, o.fingerprint, o.status, o.result,
                   o.source_topic, o.source_partition, o.source_offset, o.events::text[], o.event_keys,
                   o.states::text[], o.state_keys)
          FROM command_outcomes o
          JOIN unnest($3::int[], $4::text[]) AS k(account_id, command_id)
            ON o.account_id = k.account_id AND o.command_id = k.command_id) AS outcomes
"""

# The function is migration 0008's; it raises serialization_failure on a lost race.
SAVE = "SELECT save_decisions(" + ", ".join(f"${n}" for n in range(1, 38)) + ")"

# Counters in one window per account, shared by every replica. The table is UNLOGGED and
# written with synchronous_commit off: a counter lost in a crash costs nothing that matters,
# and the limit must not cost an fsync per batch. A window opens with what the account took
# beyond the limit ($4) and has not yet paid off, one limit per window since: a bulk job larger
# than the limit is paid for in the windows after it.
CARRIED = """coalesce((
    SELECT greatest(0, p.used - $4 * round(extract(epoch FROM {start} - p.window_start) / $3))
      FROM account_command_rates AS p
     WHERE p.account_id = {account} AND p.window_start < {start}
     ORDER BY p.window_start DESC LIMIT 1), 0)"""
WINDOW = "make_interval(secs => $3)"
TAKE_QUOTA = f"""
INSERT INTO account_command_rates AS r (account_id, window_start, used)
SELECT k.account_id, w.start,
       k.requested + {CARRIED.format(account="k.account_id", start="w.start")}
FROM unnest($1::int[], $2::int[]) AS k(account_id, requested),
     (SELECT to_timestamp(floor(extract(epoch FROM now()) / $3) * $3) AS start) AS w
ON CONFLICT (account_id, window_start) DO UPDATE
   SET used = r.used + excluded.used
              - {CARRIED.format(account="r.account_id", start="r.window_start")}
RETURNING r.account_id, r.used,
          extract(epoch FROM r.window_start + {WINDOW} - now())::float8, r.window_start
"""
GIVE_BACK = """
UPDATE account_command_rates AS r SET used = r.used - k.units
  FROM unnest($1::int[], $2::int[], $3::timestamptz[]) AS k(account_id, units, window_start)
 WHERE r.account_id = k.account_id AND r.window_start = k.window_start
"""


def _outputs(keys: Sequence[str], values: Sequence[str]) -> tuple[Output, ...]:
    return tuple(
        Output(key.encode(), value.encode()) for key, value in zip(keys, values, strict=True)
    )


class PostgresCommandStore:
    def __init__(self, pool: asyncpg.Pool, rate_window_seconds: int, rate_limit: int) -> None:
        self._pool = pool
        self._rate_window_seconds = rate_window_seconds
        self._rate_limit = rate_limit

    async def load(
        self,
        run_ids: Sequence[str],
        target_group_ids: Sequence[str],
        command_keys: Sequence[tuple[int, str]],
    ) -> Snapshot:
        with translate_transient():
            row = await self._pool.fetchrow(
                LOAD,
                list(run_ids),
                list(target_group_ids),
                [k[0] for k in command_keys],
                [k[1] for k in command_keys],
            )
        assert row is not None
        runs = {
            run_id: RunState(
                key=RunKey(account_id, project_id, target_group_id, run_id),
                status=RunStatus(status),
                version=version,
                start_fielding_at=start,
                end_fielding_at=end,
            )
            for run_id, account_id, project_id, target_group_id, status, version, start, end in row[
                "runs"
            ]
        }
        outcomes = {
            (account_id, command_id): RememberedOutcome(
                account_id=account_id,
                command_id=command_id,
                fingerprint=bytes(fingerprint),
                status=status,
                result=result.encode(),
                events=_outputs(event_keys, events),
                origin=RecordOrigin(topic, partition, offset),
                states=_outputs(state_keys, states),
            )
            for (
                account_id,
                command_id,
                fingerprint,
                status,
                result,
                topic,
                partition,
                offset,
                events,
                event_keys,
                states,
                state_keys,
            ) in row["outcomes"]
        }
        return Snapshot(runs, outcomes, row["now"])

    async def save(
        self,
        changes: Sequence[RunChange],
        outcomes: Sequence[RememberedOutcome],
        jobs: Sequence[JobRecord],
    ) -> None:
        updates = [c for c in changes if c.expected_version is not None]
        created = [c for c in changes if c.expected_version is None]
        events = [(n, e) for n, o in enumerate(outcomes, start=1) for e in o.events]
        states = [(n, e) for n, o in enumerate(outcomes, start=1) for e in o.states]
        with translate_transient():
            await self._pool.execute(
                SAVE,
                [c.run.key.fielding_run_id for c in updates],
                [c.run.status.value for c in updates],
                [c.run.version for c in updates],
                [c.expected_version for c in updates],
                # Times only where they changed (most changes are of the status alone).
                [c.run.start_fielding_at if c.times_changed else None for c in updates],
                [c.run.end_fielding_at if c.times_changed else None for c in updates],
                [c.changed_at for c in updates],
                [c.changed_by for c in updates],
                [c.run.key.fielding_run_id for c in created],
                [c.run.key.account_id for c in created],
                [c.run.key.project_id for c in created],
                [c.run.key.target_group_id for c in created],
                [c.run.status.value for c in created],
                [c.run.start_fielding_at for c in created],
                [c.run.end_fielding_at for c in created],
                [c.changed_at for c in created],
                [c.changed_by for c in created],
                [o.account_id for o in outcomes],
                [o.command_id for o in outcomes],
                [o.fingerprint for o in outcomes],
                [o.status for o in outcomes],
                [o.result.decode() for o in outcomes],
                [o.origin.topic for o in outcomes],
                [o.origin.partition for o in outcomes],
                [o.origin.offset for o in outcomes],
                [n for n, _ in events],
                [e.key.decode() for _, e in events],
                [e.value.decode() for _, e in events],
                [j.job_id for j in jobs],
                [j.account_id for j in jobs],
                [j.project_id for j in jobs],
                [j.target_group_id for j in jobs],
                [j.command_type for j in jobs],
                [j.body.decode() for j in jobs],
                [n for n, _ in states],
                [e.key.decode() for _, e in states],
                [e.value.decode() for _, e in states],
            )

    async def take_quota(self, requested: Mapping[int, int]) -> dict[int, Quota]:
        accounts = list(requested)
        with translate_transient():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SET LOCAL synchronous_commit = off")
                rows = await connection.fetch(
                    TAKE_QUOTA,
                    accounts,
                    [requested[a] for a in accounts],
                    self._rate_window_seconds,
                    self._rate_limit,
                )
        quotas = {}
        for account_id, used, seconds_left, window in rows:
            quotas[account_id] = Quota(
                left=self._rate_limit - (used - requested[account_id]),
                seconds_left=seconds_left,
                limit=self._rate_limit,
                window_seconds=self._rate_window_seconds,
                window=window,
            )
        return quotas

    async def give_back(self, units: Mapping[int, int], quotas: Mapping[int, Quota]) -> None:
        accounts = list(units)
        with translate_transient():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SET LOCAL synchronous_commit = off")
                await connection.execute(
                    GIVE_BACK,
                    accounts,
                    [units[a] for a in accounts],
                    [quotas[a].window for a in accounts],
                )
