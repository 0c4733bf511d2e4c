"""Runs the broker-SIGKILL fault test again and again under the conditions of a full suite run
(`__transaction_state` holding thousands of transactional ids, `--ids`), and counts how each run
ended: whether a hanging transaction was left on an output partition.

    python scripts/hanging_repro.py [--ids 3000] [--runs 20] [-- PYTEST_ARGS...]

Uses the services scripts/services.py starts (its LOCAL_* and FIELDING_LOCAL_DIR variables pick
another set of ports and folder). Each run's outcome line and any evidence folder are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/faults/test_hard_faults.py::test_the_broker_sigkilled_three_times_under_load"


async def fill(bootstrap: str, ids: int, concurrency: int = 50) -> None:
    """Leaves `ids` transactional ids in `__transaction_state`, each with one committed
    transaction on a scratch topic, as the suite's many short-lived worker owners do."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if "hanging-repro-scratch" not in await admin.list_topics():
            await admin.create_topics([NewTopic("hanging-repro-scratch", 3, 1)])
    finally:
        await admin.close()
    run = f"{int(time.time())}"
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap, transactional_id=f"repro-{run}-{n}"
            )
            await producer.start()
            try:
                async with producer.transaction():
                    await producer.send("hanging-repro-scratch", b"x", key=str(n).encode())
            finally:
                await producer.stop()

    await asyncio.gather(*(one(n) for n in range(ids)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "services.py"), "up"], check=True)
    if args.ids:
        started = time.monotonic()
        asyncio.run(fill(bootstrap, args.ids))
        print(f"filled {args.ids} transactional ids in {time.monotonic() - started:.0f}s")
    outcomes: Counter[str] = Counter()
    for n in range(args.runs):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                TEST,
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                *args.pytest_args,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = done.stdout.splitlines()
        summary = lines[-1] if lines else f"exit {done.returncode}"
        # The test prints how many hanging transactions its workers healed, and where the
        # evidence of each was kept.
        evidence = [line for line in lines if line.startswith(("EVIDENCE", "HANGING"))]
        healed = any(
            line.startswith("HANGING") and "healed: 0 " not in line + " " for line in lines
        )
        outcome = "passed" if " passed" in summary else "failed"
        outcomes[outcome + (" after healing" if healed else "")] += 1
        print(f"run {n + 1}: {summary} {' '.join(evidence)}", flush=True)
        if outcome == "failed":
            (Path("/tmp") / f"hanging-repro-failed-{n + 1}.txt").write_text(done.stdout)
    print(f"outcomes: {dict(outcomes)}")


if __name__ == "__main__":
    main()
