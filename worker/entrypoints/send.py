"""`fielding-worker send`: produce one command by hand and wait for its result (demo helper)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.types import format_timestamp
from worker.settings import Settings

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, in Crockford's base 32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def demo_token(settings: Settings, account_id: int, lifetime_seconds: int = 3600) -> str:
    if settings.jwt_secret is None:
        raise SystemExit("FIELDING_JWT_SECRET is not set: pass --token or set the secret")
    claims = {
        "sub": str(uuid.uuid4()),
        "account_ids": [account_id],
        "exp": int(time.time()) + lifetime_seconds,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def send_complete(
    settings: Settings,
    *,
    account_id: int,
    project_id: str,
    target_group_id: str,
    fielding_run_id: str,
    if_match: str,
    command_id: str | None,
    token: str | None,
    wait: bool,
    timeout: float = 30.0,
) -> dict[str, Any]:
    command = {
        "type": "complete_fielding_run",
        "command_id": command_id or new_ulid(),
        "account_id": account_id,
        "project_id": project_id,
        "target_group_id": target_group_id,
        "fielding_run_id": fielding_run_id,
        "if_match": if_match,
        "issued_at": format_timestamp(datetime.now(UTC)),
    }
    headers = [("authorization", f"Bearer {token or demo_token(settings, account_id)}".encode())]
    results = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, isolation_level="read_committed"
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True
    )
    await results.start()
    await producer.start()
    try:
        # Read from the current end of the results topic, so only answers to this command count.
        tps = [
            TopicPartition(settings.results_topic, p)
            for p in sorted(await producer.partitions_for(settings.results_topic))
        ]
        results.assign(tps)
        for tp, end in (await results.end_offsets(tps)).items():
            results.seek(tp, end)
        await producer.send_and_wait(
            settings.commands_topic,
            json.dumps(command).encode(),
            key=fielding_run_id.encode(),
            headers=headers,
        )
        if not wait:
            return {"sent": command}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await results.getmany(timeout_ms=500)).values():
                for record in records:
                    result: dict[str, Any] = json.loads(record.value or b"{}")
                    if result.get("command_id") == command["command_id"]:
                        return result
        raise SystemExit(
            f"no result for command {command['command_id']} within {timeout:.0f}s "
            "(is `fielding-worker run` running?)"
        )
    finally:
        await producer.stop()
        await results.stop()
