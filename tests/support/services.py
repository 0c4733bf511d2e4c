"""Real Kafka and Postgres for the integration tests.

Where a Docker engine answers, testcontainers starts apache/kafka and postgres images;
elsewhere (as on the development machines here) scripts/services.py starts the local ones.
FIELDING_TEST_SERVICES=docker|local forces one or the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"


@dataclass(frozen=True)
class Services:
    kafka_bootstrap_servers: str
    postgres_url: str  # a superuser's URL; tests create their own database in it
    kind: str
    stop: Callable[[str], None]  # "kafka" or "postgres", for the fault tests
    start: Callable[[str], None]
    kill: Callable[[str], None]  # as a crash: the broker SIGKILLed, Postgres `immediate`


def _local(action: str, service: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "services.py"), action, service], check=True
    )


def docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def real_services() -> Iterator[Services]:
    choice = os.environ.get("FIELDING_TEST_SERVICES", "auto")
    if choice == "docker" or (choice == "auto" and docker_engine_answers()):
        with _containers() as services:
            yield services
    else:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "services.py"), "up"], check=True)
        yield Services(
            kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            postgres_url=os.environ.get(
                "DATABASE_URL", "postgresql://fielding:fielding@localhost:5432/fielding"
            ),
            kind="local",
            stop=lambda service: _local("down", service),
            start=lambda service: _local("up", service),
            kill=lambda service: _local("kill", service),
        )


@contextmanager
def _containers() -> Iterator[Services]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer

    port = free_port()  # advertised as-is, so the host port must be known before start
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://localhost:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "2000")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    # A fixed host port: a restarted container would otherwise get a new random one.
    postgres = PostgresContainer(
        POSTGRES_IMAGE, username="fielding", password="fielding", dbname="fielding"
    ).with_bind_ports(5432, free_port())
    with kafka, postgres:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        url = postgres.get_connection_url(driver=None)
        containers = {"kafka": kafka, "postgres": postgres}

        def stop(service: str) -> None:
            containers[service].get_wrapped_container().stop()

        def kill(service: str) -> None:
            # SIGQUIT is Postgres's immediate shutdown; the broker gets SIGKILL.
            signal = "SIGQUIT" if service == "postgres" else "SIGKILL"
            container = containers[service].get_wrapped_container()
            container.kill(signal=signal)
            container.wait()

        def start(service: str) -> None:
            container = containers[service].get_wrapped_container()
            started_before = container.logs().count(b"Kafka Server started")
            container.start()
            if service == "kafka":  # the log keeps earlier runs' lines: wait for a new one
                deadline = time.monotonic() + 120
                while container.logs().count(b"Kafka Server started") <= started_before:
                    if time.monotonic() > deadline:
                        raise TimeoutError("kafka container did not start again in 120 s")
                    time.sleep(0.5)
            else:
                container.exec_run("pg_isready -t 60")

        yield Services(f"localhost:{port}", url, kind="docker", stop=stop, start=start, kill=kill)
