"""The local services script's pure parts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType


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
