"""A time limit that does not depend on the awaited code honouring cancellation.

aiokafka's transactional calls wait on futures its sender task resolves; when that task has
died (seen after a broker restart), they wait forever, and some swallow a cancellation, so
`asyncio.wait_for` could wait forever too. A lost partition is the safe answer: the member
rejoins, the next owner fences this producer, and the committed offsets decide what is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from worker.adapters.kafka.errors import PartitionLost

T = TypeVar("T")


async def within(seconds: float, awaitable: Awaitable[T], what: str) -> T:
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()  # not awaited: it may never finish
        raise PartitionLost(f"{what} did not finish in {seconds:.0f}s")
    return task.result()
