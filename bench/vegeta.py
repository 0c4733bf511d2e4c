"""vegeta, the open-loop HTTP load generator the bench runs as a process of its own
(docs/decisions/open-loop-generator.md): built from its Go module on first use, fed targets in
its JSON format, its JSON report read back as a typed value."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MODULE = "github.com/tsenart/vegeta/v12"
VERSION = "v12.13.0"  # its go.mod asks for Go 1.22


class GeneratorMissing(RuntimeError):
    """vegeta is not built and cannot be: no Go, or a build that failed."""


def vegeta_binary(local: Path) -> Path:
    """vegeta VERSION under `local` (scripts/services.py's .local/), built there by `go install`
    on first use: a download from the Go module proxy and a build of some 30 s."""
    binary = local / "vegeta" / VERSION / "vegeta"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise GeneratorMissing(
            f"the open-loop bench builds vegeta {VERSION} with Go on first use, and there is no "
            "`go` on PATH: install Go 1.22 or later and run the bench again"
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as building:
        built = subprocess.run(
            [go, "install", f"{MODULE}@{VERSION}"],
            env={**os.environ, "GOBIN": building},
            capture_output=True,
            text=True,
        )
        if built.returncode != 0:
            raise GeneratorMissing(
                f"`go install {MODULE}@{VERSION}` failed (it needs Go 1.22 or later):\n"
                + built.stderr[-2000:]
            )
        # Moved into place whole: a build stopped half-way leaves no binary to be taken later.
        (Path(building) / "vegeta").rename(binary)
    return binary


@dataclass(frozen=True)
class Target:
    """One request: vegeta sends each target of a file once per turn, in order."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def as_json(self) -> str:
        """A line of vegeta's JSON target format (`-format=json`): headers as lists of values,
        the body in base64."""
        target: dict[str, object] = {
            "method": self.method,
            "url": self.url,
            "header": {name: [value] for name, value in self.headers.items()},
        }
        if self.body:
            target["body"] = base64.b64encode(self.body).decode()
        return json.dumps(target, separators=(",", ":"))


def write_targets(path: Path, targets: Iterable[Target]) -> Path:
    path.write_text("".join(target.as_json() + "\n" for target in targets))
    return path


class _Latencies(BaseModel):
    p50: int = Field(alias="50th")
    p99: int = Field(alias="99th")
    max: int
    mean: int


class _VegetaReport(BaseModel):
    """`vegeta report -type=json`, as far as the bench reads it; times in nanoseconds."""

    model_config = ConfigDict(extra="ignore")

    latencies: _Latencies
    duration: int  # from the first request sent to the last
    wait: int  # from the last request sent to its response
    requests: int
    rate: float  # requests sent per second
    throughput: float  # successful requests per second, the wait included
    success: float  # the share of responses with a status of 200 to 399
    status_codes: dict[str, int]  # "0": no response (a refused connection, a timeout)
    errors: list[str]


@dataclass(frozen=True)
class AttackReport:
    """What one attack did: requests sent and at what rate, the answers by status and their
    latency."""

    requests: int
    sent_per_second: float
    throughput_per_second: float
    success_ratio: float
    statuses: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    seconds: float  # sending, then waiting for the last response
    errors: list[str]


def parse_report(text: str) -> AttackReport:
    report = _VegetaReport.model_validate_json(text)
    return AttackReport(
        requests=report.requests,
        sent_per_second=report.rate,
        throughput_per_second=report.throughput,
        success_ratio=report.success,
        statuses=dict(sorted(report.status_codes.items())),
        p50_ms=report.latencies.p50 / 1e6,
        p99_ms=report.latencies.p99 / 1e6,
        max_ms=report.latencies.max / 1e6,
        seconds=(report.duration + report.wait) / 1e9,
        errors=report.errors,
    )


def targets_needed(rate: int, seconds: float) -> int:
    """Targets enough for an attack at `rate` for `seconds`, each sent once: vegeta sends
    rate x seconds requests and starts the file over only past its end."""
    return int(rate * seconds) + max(10, rate // 100)


async def attack(
    binary: Path,
    targets: Path,
    rate: int,
    seconds: float,
    timeout_seconds: float = 30,
    max_workers: int = 2000,
) -> AttackReport:
    """Sends the targets at `rate` a second for `seconds`, each as its time comes whatever the
    ones before it are doing (up to `max_workers` requests in flight: past that vegeta waits,
    which its sent rate shows), then waits for the last responses; returns its report."""
    if rate < 1:
        raise ValueError(f"vegeta's rate is a whole number of requests a second, not {rate}")
    results = targets.with_suffix(".results")
    await _run(
        str(binary),
        "attack",
        "-format=json",
        f"-targets={targets}",
        f"-rate={rate}/1s",
        f"-duration={round(seconds * 1000)}ms",
        f"-timeout={round(timeout_seconds * 1000)}ms",
        f"-max-workers={max_workers}",
        f"-output={results}",
    )
    report = await _run(str(binary), "report", "-type=json", str(results))
    results.unlink()
    return parse_report(report)


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} exited {process.returncode}: {err.decode()}")
    return out.decode()
