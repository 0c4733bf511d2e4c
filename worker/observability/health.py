"""What /healthz and /readyz answer, from facts the worker records as it goes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Partitions lost this many times in a row, with no batch committed in between, is a worker
# that keeps failing (a broker restart costs one or two).
FAILURES_BEFORE_UNHEALTHY = 5


@dataclass
class Health:
    """Liveness means progress: lag with no committed batch for `stall_seconds` is unhealthy,
    and so is a worker whose pipeline keeps failing."""

    stall_seconds: float
    started_at: float = field(default_factory=time.time)
    last_progress_at: float = field(default_factory=time.time)
    total_lag: int = 0
    in_group: bool = False
    database_ok: bool = False
    running: bool = True
    consecutive_failures: int = 0
    last_failure: str = ""

    def progressed(self) -> None:
        self.last_progress_at = time.time()
        self.consecutive_failures = 0

    def failed(self, reason: str) -> None:
        self.consecutive_failures += 1
        self.last_failure = reason[:200]

    def liveness(self, now: float | None = None) -> tuple[bool, str]:
        now = time.time() if now is None else now
        if not self.running:
            return False, "the consumer loop has stopped"
        idle = now - self.last_progress_at
        if self.consecutive_failures >= FAILURES_BEFORE_UNHEALTHY:
            return False, (
                f"failing: partitions lost {self.consecutive_failures} times in a row "
                f"without progress (last: {self.last_failure})"
            )
        if self.total_lag > 0 and idle > self.stall_seconds:
            return False, f"stalled: lag {self.total_lag}, no progress for {idle:.0f}s"
        return True, f"ok: lag {self.total_lag}, last progress {idle:.0f}s ago"

    def readiness(self) -> tuple[bool, str]:
        if not self.in_group:
            return False, "not (yet) a member of the consumer group"
        if not self.database_ok:
            return False, "the database is not reachable"
        return True, "ok"
