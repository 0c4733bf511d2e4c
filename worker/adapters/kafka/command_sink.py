"""Producing commands to the commands topic (the scheduler's timer commands)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from schemas.command import Command


class KafkaCommandSink:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        # Made at the first send: most replicas never hold the scheduler's lease, and an
        # unstarted producer still complains when collected.
        self._producer: AIOKafkaProducer | None = None

    async def send(self, commands: list[tuple[Command, list[tuple[str, bytes]]]]) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap_servers, enable_idempotence=True, linger_ms=5
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        deliveries = [
            await self._producer.send(
                self._topic, c.model_dump_json().encode(), key=c.key, headers=headers
            )
            for c, headers in commands
        ]
        await asyncio.gather(*deliveries)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
