"""Named places where the fault suite makes a worker stop itself, to hit a window a signal
from outside could only hit by luck (e.g. after a batch's database commit and before its
Kafka commit).

Off unless FIELDING_FAILPOINTS names them, comma-separated, each as `name` (the first pass
trips it) or `name@N` (the Nth pass does). For tests, never for production; when off, a
failpoint costs a dictionary lookup per batch.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

# After a batch's database transaction committed, before its Kafka transaction commits.
FREEZE_BEFORE_KAFKA_COMMIT = "freeze_before_kafka_commit"


def armed(setting: str) -> dict[str, int]:
    """Each armed failpoint and the passes left before it trips."""
    points = {}
    for item in filter(None, (part.strip() for part in setting.split(","))):
        name, _, passes = item.partition("@")
        points[name] = int(passes) if passes else 1
    return points


_passes_left = armed(os.environ.get("FIELDING_FAILPOINTS", ""))


def freeze_once(name: str) -> None:
    """When the armed failpoint `name` trips, the process stops itself with SIGSTOP, as a long
    GC pause or a frozen VM would: nothing runs until someone sends SIGCONT. Once only."""
    if name not in _passes_left:
        return
    _passes_left[name] -= 1
    if _passes_left[name] > 0:
        return
    del _passes_left[name]
    log.warning("failpoint %s: stopping this process until SIGCONT", name)
    os.kill(os.getpid(), signal.SIGSTOP)
