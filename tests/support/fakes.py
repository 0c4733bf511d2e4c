"""An in-memory CommandStore, for fast tests of the service layer (a fake, not a mock)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

from fielding_statemachine.decisions import RunState
from worker.service.ports import (
    JobRecord,
    Quota,
    RememberedOutcome,
    RunChange,
    Snapshot,
    TransientFailure,
)


class InMemoryStore:
    def __init__(
        self, rate_limit: int = 0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.clock = clock
        self.runs: dict[str, RunState] = {}
        self.outcomes: dict[tuple[int, str], RememberedOutcome] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.changed_by: dict[str, UUID] = {}  # run id -> who changed it last
        self.changed_at: dict[str, datetime] = {}  # run id -> when it changed last
        self.rate_limit = rate_limit
        self.used: dict[int, int] = {}
        self.saves = 0

    def put(self, run: RunState) -> None:
        self.runs[run.key.fielding_run_id] = run

    async def load(
        self,
        run_ids: Sequence[str],
        target_group_ids: Sequence[str],
        command_keys: Sequence[tuple[int, str]],
    ) -> Snapshot:
        ids, groups = set(run_ids), set(target_group_ids)
        runs = {
            run_id: run
            for run_id, run in self.runs.items()
            if run_id in ids or run.key.target_group_id in groups
        }
        outcomes = {k: self.outcomes[k] for k in command_keys if k in self.outcomes}
        return Snapshot(runs=runs, outcomes=outcomes, now=self.clock())

    async def save(
        self,
        changes: Sequence[RunChange],
        outcomes: Sequence[RememberedOutcome],
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        taken = {run.key.target_group_id for run in self.runs.values()}
        for change in changes:
            run_id = change.run.key.fielding_run_id
            if change.expected_version is None:
                if run_id in self.runs or change.run.key.target_group_id in taken:
                    raise TransientFailure("a run was created concurrently")
            elif self.runs[run_id].version != change.expected_version:
                raise TransientFailure("compare-and-swap failed")
        if any((o.account_id, o.command_id) in self.outcomes for o in outcomes):
            raise TransientFailure("a command was decided concurrently")
        for change in changes:
            self.runs[change.run.key.fielding_run_id] = change.run
            self.changed_by[change.run.key.fielding_run_id] = change.changed_by
            self.changed_at[change.run.key.fielding_run_id] = change.changed_at
        for outcome in outcomes:
            self.outcomes[(outcome.account_id, outcome.command_id)] = outcome
        for job in jobs:
            self.jobs[job.job_id] = job
        self.saves += 1

    async def take_quota(self, requested: Mapping[int, int]) -> dict[int, Quota]:
        """One window that never ends, 0.5 s of it left."""
        quotas = {}
        for account, count in requested.items():
            before = self.used.get(account, 0)
            self.used[account] = before + count
            quotas[account] = Quota(self.rate_limit - before, 0.5, self.rate_limit, 1.0)
        return quotas

    async def give_back(self, units: Mapping[int, int], quotas: Mapping[int, Quota]) -> None:
        for account, count in units.items():
            self.used[account] -= count
