"""Named places where the fault suite makes a worker stop itself, to hit a window a signal
from outside could only hit by luck (e.g. after a batch's database commit and before its
Kafka commit).

Off unless FIELDING_FAILPOINTS names them, comma-separated, each as `name` (the first pass
trips it) or `name@S` (the first pass at least S seconds after the process started). For
tests, never for production; when off, a failpoint costs a dictionary lookup per batch.
"""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger(__name__)

# After a batch's database transaction committed, before its Kafka transaction commits.
FREEZE_BEFORE_KAFKA_COMMIT = "freeze_before_kafka_commit"


def armed(setting: str, now: float) -> dict[str, float]:
    """Each armed failpoint and the monotonic time from which it trips."""
    points = {}
    for item in filter(None, (part.strip() for part in setting.split(","))):
        name, _, after = item.partition("@")
        points[name] = now + (float(after) if after else 0.0)
    return points


_trips_from = armed(os.environ.get("FIELDING_FAILPOINTS", ""), time.monotonic())


def freeze_once(name: str) -> None:
    """When the armed failpoint `name` trips, the process stops itself with SIGSTOP, as a long
    GC pause or a frozen VM would: nothing runs until someone sends SIGCONT. Once only."""
    if name not in _trips_from or time.monotonic() < _trips_from[name]:
        return
    del _trips_from[name]
    log.warning("failpoint %s: stopping this process until SIGCONT", name)
    os.kill(os.getpid(), signal.SIGSTOP)
