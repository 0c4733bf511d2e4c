"""One account's flood of bulk jobs, from a process of its own so that it does not slow the test
that measures another account: `python -m tests.support.flood BOOTSTRAP TOPIC ACCOUNT SECONDS
RATE` sends RATE bulk jobs of 1,000 target groups a second, then prints how many it sent."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from aiokafka import AIOKafkaProducer

from schemas.types import new_ulid
from tests.support.commands import auth_headers, command

TARGET_GROUPS = 1_000


async def flood(bootstrap: str, topic: str, account_id: int, seconds: float, rate: float) -> int:
    job = command(
        "complete_fielding_runs_by_target_group_ids",
        account_id=account_id,
        target_group_ids=[new_ulid() for _ in range(TARGET_GROUPS)],
    )
    headers = auth_headers([account_id])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    deliveries = []
    try:
        start = time.monotonic()
        while (due := start + len(deliveries) / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            job["command_id"] = str(uuid.uuid4())
            deliveries.append(
                await producer.send(
                    topic, json.dumps(job).encode(), key=job["project_id"].encode(), headers=headers
                )
            )
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return len(deliveries)


if __name__ == "__main__":
    bootstrap, topic, account, seconds, rate = sys.argv[1:6]
    print(asyncio.run(flood(bootstrap, topic, int(account), float(seconds), float(rate))))
