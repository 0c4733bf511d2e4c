"""What run states cost the worker: the same backlog drained with the states topic set (every
change also publishes the run's state, remembered with its outcome) and with it empty (off), in
alternating rounds so that the machine's drift hits both alike. The bound: the complete drain
with states within 10% of the one without."""

from __future__ import annotations

import signal
import statistics
from collections.abc import Awaitable, Callable

from bench.drain import timed_drain
from bench.fixtures import (
    ResultWatcher,
    backlog_scenario,
    create_runs,
    fresh_database,
    start_worker,
)
from bench.report import Drain, DrainMedians, RunStatesCost
from worker.settings import Settings

ROUNDS = 3


def medians(drains: list[Drain]) -> DrainMedians:
    return DrainMedians(
        commands_per_second=statistics.median(d.commands_per_second for d in drains),
        cpu_us_per_command=statistics.median(d.cpu_us_per_command for d in drains),
    )


async def bench_states(
    drain: Callable[[int, bool], Awaitable[Drain]], per_drain: int, rounds: int = ROUNDS
) -> RunStatesCost:
    """`drain(n, states)` drains a fresh backlog of `n` commands with a worker that publishes
    run states or not, and returns its figures."""
    measured: dict[bool, list[Drain]] = {True: [], False: []}
    for _ in range(rounds):
        for states in (False, True):
            measured[states].append(await drain(per_drain, states))
    return RunStatesCost.of(
        per_drain, rounds, on=medians(measured[True]), off=medians(measured[False])
    )


async def measure_states(base: Settings, per_drain: int, rounds: int = ROUNDS) -> RunStatesCost:
    """bench_states with each drain on its own topics (and states topic), over runs of its own."""
    url = await fresh_database(base.database_url, "fielding_bench_states")
    runs = await create_runs(url, per_drain * rounds * 2)
    next_run = iter(range(0, per_drain * rounds * 2, per_drain))

    async def drain(n: int, states: bool) -> Drain:
        start = next(next_run)
        scenario = base if states else base.model_copy(update={"states_topic": ""})
        settings = await backlog_scenario(scenario, url, "states", runs, range(start, start + n))
        watcher = ResultWatcher(settings)
        await watcher.start()
        process = start_worker(settings)
        try:
            return await timed_drain(watcher, process, n)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            await watcher.stop()

    return await bench_states(drain, per_drain, rounds)
