"""What /healthz and /readyz answer, from facts the worker records as it goes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

# Partitions lost this many times in a row with no batch committed in between, or one
# partition lost this many times at the same offset while others go on, is a worker that
# keeps failing (a broker restart costs one or two).
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
    # Per partition with records waiting when the pipeline failed: (committed offset then,
    # failures in a row at that offset).
    stuck: dict[str, tuple[int, int]] = field(default_factory=dict)

    def progressed(self, partitions: Iterable[str] = ()) -> None:
        """A batch committed (for `partitions`)."""
        self.last_progress_at = time.time()
        self.consecutive_failures = 0
        for partition in partitions:
            self.stuck.pop(partition, None)

    def idle(self) -> None:
        """Nothing waits anywhere: nothing is stalled or stuck."""
        self.progressed()
        self.stuck.clear()

    def failed(self, reason: str, waiting: Mapping[str, int]) -> None:
        """The pipeline failed; `waiting`: the committed offset of each partition that had
        records waiting."""
        self.consecutive_failures += 1
        self.last_failure = reason[:200]
        stuck = {}
        for partition, offset in waiting.items():
            before = self.stuck.get(partition)
            again = before is not None and before[0] == offset
            stuck[partition] = (offset, before[1] + 1 if before and again else 1)
        self.stuck = stuck

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
        for partition, (offset, failures) in sorted(self.stuck.items()):
            if failures >= FAILURES_BEFORE_UNHEALTHY:
                return False, (
                    f"failing: partition {partition} failed {failures} times at offset {offset} "
                    f"(last: {self.last_failure})"
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


@dataclass
class ServeHealth:
    """`serve`'s probes: alive while its Kafka clients are (`problem` says what died), ready
    while it is alive and its database answers."""

    problem: Callable[[], str | None]
    database_ok: bool = False
    running: bool = True

    def liveness(self) -> tuple[bool, str]:
        dead = self.problem()
        if dead is not None:
            return False, dead
        return (True, "ok") if self.running else (False, "stopping")

    def readiness(self) -> tuple[bool, str]:
        alive, detail = self.liveness()
        if not alive:
            return False, detail
        if not self.database_ok:
            return False, "the database is not reachable"
        return True, "ok"
