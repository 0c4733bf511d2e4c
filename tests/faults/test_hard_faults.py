"""Faults without manners, under a steady load: the broker SIGKILLed, Postgres stopped with
`immediate`, a worker's network cut or slowed, a worker frozen between its database commit and
its Kafka commit. Each test checks the suite's invariants and prints a FAULTS line with the
tally and, per fault, how long results flowed under 90% of the rate commands were offered at,
and how long after the fault's end they were back for good (docs/results/faults.md)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.faults import evidence
from tests.faults.conftest import (
    Fault,
    Load,
    Recovery,
    check_invariants,
    rate,
    recovery,
    report,
    stamps_of,
)
from tests.support.harness import Outputs
from tests.support.kafka import TopicReader
from tests.support.network import Isolated, namespaces_available
from tests.support.processes import WorkerProcess
from tests.support.services import Services
from worker import failpoints
from worker.adapters.kafka.lag import group_lag
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.settings import Settings

pytestmark = pytest.mark.integration

LiveRuns = Callable[[int], Awaitable[list[FieldingRunRecord]]]

RATE = 40.0  # commands offered per second
STEADY = 5.0  # seconds of load before the first fault
BETWEEN = 8.0  # seconds of load between faults, for the flow to come back and be measured
COMMANDS_PER_RUN = 2.5  # about, as Load.build makes them


class Steady:
    """A paced load that lasts about `seconds`, sent in the background from the start."""

    def __init__(self, load: Load, task: asyncio.Task[None], settings: Settings) -> None:
        self.load = load
        self.task = task
        self.settings = settings
        self.started = time.time()

    @classmethod
    async def start(
        cls, settings: Settings, live_runs: LiveRuns, seconds: float, seed: int
    ) -> Steady:
        load = Load.build(await live_runs(int(seconds * RATE / COMMANDS_PER_RUN)), seed=seed)
        task = asyncio.create_task(
            load.send(settings.kafka_bootstrap_servers, settings.commands_topic, RATE)
        )
        return cls(load, task, settings)

    async def settle(self) -> None:
        """Until the load has run STEADY seconds (the level the faults are measured against)."""
        await asyncio.sleep(max(0.0, self.started + STEADY - time.time()))

    async def offered(self) -> list[float]:
        """The commands' timestamps, as the load's producer set them."""
        reader = TopicReader(self.settings.kafka_bootstrap_servers, self.settings.commands_topic)
        try:
            await reader.read(at_least=len(self.load.records), settle=0.5)
        finally:
            await reader.close()
        return stamps_of(reader)


async def finish(
    name: str,
    steady: Steady,
    faults: list[Fault],
    outputs: Outputs,
    pool: asyncpg.Pool,
    services: Services | None = None,
    log_dir: Path | None = None,
) -> list[Recovery]:
    """Waits for the load, checks the invariants, and reports the tally and recovery times,
    against the rate commands were offered at before the first fault."""
    await steady.task
    try:
        tally = await check_invariants(steady.load, outputs, pool, timeout=150, log_dir=log_dir)
    except AssertionError as error:
        # Whether the workers had consumed every command: the reader's or the workers' fault.
        lag = await group_lag(
            steady.settings.kafka_bootstrap_servers,
            steady.settings.consumer_group,
            steady.settings.commands_topic,
        )
        stuck = outputs.results.open_transactions()
        if stuck and services is not None:
            kept = await asyncio.to_thread(
                evidence.capture,
                services,
                steady.settings.kafka_bootstrap_servers,
                steady.settings.results_topic,
                sorted(stuck),
                log_dir,
            )
            print(f"\nEVIDENCE of a transaction left open on {sorted(stuck)}: {kept}")
        raise AssertionError(f"{error}; commands group: {[p.as_json() for p in lag]}") from error
    offered = await steady.offered()
    level = rate(offered, offered[0] + 1, min(faults[0].started, offered[-1]))
    results = stamps_of(outputs.results)
    horizons = [fault.started for fault in faults[1:]] + [offered[-1]]
    recoveries = [
        recovery(results, fault, level, horizon)
        for fault, horizon in zip(faults, horizons, strict=True)
    ]
    lasted = ",".join(f"{fault.ended - fault.started:.1f}" for fault in faults)
    report(
        name,
        tally,
        faults=len(faults),
        recovered=f"offered={level:.0f}/s fault_s={lasted} "
        f"below_s/back_after_end_s={','.join(str(r) for r in recoveries)}",
    )
    assert all(r is not None for r in recoveries), f"results never came back: {recoveries}"
    return [r for r in recoveries if r is not None]


@asynccontextmanager
async def restarted_afterwards(services: Services, service: str) -> AsyncIterator[None]:
    """Whatever happens inside, the service is up again afterwards, for the tests after."""
    try:
        yield
    finally:
        await asyncio.to_thread(services.start, service)


# A hanging transaction on an output partition is healed within about a minute and a half of
# its start (the transaction timeout, this margin, a check): inside the invariants' wait.
HEAL_QUICKLY = {"FIELDING_HANGING_CHECK_SECONDS": "5", "FIELDING_HANGING_MARGIN_SECONDS": "10"}


def workers(
    count: int, settings: Settings, log_dir: Path, started: list[WorkerProcess], **env: str
) -> list[WorkerProcess]:
    made = [
        WorkerProcess(settings, log_dir, f"worker-{len(started) + i}", **{**HEAL_QUICKLY, **env})
        for i in range(count)
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
    steady = await Steady.start(settings, live_runs, seconds=85, seed=11)
    await steady.settle()
    faults = []
    async with restarted_afterwards(services, "kafka"):
        for _ in range(3):
            began = time.time()
            # Mid-transaction: the broker's log is recovered and its open transactions are
            # aborted by the coordinator on its return.
            await asyncio.to_thread(services.kill, "kafka")
            await asyncio.to_thread(services.start, "kafka")
            faults.append(Fault(began, time.time()))
            await asyncio.sleep(BETWEEN)
    await finish(
        "broker SIGKILL x3",
        steady,
        faults,
        outputs,
        pool,
        services=services,
        log_dir=fault_log_dir,
    )
    # A hanging transaction, if one was left, was healed by a worker (the invariants hold):
    # its log line names the partition and the producer.
    healed = [
        line
        for worker in worker_processes
        for line in worker.own_log_lines()
        if '"message": "hanging transaction' in line
    ]
    print(f"\nHANGING transactions seen and healed: {len(healed)} {healed}")
    if healed:  # what the healing left in the logs, for the mechanism's record
        for topic in (settings.results_topic, settings.events_topic, settings.states_topic):
            kept = await asyncio.to_thread(
                evidence.capture,
                services,
                settings.kafka_bootstrap_servers,
                topic,
                list(range(settings.output_partitions)),
                fault_log_dir,
            )
            print(f"EVIDENCE of the healed transactions on {topic}: {kept}")


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
    steady = await Steady.start(settings, live_runs, seconds=30, seed=12)
    await steady.settle()
    faults = []
    async with restarted_afterwards(services, "postgres"):
        for _ in range(2):
            began = time.time()
            await asyncio.to_thread(services.kill, "postgres")  # crash recovery on next start
            await asyncio.sleep(1.0)
            await asyncio.to_thread(services.start, "postgres")
            faults.append(Fault(began, time.time()))
            await pool.expire_connections()  # the test's own connections died with it
            await asyncio.sleep(BETWEEN)
    await finish("postgres immediate x2", steady, faults, outputs, pool, log_dir=fault_log_dir)


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
        began, logged_before = time.time(), len(cut_off.log())
        isolated.cut(*cut)
        await asyncio.sleep(settings.session_timeout_ms / 1000 + 6)
        isolated.heal(*cut)
        faults = [Fault(began, time.time())]
        await finish(
            f"network cut ({' and '.join(cut)})",
            steady,
            faults,
            outputs,
            pool,
            log_dir=fault_log_dir,
        )
        assert cut_off.alive(), cut_off.log()[-3000:]
        since_cut = cut_off.log()[logged_before:]
        if "kafka" in cut:  # its session expired: the other worker had its partitions
            # It lets them go once its pipeline has closed: a publish caught by the cut is
            # given up after the shutdown timeout.
            deadline = time.monotonic() + settings.shutdown_timeout_seconds + 15
            while "partitions revoked" not in since_cut and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                since_cut = cut_off.log()[logged_before:]
            assert "partitions revoked" in since_cut, since_cut[-3000:]
        else:  # it kept its partitions, and its batches waited for the database
            assert "partitions revoked" not in since_cut, since_cut[-3000:]
            assert "transient failure" in since_cut, since_cut[-3000:]


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
        isolated.slow(rate="100kbit")
        await asyncio.sleep(10)
        dropped = isolated.dropped()
        isolated.heal()
        faults = [Fault(began, time.time())]
        await finish(
            f"slow, lossy links ({dropped} packets dropped)",
            steady,
            faults,
            outputs,
            pool,
            log_dir=fault_log_dir,
        )
        assert dropped > 0, "the link was not slow enough to lose anything"
        assert slowed.alive(), slowed.log()[-3000:]


@pytest.mark.parametrize("alone", [False, True], ids=["fenced by the next owner", "alone"])
async def test_a_worker_frozen_between_its_database_and_kafka_commits(
    alone: bool,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    """Its batch's outcomes are in the database and its Kafka transaction is open when it
    freezes. Beside another worker, that worker takes the partitions after the session timeout
    and fences it; alone, the broker aborts its transaction at the transaction timeout. Either
    way the outcomes are replayed from the database, and the frozen worker, woken, cannot
    commit."""
    settings = settings.model_copy(update={"transaction_timeout_ms": 10_000})
    # Tripped some seconds into the load, so there is a level to come back to.
    trip = f"{failpoints.FREEZE_BEFORE_KAFKA_COMMIT}@{STEADY + 4}"
    frozen = WorkerProcess(settings, fault_log_dir, "worker-frozen", FIELDING_FAILPOINTS=trip)
    frozen.start()
    worker_processes.append(frozen)
    if not alone:
        workers(1, settings, fault_log_dir, worker_processes)
    steady = await Steady.start(settings, live_runs, seconds=40, seed=15)
    deadline = time.monotonic() + 60
    while not frozen.stopped():
        assert time.monotonic() < deadline, "the failpoint never froze the worker"
        await asyncio.sleep(0.05)
    began = time.time()
    # Alone: past the transaction timeout and the broker's sweep for timed-out transactions
    # (every 10 s by default, 5 s on the local broker).
    await asyncio.sleep(
        settings.transaction_timeout_ms / 1000 + 13
        if alone
        else settings.session_timeout_ms / 1000 + 6
    )
    frozen.send(signal.SIGCONT)
    faults = [Fault(began, time.time())]
    await asyncio.sleep(STEADY)
    assert frozen.alive(), frozen.log()[-3000:]
    name = "frozen between the database and Kafka commits" + (", alone" if alone else "")
    await finish(name, steady, faults, outputs, pool, log_dir=fault_log_dir)
    log = frozen.log()
    assert "failpoint freeze_before_kafka_commit" in log
    assert "publish failed: ProducerFenced" in log, "the frozen worker's commit went through"


async def test_a_worker_started_while_postgres_is_down_waits_for_it(
    services: Services,
    settings: Settings,
    outputs: Outputs,
    pool: asyncpg.Pool,
    live_runs: LiveRuns,
    worker_processes: list[WorkerProcess],
    fault_log_dir: Path,
) -> None:
    """A worker started while Postgres is down starts, joins its group and waits: its pool
    does not connect at creation (docs/decisions/postgres-cut.md)."""
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
    tally = await check_invariants(load, outputs, pool, log_dir=fault_log_dir)
    report("worker started while postgres was down", tally, faults=1)
