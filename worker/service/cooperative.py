"""Handing the event loop back during long CPU-bound loops.

Deciding a batch of 2,000 commands is tens of milliseconds of pure Python. The worker's other
stage (Kafka committing the previous batch) and the consumer's fetches wait on network
replies that are only read when the event loop gets a turn; without one, the two stages
overlap in name only.
"""

from __future__ import annotations

import asyncio

# Items between turns: a slice is about a millisecond of work.
SLICE = 64


async def take_turn(done: int) -> None:
    """Call with the number of items done so far; yields to the event loop every SLICE items."""
    if done % SLICE == 0 and done:
        await asyncio.sleep(0)
