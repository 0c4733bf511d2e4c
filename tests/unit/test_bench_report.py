"""The benchmark's report: the table printed from a typed report, and its JSON's keys."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.report import (
    Drain,
    DrainMedians,
    DueScale,
    GatherCurve,
    GetCeiling,
    GetStep,
    HttpLatency,
    HttpPoint,
    IdlePoint,
    KafkaCeiling,
    KafkaDrainPoint,
    KafkaPoint,
    LoadPoint,
    Memory,
    Mixed,
    OpenLoop,
    Report,
    RunStatesCost,
    Scale,
    ScaleRounds,
    Throughput,
    TimerBurst,
    Tracing,
    WorkerFigures,
    gather_curve_table,
    open_loop_table,
    table,
)


def a_report(cores: int = 2) -> Report:
    return Report(
        cores=cores,
        sizes={"commands": 100_000, "smoke": False},
        worker=WorkerFigures(
            commands=100_000,
            drain=Drain(commands_per_second=10_300.4, cpu_us_per_command=70.2, busy_cores=1.28),
            wal_syncs=91,
            commands_per_wal_sync=1_098.9,
            half=LoadPoint(
                offered_per_second=5_150.2,
                commands=20_000,
                busy_cores=1.68,
                p50_ms=61.04,
                p99_ms=106.3,
            ),
            tenth=LoadPoint(
                offered_per_second=1_030.0,
                commands=4_000,
                busy_cores=1.76,
                p50_ms=25.0,
                p99_ms=39.44,
            ),
            peak_rss_mb=127.3,
        ),
        naive=Throughput(commands=1_000, commands_per_second=301.2),
        kafka_ceiling=KafkaCeiling(
            commands=100_000,
            commands_per_second=61_021.0,
            cpu_us_per_command=15.0,
            busy_cores=1.04,
            two_loops_commands_per_second=97_616.0,
        ),
        database_ceiling=Throughput(commands=100_000, commands_per_second=17_341.0),
        mixed=Mixed(
            commands=50_000,
            runs_changed=95_000,
            commands_per_second=2_354.0,
            cpu_us_per_command=249.0,
        ),
        http=HttpLatency(
            offered_per_second=100.0,
            requests=2_000,
            http_p50_ms=41.9,
            http_p99_ms=75.9,
            kafka_p50_ms=26.6,
            kafka_p99_ms=89.2,
            http_vs_kafka_p50=1.575,
            http_vs_kafka_p99=0.851,
        ),
        tracing=Tracing(
            commands_per_drain=20_000,
            rounds=2,
            off=DrainMedians(commands_per_second=4_000.0, cpu_us_per_command=123.0),
            on_100=DrainMedians(commands_per_second=2_200.0, cpu_us_per_command=302.6),
            on_10=DrainMedians(commands_per_second=3_120.0, cpu_us_per_command=180.8),
            on_100_vs_off_throughput=0.55,
            on_100_vs_off_cpu_per_command=2.46,
            on_10_vs_off_throughput=0.78,
            on_10_vs_off_cpu_per_command=1.47,
            otlp_bytes_per_sampled_command=812.5,
        ),
        timers=TimerBurst(
            runs=100_000, seconds_until_all_opened=35.2, events=100_000, runs_with_one_event=100_000
        ),
        states=RunStatesCost.of(
            20_000,
            3,
            on=DrainMedians(commands_per_second=3_800.0, cpu_us_per_command=129.15),
            off=DrainMedians(commands_per_second=4_000.0, cpu_us_per_command=123.0),
        ),
        scale=Scale(
            commands_per_round=9_988,
            rounds=3,
            tables={
                10_000: ScaleRounds([10_000.0, 9_000.0, 11_000.0], [70.0, 72.0, 68.0]),
                1_000_000: ScaleRounds([9_000.0, 8_000.0, 10_000.0], [77.0, 79.0, 75.0]),
            },
            large_vs_small_throughput=0.9,
            large_vs_small_cpu_per_command=1.1,
        ),
        due_scale=DueScale(
            due=1_000, table_ms={10_000: 2.0, 1_000_000: 2.5}, large_vs_small_time=1.25
        ),
        memory=Memory(rss_mb_after={100_000: 107.4, 1_000_000: 119.9}, rss_last_vs_first=1.116),
    )


# What the printer made of `a_report()` before the report was typed (bench/run.py at 34488c6,
# over the same figures as a dict): the typed report prints the same.
PRINTED = (
    "\n".join(
        [
            "scenario                         commands  commands/s",
            "worker                           100000    10,300    ",
            "naive                            1000      301       ",
            "kafka_ceiling                    100000    61,021    ",
            "kafka_ceiling, 2 loop processes  100000    97,616    ",
            "database_ceiling                 100000    17,341    ",
            "",
        ]
    )
    + """\

