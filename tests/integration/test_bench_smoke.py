"""The benchmark runs end to end at a tiny size and reports every figure (not how fast)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import Services

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
OPEN_LOOP_FIGURES = ("offered_per_second", "sent_per_second", "p50_ms", "p99_ms", "busy_cores")


def run_bench(
    services: Services, output: Path, *options: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`python -m bench.run --smoke` with `options` on the test's services, its JSON to `output`;
    fails the test with the run's last output if it failed."""
    ran = subprocess.run(
        [sys.executable, "-m", "bench.run", *options, "--smoke", "--json", str(output)],
        cwd=ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap_servers,
            "DATABASE_URL": services.postgres_url,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return ran


# The run's own bound (600 s) rather than the suite's default: the first run also builds vegeta.
@pytest.mark.timeout(660)
def test_the_benchmark_produces_every_figure(services: Services, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    ran = run_bench(services, output, timeout=600)
    report = json.loads(output.read_text())
    figures = [
        report["worker"]["commands_per_second"],
        report["naive"]["commands_per_second"],
        report["kafka_ceiling"]["commands_per_second"],
        report["database_ceiling"]["commands_per_second"],
        report["kafka_ceiling"]["two_loops_commands_per_second"],
        report["kafka_ceiling"]["cpu_us_per_command"],
        report["worker"]["busy_cores"],
        report["worker"]["latency_busy_cores"],
        report["worker"]["latency_p50_ms"],
        report["worker"]["latency_p99_ms"],
        report["worker"]["latency_tenth_p50_ms"],
        report["worker"]["latency_tenth_p99_ms"],
        report["worker"]["peak_rss_mb"],
        report["worker"]["commands_per_wal_sync"],
        report["worker"]["cpu_us_per_command"],
        *report["ratios"].values(),
        report["scale"]["large_vs_small_throughput"],
        report["scale"]["large_vs_small_cpu_per_command"],
        report["memory"]["rss_last_vs_first"],
        report["mixed"]["commands_per_second"],
        report["mixed"]["cpu_us_per_command"],
        report["timers"]["seconds_until_all_opened"],
        report["due_scale"]["large_vs_small_time"],
        report["http"]["http_p50_ms"],
        report["http"]["http_p99_ms"],
        report["http"]["kafka_p50_ms"],
        report["http"]["http_vs_kafka_p50"],
        report["tracing"]["on_100_vs_off_cpu_per_command"],
        report["tracing"]["on_10_vs_off_throughput"],
        report["tracing"]["otlp_bytes_per_sampled_command"],
        report["states"]["on_vs_off_throughput"],
        report["states"]["on_vs_off_cpu_per_command"],
    ]
    open_loop = report["open_loop"]
    figures += [
        *(point[key] for point in open_loop["http"] for key in OPEN_LOOP_FIGURES),
        *(point[key] for point in open_loop["kafka"] for key in OPEN_LOOP_FIGURES),
        *(point["cpu_us_per_request_total"] for point in open_loop["http"]),
        *(point["cpu_us_per_command_total"] for point in open_loop["kafka"]),
        *(step["answered_per_second"] for step in open_loop["get_ceiling"]["steps"]),
        open_loop["kafka_drain"]["commands_per_second"],
        open_loop["kafka_drain"]["cpu_us_per_command_total"],
        open_loop["idle"]["cpu_us_per_second_total"],
    ]
    assert all(isinstance(f, int | float) and math.isfinite(f) and f > 0 for f in figures), figures
    # Each complete request answered 204 once: a run and a command id of its own.
    assert [point["statuses"] for point in open_loop["http"]] == [
        {"204": point["requests"]} for point in open_loop["http"]
    ]
    assert [set(point["cpu_us_per_request"]) for point in open_loop["http"]] == [
        {"serve", "worker", "broker", "postgres"}
    ] * len(open_loop["http"])
    assert set(open_loop["idle"]["cpu_us_per_second"]) == {"serve", "worker", "broker", "postgres"}
    assert [point["name"] for point in open_loop["kafka"]] == ["fixed", "tenth", "half"]
    assert "worker_vs_naive" in report["ratios"] and "commands/s" in ran.stdout
    timers = report["timers"]
    assert timers["events"] == timers["runs_with_one_event"] == timers["runs"], "one event each"


@pytest.mark.timeout(660)
def test_the_gather_curve_has_every_window_at_every_rate(
    services: Services, tmp_path: Path
) -> None:
    output = tmp_path / "gather-curve.json"
    ran = run_bench(services, output, "--only", "gather-curve", timeout=600)
    points = json.loads(output.read_text())["gather_curve"]["points"]
    assert [(p["gather_ms"], p["offered_per_second"]) for p in points] == [
        (0, 20),
        (0, 40),
        (5, 20),
        (5, 40),
    ]
    figures = [p[key] for p in points for key in (*OPEN_LOOP_FIGURES, "cpu_us_per_command_total")]
    assert all(isinstance(f, int | float) and math.isfinite(f) and f > 0 for f in figures), figures
    assert [set(p["cpu_us_per_command"]) for p in points] == [
        {"worker", "broker", "postgres"}
    ] * len(points)
    assert "vs 0 ms" in ran.stdout


@pytest.mark.timeout(300)
def test_the_ceilings_section_sets_the_drain_beside_both_ceilings(
    services: Services, tmp_path: Path
) -> None:
    output = tmp_path / "ceilings.json"
    ran = run_bench(services, output, "--only", "ceilings", timeout=240)
    ceilings = json.loads(output.read_text())["ceilings"]
    worker = ceilings["worker"]
    drain, database = worker["commands_per_second"], ceilings["database_ceiling"]
    assert ceilings["drain_vs_database_ceiling"] == pytest.approx(
        drain / database["commands_per_second"]
    )
    figures = [drain, worker["latency_tenth_p50_ms"], ceilings["cpu_vs_kafka_loop"]]
    assert all(math.isfinite(f) and f > 0 for f in figures), figures
    assert "drain / database ceiling" in ran.stdout
