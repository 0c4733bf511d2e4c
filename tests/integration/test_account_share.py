"""One account's share of the pipeline: an account flooding it with bulk jobs is refused (429)
and another account's commands go on at nearly their usual latency.

The flood is 100 bulk jobs of 1,000 target groups a second: what the old limit, which counted
commands, let one token ask for (100,000 run changes a second). A flooder as fast as it can
would, on a 2-core machine, take the cores the worker, broker and Postgres run on and measure
the machine rather than the limit."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers
from tests.support.harness import RunMaker, for_run
from tests.support.processes import WorkerProcess, environment
from worker.settings import Settings

pytestmark = pytest.mark.integration

RATE = 20  # the quiet account's complete commands a second
SECONDS = 20
FLOOD_JOBS_PER_SECOND = 100


class ResultTimes:
    """When each command's result became visible to a read_committed reader."""

    def __init__(self, settings: Settings) -> None:
        self.seen: dict[str, float] = {}
        self.statuses: dict[str, int] = {}
        self._consumer = AIOKafkaConsumer(
            settings.results_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    async def follow(self) -> None:
        await self._consumer.start()
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for records in batch.values():
                    for record in records:
                        result = json.loads(record.value)  # type: ignore[arg-type]
                        self.seen.setdefault(result["command_id"], now)
                        self.statuses[result["command_id"]] = result["status"]
        finally:
            await self._consumer.stop()


async def quiet_latencies(
    settings: Settings,
    producer: AIOKafkaProducer,
    times: ResultTimes,
    runs: list[dict[str, object]],
) -> list[float]:
    """Sends the commands at RATE a second (open loop) and gives each one's latency in ms."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for n, body in enumerate(runs):
        await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
        sent[str(body["command_id"])] = time.monotonic()
        await producer.send(
            settings.commands_topic,
            json.dumps(body).encode(),
            key=str(body["fielding_run_id"]).encode(),
            headers=auth_headers([int(str(body["account_id"]))]),
        )
    deadline = time.monotonic() + 60
    while not set(sent) <= set(times.seen):
        assert time.monotonic() < deadline, f"{len(set(sent) - set(times.seen))} results missing"
        await asyncio.sleep(0.1)
    assert {times.statuses[c] for c in sent} == {204}
    return [(times.seen[c] - t) * 1000 for c, t in sent.items()]


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def test_a_bulk_flood_is_refused_and_another_accounts_p99_stays_within_three_times(
    settings: Settings, make_run: RunMaker, tmp_path: Path
) -> None:
    quiet, flooder = (5_000_000 + uuid.uuid4().int % 1_000_000 + n for n in (0, 1))
    runs = [
        for_run(await make_run(RunStatus.LIVE, account_id=quiet)) for _ in range(2 * RATE * SECONDS)
    ]
    limited = settings.model_copy(
        update={"rate_limit_per_account": 100, "rate_limit_window_seconds": 1}
    )
    worker = WorkerProcess(limited, tmp_path, "share")
    worker.start()
    times = ResultTimes(settings)
    following = asyncio.create_task(times.follow())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        # Warm: the worker has its partitions and has answered once.
        await quiet_latencies(settings, producer, times, runs[:RATE])
        alone = await quiet_latencies(settings, producer, times, runs[RATE : RATE * SECONDS])

        flood = subprocess.Popen(  # noqa: ASYNC220 (started once; its output read in a thread)
            [
                sys.executable,
                "-m",
                "tests.support.flood",
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                str(flooder),
                str(SECONDS),
                str(FLOOD_JOBS_PER_SECOND),
            ],
            env=environment(settings),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            flooded = await quiet_latencies(settings, producer, times, runs[RATE * SECONDS :])
            out, _ = await asyncio.to_thread(flood.communicate, timeout=SECONDS + 60)
        finally:
            flood.kill()
        jobs_sent = int(out)
        deadline = time.monotonic() + 120  # the worker answers every job of the flood
        while sum(1 for s in times.statuses.values() if s in (201, 429)) < jobs_sent:
            assert worker.alive() and time.monotonic() < deadline, worker.log()[-3000:]
            await asyncio.sleep(0.5)
    finally:
        await producer.stop()
        following.cancel()
        worker.terminate()
    answered = [s for s in times.statuses.values() if s in (201, 429)]
    assert answered.count(429) > answered.count(201) > 0, "the flooder is refused but not starved"
    print(
        f"quiet p50/p99 alone {statistics.median(alone):.1f}/{p99(alone):.1f} ms, "
        f"flooded {statistics.median(flooded):.1f}/{p99(flooded):.1f} ms; "
        f"flood {jobs_sent} jobs of 1,000 target groups: {answered.count(201)} accepted"
    )
    assert p99(flooded) <= 3 * p99(alone)
