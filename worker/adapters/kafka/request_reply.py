"""Request-reply over Kafka for the HTTP API: a command goes to the commands topic, its result
comes back to this process.

Each `serve` process reads one partition of the replies topic (chosen at random, or given),
from its end. Every command it sends names that partition in a `fielding-reply-to` header and
carries a `fielding-reply-id`: 32 random hex digits of this request's own. The worker
publishes the command's result there too, keyed by the reply id, in the same Kafka transaction
as the result itself. A process reads only its partition's replies (a share of the serve
traffic, none of the other results of the cluster) and finds the waiting request by the key;
it then checks that the reply answers that request's command and account, and the very record
this process produced (the worker names the command's partition and offset on the reply), so
that neither another request with the same idempotency-key nor a forged record carrying a
copied reply id can answer it. Processes sharing a partition skip each other's replies by key. Nothing is lost when a process goes
away: its commands apply all the same, and a caller that repeats a command with its
idempotency-key gets the remembered result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.command import Command
from worker.adapters.kafka import lenient_records
from worker.adapters.kafka.deadline import cancelled_from_outside
from worker.service.replies import REPLY_ID, REPLY_ORIGIN, REPLY_TO, origin_text

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's result as the worker published it: its JSON, its headers, and the JSON
    parsed (once: to match the reply to its request, then to answer it)."""

    value: bytes
    headers: Headers
    result: dict[str, Any]


# How long the replies reader's fetch may wait on the broker. A fetch waiting there is answered
# as soon as a commit makes a reply visible (the commit marker's append wakes it), so a long
# wait delays no reply; a short one costs a fetch per wait, idle or not, in serve and in the
# broker (docs/decisions/reply-fetch-wait.md).
REPLY_FETCH_WAIT_MS = 500

# Replies a request keeps while its command's place is not yet known (the broker's
# acknowledgement can come after the reply, in principle): the true one and a few forgeries.
MOST_EARLY_REPLIES = 8


@dataclass(slots=True)
class Waiter:
    """A request waiting for its reply: what the reply must answer."""

    reply: asyncio.Future[Reply]
    command_id: str
    account_id: int
    origin: bytes | None = None  # the command record's place, once the broker has said it
    early: list[Any] = field(default_factory=list)  # replies that came before that

    def result_of(self, record: Any) -> dict[str, Any] | None:
        """The reply's result when it answers this request's command and account, else None."""
        try:
            result = json.loads(record.value or b"")
            answers = (
                result["command_id"] == self.command_id and result["account_id"] == self.account_id
            )
        except (ValueError, TypeError, KeyError, RecursionError):  # never ends the reader
            return None
        return result if answers else None

    def answers_record(self, record: Any) -> bool:
        """Whether the reply names the place of this request's command. A reply without the
        header comes from a worker older than it (serve and workers upgrade in any order): a
        forged command handled by a worker that has it always names its own place."""
        origins = [value for key, value in record.headers if key == REPLY_ORIGIN]
        return not origins or origins == [self.origin]

    def take(self, record: Any) -> None:
        if self.origin is None:
            if len(self.early) < MOST_EARLY_REPLIES and self.result_of(record) is not None:
                self.early.append(record)
            return
        result = self.result_of(record)
        if result is None or not self.answers_record(record):
            log.warning(
                "a reply that does not answer its request; ignored",
                extra={"command_id": self.command_id},
            )
        elif not self.reply.done():
            self.reply.set_result(Reply(record.value or b"", list(record.headers), result))

    def sent(self, origin: bytes) -> None:
        """The command is on the topic, at `origin`: replies that came before are judged now."""
        self.origin = origin
        early, self.early = self.early, []
        for record in early:
            self.take(record)


class RepliesTopicMissing(RuntimeError):
    pass


