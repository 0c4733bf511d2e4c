"""Request-reply over Kafka for the HTTP API: a command goes to the commands topic, its result
comes back to this process.

Each `serve` process reads one partition of the replies topic (chosen at random, or given),
from its end, and names it in the `fielding-reply-to` header of every command it sends; the
worker publishes each such command's result there too, keyed by its command_id, in the same
Kafka transaction as the result itself. A process reads only its partition's replies (a share
of the serve traffic, none of the other results of the cluster) and matches them by key
without parsing them. Processes that happen to share a partition each ignore the others'
replies. Nothing is lost when a process goes away: its commands are applied all the same, and
a caller that repeats a command with its idempotency-key gets the remembered result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.command import Command
from worker.service.outputs import REPLY_TO

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's result as the worker published it: its JSON and its headers."""

    value: bytes
    headers: Headers


class RequestReply:
    def __init__(
        self,
        bootstrap_servers: str,
        commands_topic: str,
        replies_topic: str,
        partition: int | None = None,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._commands_topic = commands_topic
        self._replies_topic = replies_topic
        self._partition = partition
        self._waiting: dict[bytes, list[asyncio.Future[Reply]]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reading: asyncio.Task[None] | None = None

    @property
    def partition(self) -> int:
        assert self._partition is not None, "start() first"
        return self._partition

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers, enable_idempotence=True, linger_ms=1
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        await producer.start()
        await consumer.start()
        self._producer, self._consumer = producer, consumer
        partitions = sorted(await producer.partitions_for(self._replies_topic))
        if self._partition is None or self._partition not in partitions:
            self._partition = random.choice(partitions)
        tp = TopicPartition(self._replies_topic, self._partition)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)  # from here on: replies to commands sent after this
        self._reading = asyncio.create_task(self._read(), name="replies")
        log.info(
            "reading replies", extra={"topic": self._replies_topic, "partition": self._partition}
        )

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        for client in (self._producer, self._consumer):
            if client is not None:
                await client.stop()

    async def send(self, command: Command, headers: Headers, deadline: float) -> Reply | None:
        """Sends `command` with `headers` and returns its result, or None when none came within
        `deadline` seconds (the command may still apply, once)."""
        assert self._producer is not None, "start() first"
        key = command.command_id.encode()
        waiting: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(waiting)  # before sending: no reply is missed
        try:
            async with asyncio.timeout(deadline):  # sending counts too: the broker may be away
                await self._producer.send_and_wait(
                    self._commands_topic,
                    command.model_dump_json().encode(),
                    key=command.key,
                    headers=[*headers, (REPLY_TO, str(self.partition).encode())],
                )
                return await waiting
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(key, [])
            if waiting in futures:
                futures.remove(waiting)
            if not futures:
                self._waiting.pop(key, None)

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                fetched = await self._consumer.getmany(timeout_ms=500)
            except Exception:  # the broker away: keep reading once it is back
                log.warning("reading replies failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for records in fetched.values():
                for record in records:
                    self._deliver(record)

    def _deliver(self, record: Any) -> None:
        for waiting in self._waiting.get(record.key or b"", []):
            if not waiting.done():
                waiting.set_result(Reply(record.value or b"", list(record.headers)))
