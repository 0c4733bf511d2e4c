"""Producing commands and reading outputs the way their users do (read_committed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from tests.support.commands import auth_headers, encode
from worker.settings import Settings

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Outgoing:
    value: bytes | None
    key: bytes | None = None
    headers: Headers = ()


async def produce(bootstrap: str, topic: str, records: Sequence[Outgoing]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, r.value, key=r.key, headers=list(r.headers)) for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def send(settings: Settings, *bodies: dict[str, Any], headers: Headers | None = None) -> None:
    """Commands to the commands topic, each keyed as the contract says (by its run, else by its
    project), with `headers`: by default a user's token for account 101."""
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [
            Outgoing(
                encode(body),
                str(body.get("fielding_run_id") or body["project_id"]).encode(),
                auth_headers([101]) if headers is None else headers,
            )
            for body in bodies
        ],
    )


class TopicReader:
    """Reads a whole topic from the beginning as a read_committed consumer (read_uncommitted
    with `hidden_too`: aborted records as well)."""

    def __init__(self, bootstrap: str, topic: str, hidden_too: bool = False) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_uncommitted" if hidden_too else "read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._started = False

    async def _start(self) -> None:
        await self._consumer.start()
        partitions = await self._partitions()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._started = True

    async def _partitions(self) -> list[TopicPartition]:
        from worker.adapters.kafka.admin import admin_client
        from worker.adapters.kafka.lag import topic_partitions

        async with admin_client(self.bootstrap) as admin:
            return await topic_partitions(admin, self.topic)

    async def read(
        self, at_least: int, timeout: float = 60.0, settle: float = 1.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Everything so far, once there are `at_least` records and then `settle` seconds of
        quiet (so that a duplicate arriving late is counted)."""
        if not self._started:
            await self._start()
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)
            if len(self.records) >= at_least:
                if batch:
                    quiet_until = time.monotonic() + settle
                elif quiet_until is None:
                    quiet_until = time.monotonic() + settle
                elif time.monotonic() >= quiet_until:
                    return self.records
        raise AssertionError(
            f"{self.topic}: {len(self.records)} records after {timeout}s, wanted {at_least} "
            f"({await self._positions()})"
        )

    def open_transactions(self) -> dict[int, tuple[int, int]]:
        """Partitions whose last stable offset is below their high watermark, as last fetched:
        (stable, high). A read_committed reader waits there for a transaction to end."""
        stuck = {}
        for tp in self._consumer.assignment():
            stable, high = self._consumer.last_stable_offset(tp), self._consumer.highwater(tp)
            if stable is not None and high is not None and stable < high:
                stuck[tp.partition] = (stable, high)
        return stuck

    async def _positions(self) -> str:
        """Per partition: records read, position, high watermark and last stable offset (a
        last stable offset stuck below the high watermark is a transaction left open)."""
        read = {tp.partition: 0 for tp in self._consumer.assignment()}
        for record in self.records:
            read[record.partition] = read.get(record.partition, 0) + 1
        parts = []
        for tp in sorted(self._consumer.assignment()):
            parts.append(
                f"p{tp.partition}: read={read[tp.partition]} "
                f"position={await self._consumer.position(tp)} "
                f"high={self._consumer.highwater(tp)} stable={self._consumer.last_stable_offset(tp)}"
            )
        return "; ".join(parts)

    def values(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.records if r.value is not None]

    async def close(self) -> None:
        await self._consumer.stop()
