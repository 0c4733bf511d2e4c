"""The in-process CPU bench (bench/worker_cpu.py) measures a success's whole path."""

from __future__ import annotations

import math

import pytest

from bench import worker_cpu


async def test_the_in_process_bench_measures_a_batch_answered_204_with_an_event_each() -> None:
    # The bench refuses to measure a batch that was not all successes (it raises otherwise).
    cost = await worker_cpu.measure(batches=2, size=50, rounds=1, profile=False)
    assert math.isfinite(cost) and cost > 0


async def test_the_in_process_bench_refuses_a_batch_it_cannot_answer_204(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_cpu, "SECRET", "another-secret-of-enough-length-0123456789")
    with pytest.raises(AssertionError, match="not answered 204"):
        await worker_cpu.measure(batches=1, size=5, rounds=1, profile=False)
