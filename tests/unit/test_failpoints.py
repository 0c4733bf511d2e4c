"""The fault suite's failpoints: which are armed, and when they trip."""

from __future__ import annotations

import os
import signal
import time

import pytest

from worker import failpoints


def test_names_are_armed_from_the_start_or_seconds_after_it() -> None:
    assert failpoints.armed("", now=100.0) == {}
    assert failpoints.armed(" a , b@2.5,", now=100.0) == {"a": 100.0, "b": 102.5}


def test_a_failpoint_trips_once_its_time_has_come_and_only_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stops: list[int] = []
    monkeypatch.setattr(failpoints, "_trips_from", failpoints.armed("freeze@0.2", time.monotonic()))
    monkeypatch.setattr(os, "kill", lambda pid, signum: stops.append(signum))
    failpoints.freeze_once("freeze")
    failpoints.freeze_once("not armed")
    assert stops == []
    time.sleep(0.25)
    failpoints.freeze_once("freeze")
    assert stops == [signal.SIGSTOP]
    failpoints.freeze_once("freeze")
    assert stops == [signal.SIGSTOP]
