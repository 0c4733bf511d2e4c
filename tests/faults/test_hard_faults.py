"""Faults without manners, under a steady load: the broker SIGKILLed, Postgres stopped with
`immediate`, a worker's network cut or slowed, a worker frozen between its database commit and
its Kafka commit. Each test checks the suite's invariants and prints a FAULTS line with the
tally and, per fault, the seconds from its end until results flow at 90% of the rate before
it (the README's table)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.faults.conftest import (
    Fault,
    Load,
    Recovery,
    check_invariants,
    recovery,
    report,
    throughput,
)
from tests.support.harness import Outputs
from tests.support.network import Isolated, namespaces_available
from tests.support.processes import WorkerProcess
from tests.support.services import Services
from worker import failpoints
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.settings import Settings

pytestmark = pytest.mark.integration

LiveRuns = Callable[[int], Awaitable[list[FieldingRunRecord]]]

RATE = 40.0  # commands offered per second
STEADY = 5.0  # seconds of load before the first fault, and after each
COMMANDS_PER_RUN = 2.5  # about, as Load.build makes them


class Steady:
    """A paced load that lasts about `seconds`, sent in the background from the start."""

    def __init__(self, load: Load, task: asyncio.Task[None]) -> None:
        self.load = load
        self.task = task
        self.started = time.time()

    @classmethod
    async def start(
        cls, settings: Settings, live_runs: LiveRuns, seconds: float, seed: int
    ) -> Steady:
        load = Load.build(await live_runs(int(seconds * RATE / COMMANDS_PER_RUN)), seed=seed)
        task = asyncio.create_task(
            load.send(settings.kafka_bootstrap_servers, settings.commands_topic, RATE)
        )
        return cls(load, task)

    async def settle(self) -> None:
        """Until the load has run STEADY seconds (the level the faults are measured against)."""
        await asyncio.sleep(max(0.0, self.started + STEADY - time.time()))


async def finish(
    name: str,
    steady: Steady,
    faults: list[Fault],
    outputs: Outputs,
    pool: asyncpg.Pool,
) -> list[Recovery]:
    """Waits for the load, checks the invariants, and reports the tally and recovery times."""
    await steady.task
    tally = await check_invariants(steady.load, outputs, pool, timeout=240)
    # The level before: what results flowed at once the load was under way (the offered
    # rate, should the first fault come too early to measure it).
    since, until = steady.started + 1, faults[0].started
    level = throughput(outputs, since, until) if until - since >= 2 else RATE
    recoveries = [recovery(outputs, fault, level) for fault in faults]
    lasted = ",".join(f"{fault.ended - fault.started:.1f}" for fault in faults)
    report(
        name,
        tally,
        faults=len(faults),
        recovered=f"level={level:.0f}/s fault_s={lasted} "
        f"below_s/after_end_s={','.join(str(r) for r in recoveries)}",
    )
    assert all(r is not None for r in recoveries), f"throughput never came back: {recoveries}"
    return [r for r in recoveries if r is not None]


def workers(
    count: int, settings: Settings, log_dir: Path, started: list[WorkerProcess], **env: str
) -> list[WorkerProcess]:
    made = [
        WorkerProcess(settings, log_dir, f"worker-{len(started) + i}", **env) for i in range(count)
    ]
    for worker in made:
        worker.start()
    started.extend(made)
    return made


async def test_the_broker_sigkilled_three_times_under_load(
    services: Services,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    workers(2, settings, fault_log_dir, worker_processes)
    steady = await Steady.start(settings, live_runs, seconds=70, seed=11)
    await steady.settle()
    faults = []
    for _ in range(3):
        began = time.time()
        # Mid-transaction: the broker's log is recovered and its open transactions are
        # aborted by the coordinator on its return.
        await asyncio.to_thread(services.kill, "kafka")
        await asyncio.to_thread(services.start, "kafka")
        faults.append(Fault(began, time.time()))
        await asyncio.sleep(STEADY)
    await finish("broker SIGKILL x3", steady, faults, outputs, pool)


async def test_postgres_stopped_immediate_twice_under_load(
    services: Services,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    workers(2, settings, fault_log_dir, worker_processes)
    steady = await Steady.start(settings, live_runs, seconds=25, seed=12)
    await steady.settle()
    faults = []
    for _ in range(2):
        began = time.time()
        await asyncio.to_thread(services.kill, "postgres")  # crash recovery on the next start
        await asyncio.sleep(1.0)
        await asyncio.to_thread(services.start, "postgres")
        faults.append(Fault(began, time.time()))
        await pool.expire_connections()  # the test's own connections died with it
        await asyncio.sleep(STEADY)
    await finish("postgres immediate x2", steady, faults, outputs, pool)


@pytest.fixture
def isolated(services: Services, settings: Settings, fault_log_dir: Path) -> Isolated:
    why = namespaces_available()
    if why is not None:
        pytest.skip(why)
    return Isolated(settings.kafka_bootstrap_servers, settings.database_url, fault_log_dir)


@pytest.mark.parametrize("cut", [("kafka",), ("postgres",), ("kafka", "postgres")])
async def test_a_worker_cut_off_past_its_session_timeout(
    cut: tuple[str, ...],
    isolated: Isolated,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    """One worker behind a link that is cut, one beside it that is not. Cut from the broker,
    the first loses its partitions to the second and comes back a zombie that must be fenced;
    cut from Postgres only, it keeps its partitions and their batches wait."""
    with isolated:
        cut_off = WorkerProcess(settings, fault_log_dir, "worker-isolated", prefix=isolated.prefix)
        cut_off.start()
        worker_processes.append(cut_off)
        workers(1, settings, fault_log_dir, worker_processes)
        steady = await Steady.start(settings, live_runs, seconds=30, seed=13)
        await steady.settle()
        began = time.time()
        isolated.cut(*cut)
        await asyncio.sleep(settings.session_timeout_ms / 1000 + 6)
        isolated.heal(*cut)
        faults = [Fault(began, time.time())]
        await finish(f"network cut ({' and '.join(cut)})", steady, faults, outputs, pool)
        assert cut_off.alive(), cut_off.log()[-3000:]


async def test_a_slow_congested_link(
    isolated: Isolated,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    """The only worker behind links slowed to a trickle with a short queue: delays, and drops
    whenever a burst overflows it (TCP retransmits)."""
    with isolated:
        slowed = WorkerProcess(settings, fault_log_dir, "worker-slowed", prefix=isolated.prefix)
        slowed.start()
        worker_processes.append(slowed)
        steady = await Steady.start(settings, live_runs, seconds=30, seed=14)
        await steady.settle()
        began = time.time()
        isolated.slow()
        await asyncio.sleep(10)
        dropped = isolated.dropped()
        isolated.heal()
        faults = [Fault(began, time.time())]
        await finish(
            f"slow, lossy links ({dropped} packets dropped)", steady, faults, outputs, pool
        )
        assert dropped > 0, "the link was not slow enough to lose anything"
        assert slowed.alive(), slowed.log()[-3000:]


async def test_a_worker_frozen_between_its_database_and_kafka_commits(
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    """Its batch's outcomes are in the database, its Kafka transaction open, past the
    transaction timeout and the session timeout. The other worker takes the partitions and
    replays those outcomes from the database; the frozen one, woken, cannot commit."""
    settings = settings.model_copy(update={"transaction_timeout_ms": 8000})
    # Armed for a pass some seconds into the load, so there is a level to come back to.
    trip = f"{failpoints.FREEZE_BEFORE_KAFKA_COMMIT}@{int(STEADY * RATE / 2)}"
    frozen = WorkerProcess(settings, fault_log_dir, "worker-frozen", FIELDING_FAILPOINTS=trip)
    frozen.start()
    worker_processes.append(frozen)
    workers(1, settings, fault_log_dir, worker_processes)
    steady = await Steady.start(settings, live_runs, seconds=35, seed=15)
    deadline = time.monotonic() + 60
    while not frozen.stopped():
        assert time.monotonic() < deadline, "the failpoint never froze the worker"
        await asyncio.sleep(0.05)
    began = time.time()
    hold = max(settings.transaction_timeout_ms, settings.session_timeout_ms) / 1000 + 3
    await asyncio.sleep(hold)
    frozen.send(signal.SIGCONT)
    faults = [Fault(began, time.time())]
    await asyncio.sleep(STEADY)
    assert frozen.alive(), frozen.log()[-3000:]
    await finish("frozen between the database and Kafka commits", steady, faults, outputs, pool)
    assert "failpoint freeze_before_kafka_commit" in frozen.log()


async def test_a_worker_started_while_postgres_is_down_waits_for_it(
    services: Services,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    """Found by the chaos run: a worker restarted during a Postgres outage exited (its pool
    connected at creation). It now starts, joins its group and waits."""
    load = Load.build(await live_runs(20), seed=16)
    await asyncio.to_thread(services.kill, "postgres")
    try:
        [worker] = workers(1, settings, fault_log_dir, worker_processes)
        await load.send(settings.kafka_bootstrap_servers, settings.commands_topic, 200)
        await asyncio.sleep(5)
        assert worker.alive(), worker.log()[-3000:]
    finally:
        await asyncio.to_thread(services.start, "postgres")
        await pool.expire_connections()
    tally = await check_invariants(load, outputs, pool)
    report("worker started while postgres was down", tally, faults=1)
