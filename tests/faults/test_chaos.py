"""Chaos: paced load for a while, with a worker SIGKILLed every second or two, frozen workers
(SIGSTOP past the session timeout, then SIGCONT), the broker SIGKILLed and Postgres stopped
with `immediate`, all at once; then the suite's invariants, and the tally.

CI runs it for FIELDING_CHAOS_SECONDS (40 by default); `make chaos` runs it for ten minutes.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.faults.conftest import Load, check_invariants, report
from tests.support.harness import Outputs
from tests.support.processes import WorkerProcess
from tests.support.services import Services
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.settings import Settings

pytestmark = pytest.mark.integration

LiveRuns = Callable[[int], Awaitable[list[FieldingRunRecord]]]

SECONDS = float(os.environ.get("FIELDING_CHAOS_SECONDS", "40"))
RATE = 40.0  # commands offered per second
WORKERS = 3
# Each cycle (a minute, or the whole run if shorter) has one frozen worker, one broker kill
# and one Postgres kill, at these fractions of it; SIGKILLs all the time.
CYCLE_SECONDS = min(60.0, SECONDS)
ONCE_A_CYCLE = {0.15: "freeze", 0.35: "broker", 0.7: "postgres"}


async def test_chaos(
    services: Services,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    rng = random.Random(int(os.environ.get("FIELDING_CHAOS_SEED", "17")))
    workers = [WorkerProcess(settings, fault_log_dir, f"worker-{i}") for i in range(WORKERS)]
    for worker in workers:
        worker.start()
    worker_processes.extend(workers)
    load = Load.build(await live_runs(int(SECONDS * RATE / 2.5)), seed=rng.randrange(1 << 30))
    sending = asyncio.create_task(
        load.send(settings.kafka_bootstrap_servers, settings.commands_topic, RATE)
    )
    tally: Counter[str] = Counter()
    background: set[asyncio.Task[None]] = set()
    service_down = asyncio.Lock()  # one service fault at a time
    frozen: set[WorkerProcess] = set()  # not SIGKILLed while frozen: it must wake a zombie

    async def freeze(worker: WorkerProcess) -> None:
        frozen.add(worker)
        worker.send(signal.SIGSTOP)
        await asyncio.sleep(settings.session_timeout_ms / 1000 + rng.uniform(1, 4))
        worker.send(signal.SIGCONT)
        frozen.discard(worker)

    async def crash(service: str) -> None:
        async with service_down:
            try:
                await asyncio.to_thread(services.kill, service)
                await asyncio.sleep(rng.uniform(0.5, 2))
            finally:
                await asyncio.to_thread(services.start, service)
            if service == "postgres":
                await pool.expire_connections()

    def in_background(fault: Awaitable[None]) -> None:
        task = asyncio.ensure_future(fault)
        background.add(task)
        task.add_done_callback(background.discard)

    schedule = sorted(
        (cycle * CYCLE_SECONDS + fraction * CYCLE_SECONDS, kind)
        for cycle in range(math.ceil(SECONDS / CYCLE_SECONDS))
        for fraction, kind in ONCE_A_CYCLE.items()
    )
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < SECONDS:
        await asyncio.sleep(rng.uniform(1.0, 2.0))
        while schedule and schedule[0][0] <= elapsed:
            _, kind = schedule.pop(0)
            if kind == "freeze":
                in_background(freeze(rng.choice(workers)))
                await asyncio.sleep(0)  # marked frozen before the next victim is chosen
            else:
                in_background(crash("kafka" if kind == "broker" else "postgres"))
            tally[kind] += 1
        victim = rng.choice([w for w in workers if w not in frozen])
        victim.kill()
        tally["sigkill"] += 1
        await asyncio.sleep(rng.uniform(0, 0.5))
        victim.start()
        for worker in workers:  # a worker that exited by itself is a finding: count it
            if not worker.alive():
                tally["exited"] += 1
                worker.start()
    await asyncio.gather(*background)
    for worker in workers:
        if worker.alive():
            worker.send(signal.SIGCONT)
    await sending
    result = await check_invariants(
        load, outputs, pool, timeout=150 + SECONDS / 4, log_dir=fault_log_dir
    )
    faults = ", ".join(f"{kind}={n}" for kind, n in sorted(tally.items()))
    report(f"chaos {SECONDS:.0f}s ({faults})", result, faults=sum(tally.values()))
    assert tally["exited"] == 0, "a worker exited by itself"
