"""`fielding-worker run` as a real process, so tests can kill, freeze and restart it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from worker.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FIELDING_")}
    env.update(settings.as_environment())
    env["LOG_LEVEL"] = "INFO"
    env.update(extra)
    return env


def http_status(port: int, path: str) -> int:
    """The status a local HTTP endpoint answers; 0 while nothing listens."""
    try:
        return int(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


class WorkerProcess:
    """`fielding-worker run` (or, with command="serve", the HTTP API) as a process of its own."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str,
        command: str = "run",
        prefix: Sequence[str] = (),
        **env: str,
    ) -> None:
        self.settings = settings
        self.name = name
        self.command = command
        self.prefix = list(prefix)  # e.g. `ip netns exec NAME`, which execs the worker in place
        self.metrics_port = free_port()
        self.api_port = free_port()
        self._env = environment(
            settings, METRICS_PORT=str(self.metrics_port), API_PORT=str(self.api_port), **env
        )
        self._log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "worker.entrypoints.cli", self.command],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to the group."""
        self.send(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def terminate(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM, then the exit code and how long the drain took."""
        assert self.process is not None
        started = time.monotonic()
        self.send(signal.SIGTERM)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started

    def stopped(self) -> bool:
        """Stopped by a signal (SIGSTOP, or a failpoint's freeze), not running."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        return state in ("T", "t")

    def send(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def own_log_lines(self) -> list[str]:
        """The worker's log without the Kafka client's lines (which repeat every 100 ms while
        the broker is away), each cut to 400 characters."""
        return [
            line[:400]
            for line in self.log().splitlines()
            if line.strip() and '"logger": "aiokafka' not in line
        ]
