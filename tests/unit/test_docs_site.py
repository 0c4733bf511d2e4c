"""The documentation site builds with no warning, its generated pages are all used, every alert
has a runbook section, and the docs keep the house style."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def test_the_site_builds_with_no_warning_and_no_broken_link(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    assert (tmp_path / "reference" / "settings" / "index.html").exists()


def test_every_generated_table_is_on_a_page() -> None:
    spec = importlib.util.spec_from_file_location("reference", ROOT / "docs_hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    used = {name for page in pages() for name in MARKER.findall(page.read_text())}
    assert used == set(hook.GENERATORS)


def test_every_alert_has_a_section_and_its_runbook_points_there() -> None:
    document = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in document["groups"] for rule in group["rules"]]
    headings = re.findall(r"^## (\w+)$", (DOCS / "operations" / "alerts.md").read_text(), re.M)
    assert sorted(headings) == sorted(rule["alert"] for rule in alerts)
    for rule in alerts:
        expected = f"docs/operations/alerts.md#{rule['alert'].lower()}"
        assert rule["annotations"]["runbook"] == expected, rule["alert"]


def test_the_docs_speak_in_no_first_person() -> None:
    first_person = re.compile(r"\b(I(?!/O)|I'm|I've|we|We|our|Our|ours|us|my|My)\b")
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in [*pages(), ROOT / "README.md"]
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if first_person.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_readme_is_an_entry_not_a_manual() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)
