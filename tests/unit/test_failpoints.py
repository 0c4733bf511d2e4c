"""The fault suite's failpoints: which are armed, and when they trip."""

from __future__ import annotations

import os
import signal

import pytest

from worker import failpoints


def test_names_are_armed_for_their_first_pass_or_the_nth() -> None:
    assert failpoints.armed("") == {}
    assert failpoints.armed(" a , b@3,") == {"a": 1, "b": 3}


def test_a_failpoint_trips_on_its_nth_pass_and_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stops: list[int] = []
    monkeypatch.setattr(failpoints, "_passes_left", failpoints.armed("freeze@2"))
    monkeypatch.setattr(os, "kill", lambda pid, signum: stops.append(signum))
    failpoints.freeze_once("freeze")
    failpoints.freeze_once("not armed")
    assert stops == []
    failpoints.freeze_once("freeze")
    assert stops == [signal.SIGSTOP]
    failpoints.freeze_once("freeze")
    assert stops == [signal.SIGSTOP]
