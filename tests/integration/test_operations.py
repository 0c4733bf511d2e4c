"""What the people on call see: lag from the CLI and from /metrics, health that means progress."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, encode
from tests.support.harness import Outputs, RunMaker, for_run
from tests.support.kafka import Outgoing, produce
from tests.support.processes import WorkerProcess, environment, http_status
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.settings import Settings

pytestmark = pytest.mark.integration


def lag_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.entrypoints.cli", "lag", *args],
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metrics_lag(port: int, topic: str) -> float:
    return sum(
        value
        for (name, labels), value in scrape(port).items()
        if name == "fielding_worker_consumer_lag" and ("topic", topic) in labels
    )


async def eventually(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert callable(check)
            check()
            return
        except (AssertionError, OSError):  # OSError: the worker is not listening yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


class RowLock:
    """Another transaction holding a run's row: commands for that run cannot progress."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self.held = False

    async def take(self, run_id: str) -> None:
        await self._connection.execute("BEGIN")
        await self._connection.execute(
            "SELECT 1 FROM fielding_runs WHERE id = $1 FOR UPDATE", run_id
        )
        self.held = True

    async def release(self) -> None:
        if self.held:
            await self._connection.execute("ROLLBACK")
            self.held = False


@pytest.fixture
async def locked_run(
    make_run: RunMaker, database_url: str
) -> AsyncIterator[tuple[FieldingRunRecord, RowLock]]:
    run = await make_run(RunStatus.LIVE)
    connection = await asyncpg.connect(database_url)
    lock = RowLock(connection)
    await lock.take(run.id)
    try:
        yield run, lock
    finally:
        await lock.release()
        await connection.close()


async def test_lag_grows_by_exactly_n_while_stopped_and_cli_and_metrics_agree_until_it_drains(
    settings: Settings,
    outputs: Outputs,
    locked_run: tuple[FieldingRunRecord, RowLock],
    tmp_path: Path,
) -> None:
    run, lock = locked_run
    baseline = json.loads(lag_cli(settings, "--json").stdout)
    assert baseline["total_lag"] == 0 and len(baseline["partitions"]) == 3

    n = 7
    bodies = [for_run(run) for _ in range(n)]
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [Outgoing(encode(b), b"one-partition", auth_headers([101])) for b in bodies],
    )
    stopped = json.loads(lag_cli(settings, "--json").stdout)
    assert stopped["total_lag"] == n
    assert lag_cli(settings, "--max-lag", str(n - 1)).returncode == 1
    assert lag_cli(settings, "--max-lag", str(n)).returncode == 0

    worker = WorkerProcess(settings, tmp_path, "ops", FIELDING_STALL_SECONDS="2")
    worker.start()
    try:
        # The worker fetched the commands but cannot commit them while the row is locked.
        await eventually(
            lambda: assert_equal(metrics_lag(worker.metrics_port, settings.commands_topic), n)
        )
        assert json.loads(lag_cli(settings, "--json").stdout)["total_lag"] == n
        await eventually(lambda: assert_equal(http_status(worker.metrics_port, "/healthz"), 503))
        assert (
            http_status(worker.metrics_port, "/readyz") == 200
        )  # in the group, database reachable

        await lock.release()
        await outputs.results.read(at_least=n)
        await eventually(
            lambda: assert_equal(metrics_lag(worker.metrics_port, settings.commands_topic), 0)
        )
        assert json.loads(lag_cli(settings, "--json").stdout)["total_lag"] == 0
        await eventually(lambda: assert_equal(http_status(worker.metrics_port, "/healthz"), 200))

        samples = scrape(worker.metrics_port)
        completed = (("status", "204"), ("type", "complete_fielding_run"))
        refused = (("status", "412"), ("type", "complete_fielding_run"))
        assert samples[("fielding_worker_commands_total", completed)] == 1
        assert samples[("fielding_worker_commands_total", refused)] == n - 1
        assert samples[("fielding_worker_events_total", ())] == 1
        assert samples[("fielding_worker_command_latency_seconds_count", ())] == n
        decided = samples[("fielding_worker_stage_seconds_count", (("stage", "decide"),))]
        assert (
            decided >= 1
            and samples[("fielding_worker_stage_seconds_count", (("stage", "publish"),))] == decided
        )
        assert samples[("fielding_worker_stage_seconds_sum", (("stage", "decide"),))] > 0
        assert samples[("fielding_worker_last_progress_timestamp_seconds", ())] > time.time() - 60
        assert samples[("fielding_worker_assigned_partitions", ())] == 3
    finally:
        code, _ = worker.terminate()
        assert code == 0


def assert_equal(actual: object, expected: object) -> None:
    assert actual == expected, f"{actual} != {expected}"


def test_lag_prints_a_table_with_a_total(settings: Settings) -> None:
    printed = lag_cli(settings)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == f"group {settings.consumer_group}, topic {settings.commands_topic}"
    assert lines[-1].split()[0] == "total" and lines[-1].split()[-1] == "0"
    assert len(lines) == 2 + 3 + 1
