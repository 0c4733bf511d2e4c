"""`fielding-worker send`: produce one command by hand and wait for its result (demo helper)."""

from __future__ import annotations

import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.command import Command
from worker.service.auth import TokenIssuer
from worker.service.catalogue import SEND_NAMES
from worker.settings import Settings

# The short names `send` takes, and the command types they stand for (from the catalogue).
OPERATIONS = SEND_NAMES


def demo_token(settings: Settings, *account_ids: int) -> str:
    if settings.jwt_secret is None:
        raise SystemExit("FIELDING_JWT_SECRET is not set: pass --token or set the secret")
    issuer = TokenIssuer(
        settings.jwt_secret.get_secret_value(),
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    return issuer.issue(list(account_ids))


async def send_command(
    settings: Settings,
    command: Command,
    *,
    token: str | None,
    wait: bool,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Produces `command` and returns its result (or what was sent, when not waiting)."""
    bearer = token or demo_token(settings, command.account_id)
    headers = [("authorization", f"Bearer {bearer}".encode())]
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
            command.model_dump_json().encode(),
            key=command.key,
            headers=headers,
        )
        if not wait:
            return {"sent": command.model_dump(mode="json")}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await results.getmany(timeout_ms=500)).values():
                for record in records:
                    result: dict[str, Any] = json.loads(record.value or b"{}")
                    if result.get("command_id") == command.command_id:
                        return result
        raise SystemExit(
            f"no result for command {command.command_id} within {timeout:.0f}s "
            "(is `fielding-worker run` running?)"
        )
    finally:
        await producer.stop()
        await results.stop()
