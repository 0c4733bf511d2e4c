"""Exactly once in effect while processes die, freeze and restart, and while Kafka and Postgres
restart under load. Each test prints a FAULTS line with its tally (see docs/results/faults.md)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.faults.conftest import Load, check_invariants, report
from tests.support.harness import Outputs
from tests.support.processes import WorkerProcess, http_status
from tests.support.services import Services
from worker.settings import Settings

pytestmark = pytest.mark.integration

LiveRuns = Callable[[int], Awaitable[list]]


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def start_workers(
    count: int, settings: Settings, log_dir: Path, started: list[WorkerProcess]
) -> list[WorkerProcess]:
    workers = [WorkerProcess(settings, log_dir, f"worker-{len(started) + i}") for i in range(count)]
    for worker in workers:
        worker.start()
    started.extend(workers)
    return workers


async def test_sigkill_at_random_moments_then_restart(
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    load = Load.build(await live_runs(200), seed=1)
    [worker] = start_workers(1, settings, fault_log_dir, worker_processes)
    rng = random.Random(7)
    sending = asyncio.create_task(
        load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 60)
    )
    kills = 0
    while not sending.done() and kills < 4:
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        worker.kill()
        kills += 1
        await asyncio.sleep(rng.uniform(0, 0.5))
        worker.start()
    await sending
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    report("sigkill", tally, faults=kills)
    assert kills >= 3


async def test_sigterm_drains_and_exits_zero_in_bounded_time(
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    load = Load.build(await live_runs(120), seed=2)
    [worker] = start_workers(1, settings, fault_log_dir, worker_processes)
    sending = asyncio.create_task(
        load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 60)
    )
    await wait_for(
        lambda: http_status(worker.metrics_port, "/readyz") == 200, 60, "the worker to be ready"
    )
    await asyncio.sleep(1.0)  # mid-load
    code, took = worker.terminate()
    assert code == 0, worker.log()[-2000:]
    assert took < settings.shutdown_timeout_seconds + 10
    worker.start()
    await sending
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    report("sigterm", tally, faults=1)


async def test_several_workers_share_the_partitions_and_survive_one_being_killed(
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    load = Load.build(await live_runs(200), seed=3)
    workers = start_workers(3, settings, fault_log_dir, worker_processes)
    sending = asyncio.create_task(
        load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 60)
    )
    await asyncio.sleep(1.5)
    workers[1].kill()  # its partitions move to the others after the session timeout
    await sending
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    report("scale-out, one killed", tally, faults=1)


async def test_a_frozen_zombie_cannot_apply_or_publish_twice(
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    load = Load.build(await live_runs(200), seed=4)
    zombie, survivor = start_workers(2, settings, fault_log_dir, worker_processes)
    sending = asyncio.create_task(
        load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 60)
    )
    await asyncio.sleep(1.0)
    zombie.send(signal.SIGSTOP)  # frozen mid-work, past the session timeout
    await asyncio.sleep(settings.session_timeout_ms / 1000 + 4)
    zombie.send(signal.SIGCONT)  # wakes up believing it still owns its partitions
    await sending
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    report("zombie (SIGSTOP past the session timeout, then SIGCONT)", tally, faults=1)
    assert survivor.alive()


@pytest.mark.parametrize(("service", "down_for"), [("kafka", 2.0), ("postgres", 3.0)])
async def test_a_service_restart_under_load(
    service: str,
    down_for: float,
    services: Services,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    load = Load.build(await live_runs(150), seed=5)
    start_workers(2, settings, fault_log_dir, worker_processes)
    sending = asyncio.create_task(
        load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 50)
    )
    await asyncio.sleep(1.0)
    await asyncio.to_thread(services.stop, service)
    await asyncio.sleep(down_for)
    await asyncio.to_thread(services.start, service)
    await pool.expire_connections()  # the test's own connections did not survive a Postgres restart
    await sending
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    report(f"{service} restart", tally, faults=1)


async def test_conflicting_commands_for_one_run_across_partitions_win_once(
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    runs = await live_runs(30)
    load = Load(runs)
    from tests.support.harness import for_run

    for run in runs:
        for copy in range(4):  # four different commands, all with the current If-Match
            load.add(for_run(run), f"{run.id}-{copy}".encode())  # mis-keyed: several partitions
    load.miskeyed.update(run.id for run in runs)
    random.Random(8).shuffle(load.records)
    start_workers(2, settings, fault_log_dir, worker_processes)
    await load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 200)
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    statuses = sorted(r["status"] for r in outputs.results.values())
    assert statuses.count(204) == len(runs) and statuses.count(412) == 3 * len(runs)
    report("conflicting commands across partitions", tally, faults=0)
