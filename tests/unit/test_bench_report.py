"""The benchmark's report: the table printed from a typed report, and its JSON's keys."""

from __future__ import annotations

from dataclasses import replace

from bench.report import (
    Drain,
    DrainMedians,
    DueScale,
    HttpLatency,
    KafkaCeiling,
    LoadPoint,
    Memory,
    Mixed,
    Report,
    RunStatesCost,
    Scale,
    ScaleRounds,
    Throughput,
    TimerBurst,
    Tracing,
    WorkerFigures,
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
