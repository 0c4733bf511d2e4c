"""The open-loop bench's parts that need no service: vegeta's targets and report, the CPU read
from /proc for a process and its children, which processes are Postgres's, the rates and the
runs handed out."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fixtures import ACCOUNT, SECRET, Runs
from bench.kafka_load import read_records, write_records
from bench.open_loop import (
    API_VERSION,
    Slices,
    complete_targets,
    cpu_us_per,
    get_targets,
    rising_rates,
)
from bench.system import ProcessStat, parse_stat, postmasters, tree_cpu_seconds
from bench.vegeta import Target, parse_report, targets_needed
from schemas.types import new_ulid
from worker.service.auth import Principal, TokenVerifier

DATA = Path(__file__).parents[1] / "data"
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {seconds}: pass\n"


def some_runs(count: int) -> Runs:
    return Runs(
        ids=[new_ulid() for _ in range(count)],
        project_id=new_ulid(),
        target_groups=[new_ulid() for _ in range(count)],
    )


def test_vegetas_json_report_is_read_with_latencies_in_ms_and_answers_by_status() -> None:
    report = parse_report((DATA / "vegeta-report.json").read_text())
    assert report.requests == 100
    assert report.statuses == {"200": 86, "404": 10, "501": 4}
    assert report.success_ratio == 0.86
    assert report.p50_ms == pytest.approx(1.241514)
    assert report.p99_ms == pytest.approx(4.01637)
    assert report.max_ms == pytest.approx(5.484269)
    assert report.sent_per_second == pytest.approx(50.51, abs=0.01)
    assert report.throughput_per_second == pytest.approx(43.42, abs=0.01)
    assert report.seconds == pytest.approx(1.979742765 + 0.001042632)
    assert report.errors == ["404 File not found", "501 Unsupported method ('POST')"]


def test_a_target_is_a_line_of_vegetas_json_format() -> None:
    target = Target("POST", "http://127.0.0.1:1/x", {"If-Match": 'W/"1"'}, b'{"a": 1}')
    line = target.as_json()
    assert "\n" not in line
    assert json.loads(line) == {
        "method": "POST",
        "url": "http://127.0.0.1:1/x",
        "header": {"If-Match": ['W/"1"']},
        "body": base64.b64encode(b'{"a": 1}').decode(),
    }
    assert "body" not in json.loads(Target("GET", "http://127.0.0.1:1/x").as_json())


def test_each_complete_request_completes_a_run_of_its_own_under_a_command_id_of_its_own() -> None:
    runs = some_runs(50)
    targets = complete_targets("http://127.0.0.1:8080", runs, range(10, 40))
    assert (
        len({t.url for t in targets}) == len({t.headers["idempotency-key"] for t in targets}) == 30
    )
    first = targets[0]
    assert first.method == "POST"
    assert first.url == (
        f"http://127.0.0.1:8080/v1/demand/accounts/{ACCOUNT}/projects/{runs.project_id}/target-groups/"
        f"{runs.target_groups[10]}/fielding-runs/{runs.ids[10]}/complete"
    )
    principal = TokenVerifier(SECRET).verify(first.headers["Authorization"].encode())
    assert isinstance(principal, Principal) and principal.may_act_on(ACCOUNT)
    assert (first.headers["If-Match"], first.headers["Cint-API-Version"]) == ('W/"1"', API_VERSION)


def test_get_targets_read_the_runs() -> None:
    runs = some_runs(3)
    targets = get_targets("http://127.0.0.1:8080", runs, range(3))
    assert [t.method for t in targets] == ["GET"] * 3
    assert targets[2].url.endswith(f"/fielding-runs/{runs.ids[2]}")


@pytest.mark.parametrize(("rate", "seconds"), [(1, 0.5), (100, 20), (800, 20), (37, 2.5)])
def test_an_attack_has_a_target_for_every_request_it_sends(rate: int, seconds: float) -> None:
    assert targets_needed(rate, seconds) >= rate * seconds + 1


def test_runs_are_handed_out_once() -> None:
    slices = Slices(some_runs(10))
    assert [slices.take(4), slices.take(6)] == [range(0, 4), range(4, 10)]
    with pytest.raises(RuntimeError):
        slices.take(1)


def test_the_get_rates_rise_by_the_factor_and_always_rise() -> None:
    assert rising_rates(250, 1.5, 5) == [250, 375, 562, 843, 1264]
    assert rising_rates(1, 1.1, 4) == [1, 2, 3, 4]


def test_cpu_per_request_is_each_processs_growth_over_the_answered_requests() -> None:
    before = {"serve": 10.0, "postgres": 3.0}
    after = {"serve": 10.5, "postgres": 3.2}
    assert cpu_us_per(before, after, 1000) == pytest.approx({"serve": 500.0, "postgres": 200.0})
    assert cpu_us_per(before, after, 0) == {}


def test_a_stat_line_is_read_past_a_name_with_spaces_and_parentheses() -> None:
    line = "4242 (post gres) (x)) S 17 4242 4242 0 -1 4194560 10 0 0 0 31 7 5 2 20 0 1 0 100 0\n"
    assert parse_stat(line) == ProcessStat(
        comm="post gres) (x)", ppid=17, utime=31, stime=7, cutime=5, cstime=2
    )


def test_a_childs_cpu_counts_while_it_runs_and_after_it_has_exited() -> None:
    me = os.getpid()
    before = tree_cpu_seconds(me)
    child = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=5)])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_seconds(me) - before < 0.3:  # the child's own time, while it runs
            assert time.monotonic() < deadline, "the running child's CPU was not counted"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    # Exited and waited for: its time is now the parent's cutime, and still counted.
    ended = tree_cpu_seconds(me)
    subprocess.run([sys.executable, "-c", BURN.format(seconds=0.4)], check=True)
    assert tree_cpu_seconds(me) - ended >= 0.38


def test_the_postmaster_is_the_postgres_process_whose_parent_is_not() -> None:
    def stat(comm: str, ppid: int) -> ProcessStat:
        return ProcessStat(comm, ppid, 0, 0, 0, 0)

    table = {
        1: stat("init", 0),
        100: stat("postgres", 1),
        101: stat("postgres", 100),
        102: stat("postgres", 100),
        200: stat("python", 1),
        201: stat("postgres", 999),  # its parent is gone from the table: not counted
    }
    assert postmasters(table) == [100]


def test_the_producer_process_reads_the_records_it_was_given(tmp_path: Path) -> None:
    records = [(new_ulid(), json.dumps({"command_id": new_ulid(), "note": "tab\there"}))]
    written = write_records(tmp_path / "records.jsonl", records * 3)
    assert read_records(written) == [(k.encode(), v.encode()) for k, v in records * 3]
