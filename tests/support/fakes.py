"""An in-memory CommandStore, for fast tests of the service layer (a fake, not a mock)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fielding_statemachine.decisions import RunState
from worker.service.ports import Quota, RememberedOutcome, RunChange, Snapshot, TransientFailure


class InMemoryStore:
    def __init__(self, rate_limit: int = 0) -> None:
        self.runs: dict[str, RunState] = {}
        self.outcomes: dict[tuple[int, str], RememberedOutcome] = {}
        self.rate_limit = rate_limit
        self.used: dict[int, int] = {}
        self.saves = 0

    def put(self, run: RunState) -> None:
        self.runs[run.key.fielding_run_id] = run

    async def load(
        self, run_ids: Sequence[str], command_keys: Sequence[tuple[int, str]]
    ) -> Snapshot:
        return Snapshot(
            runs={i: self.runs[i] for i in run_ids if i in self.runs},
            outcomes={k: self.outcomes[k] for k in command_keys if k in self.outcomes},
        )

    async def save(
        self, changes: Sequence[RunChange], outcomes: Sequence[RememberedOutcome]
    ) -> None:
        for change in changes:
            if self.runs[change.run.key.fielding_run_id].version != change.expected_version:
                raise TransientFailure("compare-and-swap failed")
        if any((o.account_id, o.command_id) in self.outcomes for o in outcomes):
            raise TransientFailure("a command was decided concurrently")
        for change in changes:
            self.runs[change.run.key.fielding_run_id] = change.run
        for outcome in outcomes:
            self.outcomes[(outcome.account_id, outcome.command_id)] = outcome
        self.saves += 1

    async def take_quota(self, requested: Mapping[int, int]) -> dict[int, Quota]:
        quotas = {}
        for account, count in requested.items():
            before = self.used.get(account, 0)
            self.used[account] = before + count
            quotas[account] = Quota(max(0, min(count, self.rate_limit - before)), math.ceil(0.5))
        return quotas
