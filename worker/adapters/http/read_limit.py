"""Reads are limited per account, as the public API lists: over the limit, 429 with
`retry-after`. Counted in each serve process (a read touches the store once; a shared counter
would cost it a write), in fixed windows: with N replicas an account may read up to N times
the limit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from schemas.errors import TooManyRequestsProblem
from worker.adapters.http.answers import ApiProblem
from worker.observability import metrics

# Accounts tracked before windows that have ended are dropped.
PRUNE_AT = 10_000


@dataclass
class ReadLimit:
    per_window: int  # 0: no limit
    window_seconds: float
    clock: Callable[[], float] = time.monotonic
    _windows: dict[int, tuple[float, int]] = field(default_factory=dict)

    def take(self, account_id: int) -> None:
        """Counts one read of `account_id`; raises the 429 when it is over the limit."""
        if self.per_window <= 0:
            return
        now = self.clock()
        start = now - now % self.window_seconds
        began, used = self._windows.get(account_id, (start, 0))
        if began != start:
            used = 0
        if used >= self.per_window:
            metrics.HTTP_REFUSED.labels("read_limit").inc()
            wait = max(1, math.ceil(start + self.window_seconds - now))
            body = TooManyRequestsProblem(
                details=f"account {account_id} read more than its limit; retry after {wait} s"
            )
            raise ApiProblem(429, body.model_dump(mode="json"), {"retry-after": str(wait)})
        if len(self._windows) >= PRUNE_AT:
            self._windows = {a: w for a, w in self._windows.items() if w[0] == start}
        self._windows[account_id] = (start, used + 1)


def read_limit_of(request: Request) -> ReadLimit:
    limit: ReadLimit = request.app.state.read_limit
    return limit
