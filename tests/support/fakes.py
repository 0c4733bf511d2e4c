"""An in-memory CommandStore, for fast tests of the service layer (a fake, not a mock)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from fielding_statemachine.decisions import RunState
from worker.service.ports import Quota, RememberedOutcome, RunChange, TransientFailure


class InMemoryStore:
    def __init__(self, rate_limit: int = 0) -> None:
        self.runs: dict[str, RunState] = {}
        self.outcomes: dict[tuple[int, str], RememberedOutcome] = {}
        self.rate_limit = rate_limit
        self.used: dict[int, int] = {}
        self.transactions = 0

    def put(self, run: RunState) -> None:
        self.runs[run.key.fielding_run_id] = run

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InMemoryStore._Transaction]:
        tx = InMemoryStore._Transaction(self)
        yield tx
        tx.commit()
        self.transactions += 1

    async def take_quota(self, requested: Mapping[int, int]) -> dict[int, Quota]:
        quotas = {}
        for account, count in requested.items():
            before = self.used.get(account, 0)
            self.used[account] = before + count
            quotas[account] = Quota(max(0, min(count, self.rate_limit - before)), math.ceil(0.5))
        return quotas

    class _Transaction:
        def __init__(self, store: InMemoryStore) -> None:
            self._store = store
            self._changes: Sequence[RunChange] = ()
            self._outcomes: Sequence[RememberedOutcome] = ()

        async def remembered(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], RememberedOutcome]:
            return {k: self._store.outcomes[k] for k in keys if k in self._store.outcomes}

        async def lock_runs(self, run_ids: Sequence[str]) -> dict[str, RunState]:
            return {i: self._store.runs[i] for i in run_ids if i in self._store.runs}

        async def save(self, changes: Sequence[RunChange], outcomes: Sequence[RememberedOutcome]) -> None:
            for change in changes:
                current = self._store.runs[change.run.key.fielding_run_id]
                if current.version != change.expected_version:
                    raise TransientFailure("compare-and-swap failed")
            self._changes, self._outcomes = changes, outcomes

        def commit(self) -> None:
            for change in self._changes:
                self._store.runs[change.run.key.fielding_run_id] = change.run
            for outcome in self._outcomes:
                self._store.outcomes.setdefault((outcome.account_id, outcome.command_id), outcome)