class RequestReply:
    def __init__(
        self,
        bootstrap_servers: str,
        commands_topic: str,
        replies_topic: str,
        partition: int | None = None,
    ) -> None:
        # Anyone who can write to the replies topic could otherwise stop this reader with one
        # record whose header key is not UTF-8, as on the commands topic.
        lenient_records.install()
        self._bootstrap_servers = bootstrap_servers
        self._commands_topic = commands_topic
        self._replies_topic = replies_topic
        self._partition = partition
        self._waiting: dict[bytes, Waiter] = {}  # by reply id
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
            fetch_max_wait_ms=REPLY_FETCH_WAIT_MS,
        )
        await producer.start()
        await consumer.start()
        self._producer, self._consumer = producer, consumer
        if self._replies_topic not in await consumer.topics():  # asks the cluster, at once
            await self.stop()
            raise RepliesTopicMissing(
                f"the replies topic {self._replies_topic!r} does not exist: "
                "run `fielding-worker create-topics` (serve cannot get results without it)"
            )
        partitions = sorted(await producer.partitions_for(self._replies_topic))
        if self._partition is not None and self._partition not in partitions:
            log.warning(
                "FIELDING_REPLY_PARTITION is not a partition of the replies topic; drawing one",
                extra={"partition": self._partition, "partitions": len(partitions)},
            )
            self._partition = None
        if self._partition is None:
            self._partition = random.choice(partitions)
        tp = TopicPartition(self._replies_topic, self._partition)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)  # from here on: replies to commands sent after this
        self._reading = asyncio.create_task(self._read(), name="replies")
        log.info(
            "reading replies", extra={"topic": self._replies_topic, "partition": self._partition}
        )

    def problem(self) -> str | None:
        """What has died of this gateway's Kafka clients, if anything: a serve whose replies
        reader or producer is gone answers every change 504, so its liveness fails instead.
        aiokafka's tasks are private attributes, read defensively (pinned below 0.15)."""
        if self._reading is None:
            return "not started"
        if self._reading.done():
            return "the replies reader has stopped"
        sender = getattr(getattr(self._producer, "_sender", None), "_sender_task", None)
        if isinstance(sender, asyncio.Task) and sender.done():
            return "the producer's sender has stopped"
        fetch = getattr(getattr(self._consumer, "_fetcher", None), "_fetch_task", None)
        if isinstance(fetch, asyncio.Task) and fetch.done():
            return "the replies consumer's fetcher has stopped"
        return None

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
        `deadline` seconds, sending included (the command may still apply, once)."""
        assert self._producer is not None, "start() first"
        reply_id = uuid.uuid4().hex.encode()
        waiter = Waiter(
            asyncio.get_running_loop().create_future(), command.command_id, command.account_id
        )
        # Registered before sending, so no reply is missed.
        self._waiting[reply_id] = waiter
        address = [(REPLY_TO, str(self.partition).encode()), (REPLY_ID, reply_id)]
        try:
            async with asyncio.timeout(deadline):
                sent = await self._producer.send_and_wait(
                    self._commands_topic,
                    command.model_dump_json().encode(),
                    key=command.key,
                    headers=[*headers, *address],
                )
                waiter.sent(origin_text(sent.partition, sent.offset))
                return await waiter.reply
        except (TimeoutError, KafkaError):  # the broker away: as late as no answer
            log.warning("no result in time", extra={"command_id": command.command_id})
            return None
        finally:
            self._waiting.pop(reply_id, None)

    async def _read(self) -> None:
        """Reads this process's replies partition for as long as it serves: no record and no
        failure of the Kafka client ends it (every waiting request would then time out)."""
        assert self._consumer is not None
        while True:
            try:
                fetched = await self._consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                if cancelled_from_outside():  # stop()
                    raise
                log.warning("reading replies was cancelled inside the Kafka client; retrying")
                continue
            except Exception:  # the broker away: keep reading once it is back
                log.warning("reading replies failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for records in fetched.values():
                for record in records:
                    try:
                        self._deliver(record)
                    except Exception:
                        log.exception("a reply could not be delivered; skipped")

    def _deliver(self, record: Any) -> None:
        waiter = self._waiting.get(record.key or b"")
        if waiter is not None:  # else another process's, or one whose request has given up
            waiter.take(record)
