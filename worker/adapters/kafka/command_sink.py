"""Producing commands to the commands topic (the scheduler's timer commands)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from schemas.command import Command


class KafkaCommandSink:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, enable_idempotence=True, linger_ms=5
        )
        self._started = False

    async def send(self, commands: list[Command], authorization: bytes) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True
        headers = [("authorization", authorization)]
        deliveries = [
            await self._producer.send(
                self._topic, c.model_dump_json().encode(), key=c.key, headers=headers
            )
            for c in commands
        ]
        await asyncio.gather(*deliveries)

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
