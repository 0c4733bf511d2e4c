"""Health as the probes see it: a worker that keeps losing its partitions is not alive, one idle
connection does not hold the probes back, and bad settings stop the worker at start."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from pydantic import ValidationError

from worker.observability import http
from worker.observability.health import FAILURES_BEFORE_UNHEALTHY, Health
from worker.settings import Settings


def test_a_worker_whose_partitions_keep_failing_is_not_alive() -> None:
    health = Health(stall_seconds=60)
    for _ in range(FAILURES_BEFORE_UNHEALTHY - 1):
        health.failed("pipeline failed: boom", {})
    assert health.liveness()[0]
    health.failed("pipeline failed: boom", {})
    alive, detail = health.liveness()
    assert not alive and "boom" in detail
    health.progressed()
    assert health.liveness()[0]


def test_one_partition_failing_at_the_same_offset_is_not_alive_while_others_progress() -> None:
    health = Health(stall_seconds=60)
    for _ in range(FAILURES_BEFORE_UNHEALTHY):
        health.failed("pipeline failed: boom", {"commands:0": 17, "commands:1": 3})
        health.progressed(["commands:2"])  # another partition commits between failures
    alive, detail = health.liveness()
    assert not alive and "commands:0" in detail and "17" in detail
    health.progressed(["commands:0", "commands:1"])
    assert health.liveness()[0]


def test_a_partition_failing_at_moving_offsets_is_making_progress() -> None:
    health = Health(stall_seconds=60)
    for offset in range(FAILURES_BEFORE_UNHEALTHY * 2):
        health.failed("pipeline failed: slow broker", {"commands:0": offset})
        health.progressed(["commands:9"])
    assert health.liveness()[0]


def test_an_idle_connection_does_not_block_the_probes() -> None:
    health = Health(stall_seconds=60)
    server = http.serve(health, 0, host="127.0.0.1")
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port)):  # connects, says nothing
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                assert reply.status == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "environment",
    [
        {"FIELDING_MAX_BATCH": "0"},
        {"FIELDING_RATE_LIMIT_WINDOW_SECONDS": "0"},
        {"METRICS_PORT": "70000"},
        {"DATABASE_URL": "mysql://x"},
        {"FIELDING_RESULTS_TOPIC": "fielding-run-commands"},
        {"LOG_LEVEL": "LOUD"},
        {"FIELDING_SESSION_TIMEOUT_MS": "90000"},
    ],
)
def test_settings_that_cannot_work_are_refused_at_start(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
