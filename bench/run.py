"""One command, one run, side by side on the local real services:

    python -m bench.run [--commands N] [--naive-commands N] [--latency-commands N] [--scale] [--smoke]

1. the worker under test (`fielding-worker run`, a real process: bench/drain.py);
2. a naive baseline (bench/naive.py);
3. two ceilings: Kafka consume -> produce without a database, and the database work alone
   (bench/ceilings.py);
4. a mixed backlog of every command type, a burst of timers (bench/lifecycle.py), HTTP
   requests beside Kafka commands at one rate (bench/http.py), tracing's cost
   (bench/tracing.py), and run states' cost (bench/states.py).

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
from bench.http import measure_http
from bench.lifecycle import bench_due_scale, bench_mixed, bench_timer_burst
from bench.naive import bench_naive
from bench.report import Report, table
from bench.states import measure_states
from bench.tracing import measure_tracing
from worker.settings import Settings

RESULTS = Path(__file__).parent / "results"


async def main(args: argparse.Namespace) -> Report:
    base = Settings(
        jwt_secret=SECRET,
        system_jwt_secret=SECRET[::-1],
        rate_limit_per_account=0,
        read_rate_limit_per_account=0,
    )
    if args.smoke:  # several batches even at tiny sizes, so that a drain can be timed
        base = base.model_copy(update={"max_batch": 50})
    try:
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
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description="fielding-worker benchmark")
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--naive-commands", type=int, default=1_000)
    parser.add_argument(
        "--latency-commands",
        type=int,
        default=20_000,
        help="commands offered at half the throughput (proportionally fewer at a tenth)",
    )
    parser.add_argument(
        "--scale", action="store_true", help="also compare a 10k and a 1M-run table"
    )
    parser.add_argument("--scale-small-table", type=int, default=10_000)
    parser.add_argument("--scale-large-table", type=int, default=1_000_000)
    parser.add_argument(
        "--memory",
        type=int,
        nargs="+",
        metavar="N",
        help="worker RSS after each N commands in one process, e.g. 100000 1000000",
    )
    parser.add_argument(
        "--mixed-commands", type=int, default=50_000, help="a backlog of every command type"
    )
    parser.add_argument(
        "--timer-runs", type=int, default=100_000, help="runs coming due in the same second"
    )
    parser.add_argument(
        "--due-runs", type=int, default=1_000, help="due runs of each kind in the scale check"
    )
    parser.add_argument(
        "--http-requests",
        type=int,
        default=3_000,
        help="HTTP complete requests (and as many Kafka commands)",
    )
    parser.add_argument(
        "--http-rate", type=float, default=100.0, help="requests per second offered to serve"
    )
    parser.add_argument(
        "--tracing-commands", type=int, default=20_000, help="commands per drain, tracing on or off"
    )
    parser.add_argument(
        "--states-commands",
        type=int,
        default=20_000,
        help="commands per drain, run states on or off",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    if args.smoke:  # every figure, at tiny sizes
        args.commands, args.naive_commands, args.latency_commands = 300, 50, 50
        args.scale, args.scale_small_table, args.scale_large_table = True, 400, 4_000
        args.memory = [300, 900]
        args.mixed_commands, args.timer_runs, args.due_runs = 200, 300, 20
        args.http_requests, args.http_rate = 60, 50.0
        args.tracing_commands = args.states_commands = 200
    if args.tracing_commands < 200:  # shorter drains read no CPU time at all
        parser.error("--tracing-commands: at least 200")
    if args.states_commands < 200:
        parser.error("--states-commands: at least 200")
    report = asyncio.run(main(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    print(table(report))
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    cli()