worker latency at 5,150/s offered (half): p50 61.0 ms, p99 106.3 ms
worker latency at 1,030/s offered (a tenth): p50 25.0 ms, p99 39.4 ms
worker peak RSS 127 MB; 1098.9 commands per WAL sync; 70 µs CPU per command (the Kafka ceiling's loop: 15 µs)
busy cores of 2: drain 1.28, half 1.68, tenth 1.76, Kafka ceiling 1.04
worker_vs_naive: 34.20
worker_vs_kafka_ceiling: 0.17
worker_vs_database_ceiling: 0.59
kafka_ceiling_two_loops_vs_one: 1.60
worker_vs_kafka_loop_cpu_per_command: 4.68
mixed_vs_complete_throughput: 0.23
scale: large/small table throughput 0.90, CPU per command 1.10
mixed backlog of every command type: 2,354 commands/s, 249 µs CPU per command (95000 runs changed)
100,000 runs due in one second: all opened 35.2 s after it; 100,000 events, 100,000 runs with exactly one
HTTP complete at 100/s: p50 41.9 ms, p99 75.9 ms; Kafka at the same rate, same worker: p50 26.6 ms, p99 89.2 ms (HTTP/Kafka p50 1.57, p99 0.85)
tracing, against off: on at 100% throughput 0.55, CPU per command 2.46; on at 10% throughput 0.78, CPU per command 1.47 (123 µs CPU per command off)
run states, against off: throughput 0.95, CPU per command 1.05 (within 10% of the drain without them)
finding 1000 due runs of each kind: large/small table time 1.25
memory: rss_mb_after_100000 107.40, rss_mb_after_1000000 119.90, rss_last_vs_first 1.12"""
)


def test_the_table_prints_every_figure_of_the_report() -> None:
    assert table(a_report()) == PRINTED


def test_the_scenario_table_has_a_row_per_scenario_in_aligned_columns() -> None:
    rows = table(a_report()).split("\n\n")[0].splitlines()
    assert [row.split("  ")[0].strip() for row in rows] == [
        "scenario",
        "worker",
        "naive",
        "kafka_ceiling",
        "kafka_ceiling, 2 loop processes",
        "database_ceiling",
    ]
    header = rows[0]
    for row in rows:
        assert len(row) == len(header)
        assert row[header.index("commands/s") - 2 : header.index("commands/s")] == "  "


def test_sections_run_only_on_request_are_left_out_when_absent() -> None:
    report = replace(a_report(), scale=None, due_scale=None, memory=None)
    printed = table(report)
    assert "scale:" not in printed and "due runs" not in printed and "memory:" not in printed
    assert {"scale", "due_scale", "memory"}.isdisjoint(report.to_json())


def test_the_json_keeps_the_keys_the_smoke_test_and_earlier_results_read() -> None:
    figures = a_report().to_json()
    assert list(figures) == [
        "machine",
        "sizes",
        "worker",
        "naive",
        "kafka_ceiling",
        "database_ceiling",
        "mixed",
        "http",
        "tracing",
        "timers",
        "states",
        "scale",
        "due_scale",
        "memory",
        "ratios",
    ]
    assert list(figures["worker"]) == [
        "commands",
        "commands_per_second",
        "cpu_us_per_command",
        "busy_cores",
        "wal_syncs",
        "commands_per_wal_sync",
        "latency_offered_per_second",
        "latency_commands",
        "latency_busy_cores",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_tenth_offered_per_second",
        "latency_tenth_commands",
        "latency_tenth_busy_cores",
        "latency_tenth_p50_ms",
        "latency_tenth_p99_ms",
        "peak_rss_mb",
    ]
    assert figures["scale"]["table_10000"] == {
        "commands_per_second": [10_000.0, 9_000.0, 11_000.0],
        "cpu_us_per_command": [70.0, 72.0, 68.0],
    }
    assert figures["due_scale"] == {
        "due": 1_000,
        "table_10000_ms": 2.0,
        "table_1000000_ms": 2.5,
        "large_vs_small_time": 1.25,
    }
    assert figures["memory"] == {
        "rss_mb_after_100000": 107.4,
        "rss_mb_after_1000000": 119.9,
        "rss_last_vs_first": 1.116,
    }
    assert figures["tracing"]["off"] == {
        "commands_per_second": 4_000.0,
        "cpu_us_per_command": 123.0,
    }
    assert figures["ratios"]["worker_vs_naive"] == 10_300.4 / 301.2


def test_run_states_are_within_the_bound_only_at_90_percent_of_the_drain_without_them() -> None:
    off = DrainMedians(commands_per_second=4_000.0, cpu_us_per_command=100.0)

    def at(rate: float) -> RunStatesCost:
        on = DrainMedians(commands_per_second=rate, cpu_us_per_command=110.0)
        return RunStatesCost.of(20_000, 3, on=on, off=off)

    assert at(3_600.0).within_bound and at(3_600.0).on_vs_off_throughput == 0.9
    assert not at(3_599.0).within_bound
    assert at(3_599.0).on_vs_off_cpu_per_command == 1.1
    assert "NOT within 10%" in table(replace(a_report(), states=at(3_000.0)))
    assert a_report().to_json()["states"]["off"] == {
        "commands_per_second": 4_000.0,
        "cpu_us_per_command": 123.0,
    }


def an_open_loop(broker_jit: str = "optimising") -> OpenLoop:
    return OpenLoop(
        generator="vegeta v12.13.0 for HTTP, a producer process for Kafka",
        broker_jit=broker_jit,
        seconds_per_point=20.0,
        warmup_seconds=5.0,
        idle=IdlePoint(
            20.0, {"serve": 4_210.0, "worker": 7_960.4, "broker": 21_500.0, "postgres": 1_020.0}
        ),
        http=[
            HttpPoint(
                offered_per_second=100,
                sent_per_second=100.02,
                requests=2_000,
                statuses={"204": 2_000},
                p50_ms=14.21,
                p99_ms=31.5,
                busy_cores=0.61,
                cpu_us_per_request={
                    "serve": 1_210.0,
                    "worker": 980.4,
                    "broker": 402.0,
                    "postgres": 310.6,
                },
            ),
            HttpPoint(
                offered_per_second=800,
                sent_per_second=799.1,
                requests=16_000,
                statuses={"0": 12, "204": 15_100, "503": 888},
                p50_ms=2_210.0,
                p99_ms=9_870.25,
                busy_cores=1.98,
                cpu_us_per_request={
                    "serve": 1_500.0,
                    "worker": 700.0,
                    "broker": 350.0,
                    "postgres": 250.0,
                },
            ),
        ],
        get_ceiling=GetCeiling(
            [
                a_get_step(250, answered=249.9, success=1.0),
                a_get_step(375, answered=352.0, success=0.995),
            ]
        ),
        kafka_drain=KafkaDrainPoint(
            commands=20_000,
            commands_per_second=9_800.4,
            busy_cores=1.31,
            cpu_us_per_command={"worker": 70.2, "broker": 20.0, "postgres": 15.1},
        ),
        kafka=[
            KafkaPoint(
                "fixed", 100.0, 100.0, 2_000, 12.5, 30.25, 0.31,
                {"worker": 250.0, "broker": 120.0, "postgres": 80.0},
            ),
            KafkaPoint(
                "tenth", 980.04, 979.8, 19_601, 25.0, 41.0, 0.9,
                {"worker": 100.0, "broker": 40.0, "postgres": 25.0},
            ),
            KafkaPoint(
                "half", 4_900.2, 4_850.0, 98_004, 60.0, 110.0, 1.7,
                {"worker": 75.0, "broker": 22.0, "postgres": 16.0},
            ),
        ],
    )  # fmt: skip


def a_get_step(rate: int, answered: float, success: float) -> GetStep:
    cpu = {"serve": 800.0, "worker": 1.0, "broker": 0.5, "postgres": 150.0}
    return GetStep(rate, rate + 0.1, answered, success, 3.2, 9.8, cpu)


PRINTED_OPEN_LOOP = """\
open loop (vegeta v12.13.0 for HTTP, a producer process for Kafka; the broker's JIT: optimising): 20 s at each rate after 5 s unmeasured
idle for 20 s (serve and the worker running, nothing offered), CPU µs per second by process:
serve  worker  broker  postgres  total
4,210  7,960   21,500  1,020     34,690
HTTP complete, CPU µs per 204 by process:
offered/s  sent/s  statuses                p50 ms  p99 ms  busy cores  serve  worker  broker  postgres  total
100        100.0   204:2000                14.2    31.5    0.61        1,210  980     402     311       2,903
800        799.1   0:12 204:15100 503:888  2210.0  9870.2  1.98        1,500  700     350     250       2,800
GET ceiling: 250/s sustained (under 1% errors, 95% of the rate answered); CPU µs per GET by process:
offered/s  sent/s  answered/s  success  p50 ms  p99 ms  serve  worker  broker  postgres  total
250        250.1   249.9       100.00%  3.2     9.8     800    1       0       150       952
375        375.1   352.0       99.50%   3.2     9.8     800    1       0       150       952
Kafka: the worker drains a backlog at 9,800/s; CPU µs per command by process:
rate   offered/s  sent/s   commands  p50 ms  p99 ms  busy cores  worker  broker  postgres  total
drain  backlog    -        20,000    -       -       1.31        70      20      15        105
fixed  100        100.0    2,000     12.5    30.2    0.31        250     120     80        450
tenth  980        979.8    19,601    25.0    41.0    0.90        100     40      25        165
half   4,900      4,850.0  98,004    60.0    110.0   1.70        75      22      16        113"""


def test_the_open_loop_table_shows_cpu_per_request_by_process_and_its_total() -> None:
    assert open_loop_table(an_open_loop()) == PRINTED_OPEN_LOOP


def test_a_broker_not_run_as_deployed_is_said_so() -> None:
    assert "optimising JIT" not in open_loop_table(an_open_loop())
    assert open_loop_table(an_open_loop("fast-start")).splitlines()[-1] == (
        "The broker ran with the fast-start JIT, not as deployed: `make bench` restarts it "
        "with the optimising one (LOCAL_KAFKA_JIT=optimising)."
    )


def test_the_get_ceiling_is_the_last_rate_sustained_before_the_first_that_was_not() -> None:
    ok, queueing, erring = (
        a_get_step(250, answered=249.0, success=1.0),
        a_get_step(375, answered=300.0, success=1.0),  # answered below 95% of the rate
        a_get_step(562, answered=562.0, success=0.98),  # 2% errors
    )
    assert (queueing.sustained, erring.sustained) == (False, False)
    assert GetCeiling([ok, a_get_step(375, 375.0, 0.999), erring]).sustained_per_second == 375
    assert GetCeiling([ok, queueing]).sustained_per_second == 250
    assert GetCeiling([queueing]).sustained_per_second is None
    assert GetCeiling([ok, queueing]).found
    every = GetCeiling([ok, a_get_step(375, 375.0, 1.0)])
    assert not every.found and every.sustained_per_second == 375
    assert "375/s sustained, the highest rate tried" in open_loop_table(
        replace(an_open_loop(), get_ceiling=every)
    )


def test_the_open_loop_section_is_printed_last_and_kept_in_the_json() -> None:
    report = replace(a_report(), open_loop=an_open_loop())
    assert table(report) == PRINTED + "\n\n" + PRINTED_OPEN_LOOP
    figures = report.to_json()
    assert list(figures)[-2:] == ["open_loop", "ratios"]
    open_loop = figures["open_loop"]
    assert open_loop["http"][0]["cpu_us_per_request_total"] == pytest.approx(2_903.0)
    assert open_loop["http"][1]["statuses"] == {"0": 12, "204": 15_100, "503": 888}
    assert open_loop["get_ceiling"]["sustained_per_second"] == 250
    assert [step["sustained"] for step in open_loop["get_ceiling"]["steps"]] == [True, False]
    assert open_loop["kafka_drain"]["cpu_us_per_command_total"] == pytest.approx(105.3)
    assert open_loop["idle"]["cpu_us_per_second_total"] == pytest.approx(34_690.4)
    assert [point["name"] for point in open_loop["kafka"]] == ["fixed", "tenth", "half"]
    assert open_loop["broker_jit"] == "optimising"


def a_gather_curve(broker_jit: str = "optimising") -> GatherCurve:
    def point(
        gather_ms: float, rate: float, p50: float, p99: float, worker: float
    ) -> KafkaPoint[float]:
        cpu = {"worker": worker, "broker": worker * 1.5, "postgres": worker / 4}
        return KafkaPoint(gather_ms, rate, rate - 0.1, int(rate * 20), p50, p99, 0.4, cpu)

    return GatherCurve(
        broker_jit=broker_jit,
        seconds_per_point=20.0,
        warmup_seconds=5.0,
        points=[
            point(0, 100.0, 13.0, 31.0, 3_800.0),
            point(0, 400.0, 15.5, 38.0, 1_000.0),
            point(10, 100.0, 17.25, 40.0, 1_900.0),
            point(10, 400.0, 19.0, 44.5, 640.0),
        ],
    )


PRINTED_GATHER_CURVE = """\
gathering window (FIELDING_BATCH_GATHER_MS; the broker's JIT: optimising): 20 s at each rate after 5 s unmeasured; CPU µs per command by process; `vs 0 ms`: the total against the same rate's without a window
offered/s  gather ms  sent/s  p50 ms  p99 ms  busy cores  worker  broker  postgres  total   vs 0 ms
100        0          99.9    13.0    31.0    0.40        3,800   5,700   950       10,450  1.00
100        10         99.9    17.2    40.0    0.40        1,900   2,850   475       5,225   0.50
400        0          399.9   15.5    38.0    0.40        1,000   1,500   250       2,750   1.00
400        10         399.9   19.0    44.5    0.40        640     960     160       1,760   0.64"""


def test_the_gather_curve_puts_each_rates_windows_side_by_side_against_no_window() -> None:
    assert gather_curve_table(a_gather_curve()) == PRINTED_GATHER_CURVE


def test_a_gather_curve_without_a_0_ms_window_leaves_the_comparison_empty() -> None:
    curve = a_gather_curve()
    only_gathering = replace(curve, points=[p for p in curve.points if p.label])
    rows = gather_curve_table(only_gathering).splitlines()[2:]
    assert [row.split()[-1] for row in rows] == ["-", "-"]


def test_a_gather_curve_on_a_fast_start_broker_says_so() -> None:
    assert gather_curve_table(a_gather_curve("fast-start")).splitlines()[-1] == (
        "The broker ran with the fast-start JIT, not as deployed: `make bench` restarts it "
        "with the optimising one (LOCAL_KAFKA_JIT=optimising)."
    )


def test_the_gather_curve_json_keeps_every_point_with_its_total() -> None:
    figures = a_gather_curve().to_json()
    assert [(p["gather_ms"], p["offered_per_second"]) for p in figures["points"]] == [
        (0, 100.0),
        (0, 400.0),
        (10, 100.0),
        (10, 400.0),
    ]
    assert figures["points"][2]["cpu_us_per_command_total"] == pytest.approx(5_225.0)
    assert figures["broker_jit"] == "optimising"
