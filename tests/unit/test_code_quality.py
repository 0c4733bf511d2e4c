"""The house rules that tools can check: ruff's lint rules and formatter, and mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_finds_nothing() -> None:
    checked = run("ruff", "check", ".")
    assert checked.returncode == 0, checked.stdout


def test_code_is_formatted_by_ruff() -> None:
    checked = run("ruff", "format", "--check", ".")
    assert checked.returncode == 0, checked.stdout


def test_mypy_strict_finds_nothing() -> None:
    checked = run("mypy")
    assert checked.returncode == 0, checked.stdout
