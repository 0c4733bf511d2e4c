"""Evidence of a transaction left open on an output partition, taken before the test's topics
go: what the partition leader and the transaction coordinator say of it, the partition's
batches and the coordinator's log as `kafka-dump-log.sh` prints them, and the broker's log.

Taken only where the local services run (scripts/services.py): the tools and the data
directory are on this machine. Everything is written to a folder that outlives pytest's
temporary directories, and named in the test's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.services import ROOT, Services

KEEP = Path("/tmp/fielding-hanging-evidence")
LOCAL = Path(os.environ.get("FIELDING_LOCAL_DIR", ROOT / ".local"))
TOOLS = "org.apache.kafka.tools"


def _tool(out: Path, name: str, main_class: str, *args: str) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "services.py"), "tool", main_class, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    (out / f"{name}.txt").write_text(done.stdout + done.stderr)


def capture(
    services: Services, bootstrap: str, topic: str, partitions: list[int], log_dir: Path | None
) -> Path | None:
    """Writes the evidence for `partitions` of `topic`; returns the folder, or None where the
    services are not the local ones."""
    if services.kind != "local":
        return None
    out = KEEP / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    server = ("--bootstrap-server", bootstrap)
    _tool(out, "transactions-list", f"{TOOLS}.TransactionsCommand", *server, "list")
    _tool(
        out,
        "find-hanging",
        f"{TOOLS}.TransactionsCommand",
        *server,
        "find-hanging",
        "--broker-id",
        "1",
        "--max-transaction-timeout",
        "1",
    )
    data = LOCAL / "kafka" / "data"
    for partition in partitions:
        _tool(
            out,
            f"describe-producers-{partition}",
            f"{TOOLS}.TransactionsCommand",
            *server,
            "describe-producers",
            "--topic",
            topic,
            "--partition",
            str(partition),
        )
        segments = sorted(str(p) for p in (data / f"{topic}-{partition}").glob("*.log"))
        if segments:
            _tool(
                out, f"dump-{topic}-{partition}", f"{TOOLS}.DumpLogSegments", "--files", *segments
            )
    state = sorted(str(p) for p in data.glob("__transaction_state-*/*.log"))
    if state:
        _tool(
            out,
            "dump-transaction-state",
            f"{TOOLS}.DumpLogSegments",
            "--transaction-log-decoder",
            "--files",
            *state,
        )
    broker_log = LOCAL / "kafka" / "broker.log"
    if broker_log.exists():
        shutil.copy(broker_log, out / "broker.log")
    if log_dir is not None:
        shutil.copytree(log_dir, out / "workers", dirs_exist_ok=True)
    return out
