"""docker-compose.yml cannot run here (no Docker engine); this checks that it agrees with the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from worker.observability.tracing import configure_tracing
from worker.settings import Settings

ROOT = Path(__file__).parents[2]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(c for c in getattr(alias, "choices", []) if isinstance(c, str) and c.isupper())
    return names


def test_the_compose_file_has_the_services_the_readme_names() -> None:
    assert {
        "kafka",
        "postgres",
        "create-topics",
        "migrate",
        "worker",
        "api",
        "prometheus",
        "grafana",
        "jaeger",
    } <= set(compose()["services"])


def test_worker_services_use_only_settings_the_worker_reads_and_run_its_commands() -> None:
    services = compose()["services"]
    commands = {
        "create-topics": ["create-topics"],
        "migrate": ["migrate"],
        "worker": ["run"],
        "api": ["serve"],
    }
    for name, command in commands.items():
        service = services[name]
        assert service["command"] == command
        ours = {k: v for k, v in service["environment"].items() if not k.startswith("OTEL_")}
        assert set(ours) <= env_names(), set(ours) - env_names()
        Settings(**{k.lower(): v for k, v in ours.items() if "${" not in v})


def test_the_worker_traces_to_jaeger_over_otlp() -> None:
    services = compose()["services"]
    environment = services["worker"]["environment"]
    assert services["api"]["environment"]["OTEL_TRACES_EXPORTER"] == "otlp"
    tracing = configure_tracing("fielding-worker", environment)
    assert tracing is not None, "the compose file's OTEL_* variables turn tracing on"
    tracing.shutdown()
    endpoint = urlparse(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("jaeger", 4318)  # Jaeger's OTLP over HTTP
    assert "16686:16686" in services["jaeger"]["ports"]


def test_the_worker_reaches_kafka_and_postgres_where_they_listen() -> None:
    services = compose()["services"]
    env = services["worker"]["environment"]
    host, port = env["KAFKA_BOOTSTRAP_SERVERS"].split(":")
    kafka_env = services["kafka"]["environment"]
    assert host == "kafka"
    assert f"PLAINTEXT://kafka:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    database = urlparse(env["DATABASE_URL"])
    pg_env = services["postgres"]["environment"]
    assert database.hostname == "postgres" and database.port == 5432
    assert (database.username, database.password, database.path.lstrip("/")) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        pg_env["POSTGRES_DB"],
    )


def test_the_worker_publishes_its_metrics_port() -> None:
    worker = compose()["services"]["worker"]
    port = worker["environment"]["METRICS_PORT"]
    assert f"{port}:{port}" in worker["ports"]
    assert f"localhost:{port}/healthz" in " ".join(worker["healthcheck"]["test"])
    assert Settings().metrics_port == int(port)


def test_the_dockerfile_installs_the_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["fielding-worker"]' in dockerfile
    for package in ("fielding_statemachine", "schemas", "worker"):
        assert f"COPY {package} ./{package}" in dockerfile
