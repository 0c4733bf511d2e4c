"""The alert rules and the Grafana dashboard name only metrics the worker exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import worker.observability.metrics  # noqa: F401 - registers the worker's metrics

OPS = Path(__file__).parents[2] / "ops"
SUFFIXES = {
    "counter": ["_total", "_created"],
    "histogram": ["_bucket", "_count", "_sum", "_created"],
    "gauge": [""],
    "summary": ["_count", "_sum", "_created"],
}


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("fielding_worker_"):
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, [""]))
    return names


def referenced(expression: str) -> set[str]:
    return set(re.findall(r"fielding_worker_[a-z_]+", expression))


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_is_complete_and_names_exported_metrics() -> None:
    rules = alert_rules()
    assert {"FieldingWorkerStalled", "FieldingWorkerLagGrowing"} <= {r["alert"] for r in rules}
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]  # type: ignore[index]
        assert referenced(str(rule["expr"])) <= exported_names(), rule["alert"]


def test_the_dashboard_shows_lag_throughput_latency_and_outcomes_from_exported_metrics() -> None:
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "fielding-worker.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(referenced(e) for e in exprs))
    assert used <= exported_names()
    assert {
        "fielding_worker_consumer_lag",
        "fielding_worker_commands_total",
        "fielding_worker_command_latency_seconds_bucket",
    } <= used
    datasource = yaml.safe_load(
        (OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in datasource["datasources"]}
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} <= uids
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_the_worker_and_serve_where_compose_runs_them() -> None:
    config = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((OPS.parent / "docker-compose.yml").read_text())
    port = compose["services"]["worker"]["environment"]["METRICS_PORT"]
    worker, serve = config["scrape_configs"]
    assert worker["static_configs"][0]["targets"] == [f"worker:{port}"]
    assert worker["job_name"] == "fielding-worker"  # the FieldingWorkerDown alert selects on it
    # serve ("api" in compose) has the same METRICS_PORT, from the shared environment.
    assert compose["services"]["api"]["environment"]["METRICS_PORT"] == port
    assert serve["static_configs"][0]["targets"] == [f"api:{port}"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(OPS / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
