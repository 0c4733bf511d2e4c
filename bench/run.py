"""One command, one run, side by side on the local real services:

    python -m bench.run [--commands N] [--naive-commands N] [--latency-commands N] [--scale] [--smoke]
    python -m bench.run --only open-loop [--open-loop-rates R ...] [--smoke]
    python -m bench.run --only gather-curve [--gather-ms MS ...] [--gather-rates R ...] [--smoke]
    python -m bench.run --only states [--states-commands N]
    python -m bench.run --only ceilings [--commands N] [--latency-commands N]

1. the worker under test (`fielding-worker run`, a real process: bench/drain.py);
2. a naive baseline (bench/naive.py);
3. two ceilings: Kafka consume -> produce without a database, and the database work alone
   (bench/ceilings.py);
4. a mixed backlog of every command type, a burst of timers (bench/lifecycle.py), HTTP
   requests beside Kafka commands at one rate (bench/http.py), tracing's cost
   (bench/tracing.py), and run states' cost (bench/states.py);
5. load offered open-loop by generators outside the processes measured, HTTP (vegeta) and
   Kafka (a producer process), with CPU per request for each process (bench/open_loop.py).

`--only ceilings` runs 1 and 3 alone: the worker's drain and latency beside both ceilings.

On request only: the gathering window's curve, CPU per command and latency at several rates
for each value of FIELDING_BATCH_GATHER_MS (bench/gather_curve.py).

Reports sustained commands/s, p50/p99 latency (command produced -> result visible to a
read_committed consumer) at half and at a tenth of the worker's throughput, peak memory,
commands per WAL flush, and the ratios, as a table and as JSON (bench/results/latest.json;
bench/report.py). This module only parses the arguments and runs the scenarios in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path

from bench.ceilings import bench_database_ceiling, bench_kafka_ceiling
from bench.drain import bench_memory, bench_scale, bench_worker, worker_runs
from bench.fixtures import (
    SECRET,
    auth_header,
    create_runs,
    drop_bench_topics,
    fresh_database,
    scenario_settings,
)
from bench.gather_curve import GatherSizes, measure_gather_curve
from bench.http import measure_http
from bench.lifecycle import bench_due_scale, bench_mixed, bench_timer_burst
from bench.naive import bench_naive
from bench.open_loop import OpenLoopSizes, generator, measure_open_loop
from bench.report import (
    Ceilings,
    GatherCurve,
    OpenLoop,
    Report,
    RunStatesCost,
    ceilings_table,
    gather_curve_table,
    open_loop_table,
    states_line,
    table,
)
from bench.states import measure_states
from bench.tracing import measure_tracing
from worker.settings import Settings

RESULTS = Path(__file__).parent / "results"


Section = Report | OpenLoop | GatherCurve | RunStatesCost | Ceilings


async def main(args: argparse.Namespace) -> Section:
    # vegeta is built on first use: before the long parts, so that a machine without Go fails
    # at once. Only the open-loop section offers HTTP load.
    if args.only in ("open-loop", None):
        await asyncio.to_thread(generator)
    base = Settings(
        jwt_secret=SECRET,
        system_jwt_secret=SECRET[::-1],
        rate_limit_per_account=0,
        read_rate_limit_per_account=0,
    )
    if args.smoke:  # several batches even at tiny sizes, so that a drain can be timed
        base = base.model_copy(update={"max_batch": 50})
    try:
        if args.only == "open-loop":
            return await measure_open_loop(base, open_loop_sizes(args))
        if args.only == "states":
            return await measure_states(base, args.states_commands)
        if args.only == "ceilings":
            return await measure_ceilings(base, args.commands, args.latency_commands)
        if args.only == "gather-curve":
            return await measure_gather_curve(
                base,
                GatherSizes(
                    args.gather_ms,
                    args.gather_rates,
                    args.open_loop_seconds,
                    args.open_loop_warmup,
                ),
            )
        return await measure(base, args)
    finally:
        await drop_bench_topics(base.kafka_bootstrap_servers)


async def measure(base: Settings, args: argparse.Namespace) -> Report:
    n, naive_n, latency_n = args.commands, args.naive_commands, args.latency_commands
    database_url = await fresh_database(base.database_url, "fielding_bench")
    used_by_worker = worker_runs(n, latency_n)
    runs = await create_runs(database_url, used_by_worker + naive_n + n)
    worker = await bench_worker(base, database_url, runs, n, latency_n)
    naive = await bench_naive(base, database_url, runs, used_by_worker, naive_n)
    kafka_ceiling = await bench_kafka_ceiling(base, database_url, runs, n)
    database_ceiling = await bench_database_ceiling(database_url, runs, used_by_worker + naive_n, n)
    mixed = await bench_mixed(
        scenario_settings(base, database_url, "mixed").model_copy(
            update={"scheduler_interval_seconds": 0}  # the backlog's runs, not timers
        ),
        database_url,
        args.mixed_commands,
        auth_header()[0][1],
    )
    http = await measure_http(base, args.http_requests, args.http_rate)
    tracing = await measure_tracing(base, args.tracing_commands)
    states = await measure_states(base, args.states_commands)
    timers_url = await fresh_database(base.database_url, "fielding_bench_timers")
    timers = await bench_timer_burst(
        scenario_settings(base, timers_url, "timers"), timers_url, args.timer_runs
    )
    scale = due_scale = memory = None
    if args.scale:
        scale = await bench_scale(
            base, args.commands, args.scale_small_table, args.scale_large_table
        )
        due_scale = await bench_due_scale(
            base.database_url, args.scale_small_table, args.scale_large_table, args.due_runs
        )
    if args.memory:
        memory = await bench_memory(base, args.memory)
    open_loop = await measure_open_loop(base, open_loop_sizes(args))
    return Report(
        cores=os.cpu_count() or 1,
        sizes=vars(args),
        worker=worker,
        naive=naive,
        kafka_ceiling=kafka_ceiling,
        database_ceiling=database_ceiling,
        mixed=mixed,
        http=http,
        tracing=tracing,
        timers=timers,
        states=states,
        scale=scale,
        due_scale=due_scale,
        memory=memory,
        open_loop=open_loop,
    )


async def measure_ceilings(base: Settings, n: int, latency_n: int) -> Ceilings:
    """The worker's drain of `n` commands and its latency at a tenth and half of that rate,
    then both ceilings on `n` commands each."""
    database_url = await fresh_database(base.database_url, "fielding_bench")
    used_by_worker = worker_runs(n, latency_n)
    runs = await create_runs(database_url, used_by_worker + n)
    worker = await bench_worker(base, database_url, runs, n, latency_n)
    kafka_ceiling = await bench_kafka_ceiling(base, database_url, runs, n)
    database_ceiling = await bench_database_ceiling(database_url, runs, used_by_worker, n)
    return Ceilings(os.cpu_count() or 1, worker, kafka_ceiling, database_ceiling)


def open_loop_sizes(args: argparse.Namespace) -> OpenLoopSizes:
    return OpenLoopSizes(
        http_rates=args.open_loop_rates,
        kafka_rate=args.open_loop_kafka_rate,
        kafka_fractions={"tenth": 0.1, "half": 0.5},
        seconds=args.open_loop_seconds,
        warmup_seconds=args.open_loop_warmup,
        drain_commands=args.open_loop_drain,
        get_start_rate=args.get_start_rate,
        get_factor=args.get_factor,
        get_steps=args.get_steps,
        get_step_seconds=args.get_step_seconds,
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description="fielding-worker benchmark")
    Kind = type[int] | type[float]

    # Most options are a number, or several (a point each): flag, type, default, help.
    def number(flag: str, kind: Kind, default: float, help: str | None = None) -> None:
        parser.add_argument(flag, type=kind, default=default, help=help)

    def numbers(
        flag: str, kind: Kind, default: list[float] | None, metavar: str, help: str
    ) -> None:
        parser.add_argument(flag, type=kind, nargs="+", default=default, metavar=metavar, help=help)

    number("--commands", int, 100_000)
    number("--naive-commands", int, 1_000)
    number(
        "--latency-commands",
        int,
        20_000,
        "commands offered at half the throughput (proportionally fewer at a tenth)",
    )
    parser.add_argument(
        "--scale", action="store_true", help="also compare a 10k and a 1M-run table"
    )
    number("--scale-small-table", int, 10_000)
    number("--scale-large-table", int, 1_000_000)
    numbers(
        "--memory",
        int,
        None,
        "N",
        "worker RSS after each N commands in one process, e.g. 100000 1000000",
    )
    number("--mixed-commands", int, 50_000, "a backlog of every command type")
    number("--timer-runs", int, 100_000, "runs coming due in the same second")
    number("--due-runs", int, 1_000, "due runs of each kind in the scale check")
    number("--http-requests", int, 3_000, "HTTP complete requests (and as many Kafka commands)")
    number("--http-rate", float, 100.0, "requests per second offered to serve")
    number("--tracing-commands", int, 20_000, "commands per drain, tracing on or off")
    number("--states-commands", int, 20_000, "commands per drain, run states on or off")
    parser.add_argument(
        "--only",
        choices=["open-loop", "gather-curve", "states", "ceilings"],
        help="run one section alone (its JSON goes to bench/results/<section>.json); "
        "gather-curve runs only on request",
    )
    numbers(
        "--open-loop-rates",
        int,
        [100, 200, 400, 800],
        "R",
        "complete requests per second offered to serve by vegeta, one point each",
    )
    number(
        "--open-loop-kafka-rate",
        float,
        100.0,
        "commands per second offered over Kafka (besides a tenth and half of the drain's)",
    )
    number("--open-loop-seconds", float, 20.0, "measured, at each open-loop rate")
    number(
        "--open-loop-warmup",
        float,
        5.0,
        "unmeasured, at each open-loop rate before its measured seconds",
    )
    number(
        "--open-loop-drain",
        int,
        20_000,
        "commands of the drain that gives the open-loop Kafka rates their maximum",
    )
    numbers(
        "--gather-ms",
        float,
        [0, 2, 5, 10, 20],
        "MS",
        "gather-curve: the FIELDING_BATCH_GATHER_MS values, a worker each",
    )
    numbers(
        "--gather-rates",
        float,
        [50, 100, 200, 400],
        "R",
        "gather-curve: commands per second offered over Kafka to each worker (the "
        "open-loop section's seconds and warm-up at each)",
    )
    number("--get-start-rate", int, 250, "the GET ceiling's first rate per second")
    number("--get-factor", float, 1.5, "each GET step's rate over the one before")
    number("--get-steps", int, 8, "GET steps at most")
    number("--get-step-seconds", float, 5.0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", type=Path, help="default: bench/results/latest.json")
    args = parser.parse_args()
    if args.smoke:  # every figure, at tiny sizes
        args.commands, args.naive_commands, args.latency_commands = 300, 50, 50
        args.scale, args.scale_small_table, args.scale_large_table = True, 400, 4_000
        args.memory = [300, 900]
        args.mixed_commands, args.timer_runs, args.due_runs = 200, 300, 20
        args.http_requests, args.http_rate = 60, 50.0
        args.tracing_commands = args.states_commands = 200
        args.open_loop_rates, args.open_loop_kafka_rate = [20, 40], 20.0
        args.open_loop_seconds, args.open_loop_warmup, args.open_loop_drain = 2.0, 1.0, 300
        args.get_start_rate, args.get_steps, args.get_step_seconds = 20, 2, 1.0
        args.gather_ms, args.gather_rates = [0, 5], [20, 40]
    if args.tracing_commands < 200:  # shorter drains read no CPU time at all
        parser.error("--tracing-commands: at least 200")
    if args.states_commands < 200:
        parser.error("--states-commands: at least 200")
    if min(args.open_loop_rates) < 1 or args.get_start_rate < 1 or args.open_loop_seconds <= 0:
        parser.error("open-loop rates: at least 1 a second (vegeta's are whole numbers), for >0 s")
    if min(args.gather_rates) <= 0 or min(args.gather_ms) < 0:
        parser.error("gather-curve: rates above 0 a second, windows of 0 ms or more")
    if args.json is None:
        args.json = RESULTS / (f"{args.only}.json" if args.only else "latest.json")
    result = asyncio.run(main(args))
    section = {"machine": {"cores": os.cpu_count() or 1}, "sizes": vars(args)}
    if isinstance(result, Report):
        figures, printed = result.to_json(), table(result)
    elif isinstance(result, RunStatesCost):
        figures, printed = section | {"states": asdict(result)}, states_line(result)
    elif isinstance(result, Ceilings):
        figures, printed = section | {"ceilings": result.to_json()}, ceilings_table(result)
    elif isinstance(result, OpenLoop):
        figures, printed = section | {"open_loop": result.to_json()}, open_loop_table(result)
    else:
        figures = section | {"gather_curve": result.to_json()}
        printed = gather_curve_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(printed)
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    cli()
