"""Reads are limited per account and window, as the public API lists (429 with retry-after)."""

from __future__ import annotations

import pytest

from worker.adapters.http.answers import ApiProblem
from worker.adapters.http.read_limit import ReadLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_account_over_its_limit_gets_429_until_the_window_ends() -> None:
    clock = Clock()
    limit = ReadLimit(per_window=2, window_seconds=10, clock=clock)
    limit.take(1)
    limit.take(1)
    clock.now = 103.0
    with pytest.raises(ApiProblem) as refused:
        limit.take(1)
    assert refused.value.status == 429
    assert refused.value.headers == {"retry-after": "7"}
    assert refused.value.body["object"] == "too_many_requests_problem_details"
    clock.now = 110.0  # the next window
    limit.take(1)


def test_one_account_over_its_limit_holds_no_other_back() -> None:
    limit = ReadLimit(per_window=1, window_seconds=1, clock=Clock())
    limit.take(1)
    with pytest.raises(ApiProblem):
        limit.take(1)
    limit.take(2)


def test_zero_is_no_limit() -> None:
    limit = ReadLimit(per_window=0, window_seconds=1, clock=Clock())
    for _ in range(1000):
        limit.take(1)
