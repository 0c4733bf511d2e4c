"""The local services script's pure parts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest


def services_script() -> ModuleType:
    path = Path(__file__).parents[2] / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("local_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_kraft_cluster_id_is_never_read_as_an_option() -> None:
    # One id in 64 starts with '-'; Kafka's storage tool then took it for an option and the
    # broker never started (seen once in CI).
    ids = [services_script()._kraft_cluster_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_broker_starts_fast_unless_the_optimising_jit_is_asked_for() -> None:
    services = services_script()
    libs = Path("/nowhere/libs")
    assert "-XX:TieredStopAtLevel=1" in services.java_command(libs, "kafka.Kafka", "props")
    optimising = services.java_command(libs, "kafka.Kafka", "props", jit="optimising")
    assert not any(flag.startswith("-XX:TieredStopAtLevel") for flag in optimising)
    for jit in services.JIT_CHOICES:
        assert services.jit_of(services.java_command(libs, "kafka.Kafka", jit=jit)) == jit


def test_the_jit_asked_for_is_one_of_the_two(monkeypatch: pytest.MonkeyPatch) -> None:
    services = services_script()
    monkeypatch.delenv("LOCAL_KAFKA_JIT", raising=False)
    assert services.kafka_jit() is None
    monkeypatch.setenv("LOCAL_KAFKA_JIT", "optimising")
    assert services.kafka_jit() == "optimising"
    monkeypatch.setenv("LOCAL_KAFKA_JIT", "c2")
    with pytest.raises(SystemExit, match="fast-start, optimising"):
        services.kafka_jit()
