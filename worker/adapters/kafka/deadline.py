"""A time limit that does not depend on the awaited code honouring cancellation.

aiokafka's transactional calls wait on futures its sender task resolves; when that task has
died (seen after a broker restart), they wait forever, and some swallow a cancellation, so
`asyncio.wait_for` could wait forever too. Others let a cancellation of aiokafka's own tasks
escape, which would read as this task being cancelled and end it silently. A lost partition is
the safe answer to both: the member rejoins, the next owner fences this producer, and the
committed offsets decide what is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from worker.adapters.kafka.errors import PartitionLost

T = TypeVar("T")


def cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (a shutdown), as opposed to a
    CancelledError escaping from a library's own tasks."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _abandon(task: asyncio.Future[Any]) -> None:
    """Cancels a task that is not awaited any more (it may never finish), and takes its outcome
    whenever it comes, so that it is not reported as an exception never retrieved."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def within(seconds: float, awaitable: Awaitable[T], what: str) -> T:
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:  # the caller is cancelled: so is its call
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise PartitionLost(f"{what} did not finish in {seconds:.0f}s")
    if task.cancelled():
        raise PartitionLost(f"{what} was cancelled inside the Kafka client")
    return task.result()


async def inline_within(seconds: float, awaitable: Awaitable[T], what: str) -> T:
    """`within` for calls that honour cancellation, awaited in the calling task: nothing else
    runs between the call's end and the caller's next step (a rebalance callback could, were
    the call a task of its own)."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError as error:
        raise PartitionLost(f"{what} did not finish in {seconds:.0f}s") from error
    except asyncio.CancelledError as error:
        if cancelled_from_outside():
            raise
        raise PartitionLost(f"{what} was cancelled inside the Kafka client") from error
