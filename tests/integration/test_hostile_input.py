"""No record can stall or kill a worker, through real Kafka and Postgres: every hostile record
ends in exactly one result (readable command_id) or one DLQ record, the worker processes keep
running, valid commands on every partition still get their 204, and lag returns to 0."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, command, encode, forged_token
from tests.support.harness import Outputs, RunMaker, for_run
from tests.support.processes import WorkerProcess, http_status
from tests.support.raw_records import RawHeaders, produce_raw
from worker.adapters.kafka.lag import group_lag
from worker.settings import Settings

pytestmark = pytest.mark.integration

USER = {"sub": "5b0f8c7e-1d2a-4e3b-9c4d-5e6f7a8b9c0d", "account_ids": [101]}


@dataclass(frozen=True)
class Hostile:
    """A record and what it must end in: a result with this command_id and status, or a DLQ
    record (`status` None)."""

    name: str
    value: bytes | None
    headers: RawHeaders
    command_id: str | None = None
    status: int | None = None


def bearer(token: str) -> list[tuple[str | bytes, bytes | None]]:
    return [("authorization", f"Bearer {token}".encode())]


def token_with(header: dict[str, Any], **claims: Any) -> list[tuple[str | bytes, bytes | None]]:
    return bearer(forged_token(header, {**USER, "exp": int(time.time()) + 3600, **claims}))


def with_id(command_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(body or command()), "command_id": command_id}


def hostile_records() -> list[Hostile]:
    ok = auth_headers([101])
    deep = json.dumps(with_id("deep-nesting"))[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    huge = json.dumps(with_id("huge-number"))[:-1] + ', "account_id": ' + "7" * 5000 + "}"
    return [
        Hostile("lone surrogate, no token", b'{"command_id":"\\ud800"}', [], "\ufffd", 401),
        Hostile(
            "header key not UTF-8",
            encode(with_id("bad-header-key")),
            [*ok, (b"bad\xff\xfekey", b"x")],
        ),
        Hostile("unreadable value under 1 MB", b"\xff" * 1_000_000, [("x-big", b"1")]),
        Hostile(
            "alg of 330,000 backslashes",
            encode(with_id("long-alg")),
            token_with({"alg": "\\" * 330_000}),
            "long-alg",
            401,
        ),
        Hostile(
            "kid 1",
            encode(with_id("kid-int")),
            token_with({"alg": "HS256", "kid": 1}),
            "kid-int",
            401,
        ),
        Hostile(
            "crit",
            encode(with_id("crit")),
            token_with({"alg": "HS256", "crit": ["x"]}),
            "crit",
            401,
        ),
        Hostile(
            "exp a string",
            encode(with_id("exp-string")),
            token_with({"alg": "HS256"}, exp="9999999999"),
            "exp-string",
            401,
        ),
        Hostile(
            "null traceparent",
            encode(with_id("null-traceparent")),
            [*ok, ("traceparent", None)],
            "null-traceparent",
            404,
        ),
        Hostile("nested 5,000 deep", deep.encode(), ok, "deep-nesting", 400),
        Hostile("5,000-digit integer", huge.encode(), ok, "huge-number", 400),
        Hostile("NUL in command_id", encode(with_id("nul\x00id")), ok, "nul\x00id", 400),
        Hostile("tombstone", None, ok),
    ]


async def produce_compressed(
    settings: Settings, partition: int, value: bytes, codec: str, key: bytes
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        compression_type=codec,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.commands_topic,
            value,
            key=key,
            partition=partition,
            headers=auth_headers([101]),
        )
    finally:
        await producer.stop()


async def wait_for(outputs: Outputs, results: int, dlq: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await outputs.results.read(at_least=0, settle=0.3)
        await outputs.dlq.read(at_least=0, settle=0.3)
        if len(outputs.results.records) >= results and len(outputs.dlq.records) >= dlq:
            await outputs.results.read(at_least=0, settle=2)  # and nothing more arrives
            await outputs.dlq.read(at_least=0, settle=0.5)
            return
    raise AssertionError(
        f"{len(outputs.results.records)} results and {len(outputs.dlq.records)} DLQ records "
        f"after {timeout}s; wanted {results} and {dlq}"
    )


async def test_no_hostile_record_stops_a_worker_or_stalls_a_partition(
    settings: Settings, outputs: Outputs, make_run: RunMaker, tmp_path: Path
) -> None:
    replicas = [WorkerProcess(settings, tmp_path, f"replica-{i}") for i in range(2)]
    for replica in replicas:
        replica.start()
    try:
        deadline = time.monotonic() + 60
        while any(http_status(r.metrics_port, "/readyz") != 200 for r in replicas):
            assert time.monotonic() < deadline, "the workers never became ready"
            await asyncio.sleep(0.3)

        hostile = hostile_records()
        by_offset: dict[tuple[int, int], Hostile] = {}
        for i, record in enumerate(hostile):
            partition = i % 3
            [offset] = await produce_raw(
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                partition,
                [(f"hostile-{i}".encode(), record.value, record.headers)],
            )
            by_offset[(partition, offset)] = record
        # A compressed batch that unfolds far beyond the limit is refused at the door (the
        # commands topic stores records uncompressed); one that fits is read like any other.
        with pytest.raises(MessageSizeTooLargeError):
            await produce_compressed(settings, 1, b"\xff" * 3_000_000, "gzip", b"bomb")
        zstd_command = with_id("zstd-compressed")
        await produce_compressed(settings, 2, encode(zstd_command), "zstd", b"zstd")
        many_headers = with_id("many-headers")
        [_] = await produce_raw(
            settings.kafka_bootstrap_servers,
            settings.commands_topic,
            0,
            [(b"many", encode(many_headers), [*auth_headers([101]), *[("h", None)] * 100_000])],
        )

        runs = [await make_run(RunStatus.LIVE) for _ in range(6)]
        valid = [for_run(run) for run in runs]
        for i, body in enumerate(valid):
            await produce_raw(
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                i % 3,
                [(body["fielding_run_id"].encode(), encode(body), auth_headers([101]))],
            )

        kept = len([h for h in hostile if h.status is None])
        answered = [h for h in hostile if h.status is not None] + [
            Hostile("zstd", None, [], "zstd-compressed", 404),
            Hostile("100,000 headers", None, [], "many-headers", 404),
        ]
        await wait_for(outputs, results=len(answered) + len(valid), dlq=kept)

        results = outputs.results.values()
        per_id = Counter(r["command_id"] for r in results)
        for body in valid:
            [result] = [r for r in results if r["command_id"] == body["command_id"]]
            assert result["status"] == 204, result
        for record in answered:
            assert per_id[record.command_id] == 1, record.name
            [result] = [r for r in results if r["command_id"] == record.command_id]
            assert result["status"] == record.status, (record.name, result)
            assert len(json.dumps(result)) < 4096, record.name
        assert len(results) == len(answered) + len(valid)

        copies = {
            (
                int(dict(c.headers)["dlq.original.partition"]),
                int(dict(c.headers)["dlq.original.offset"]),
            ): c
            for c in outputs.dlq.records
        }
        assert len(copies) == len(outputs.dlq.records) == kept, "one DLQ record per record kept"
        for where, record in by_offset.items():
            if record.status is None:
                copy = copies[where]
                if record.name == "header key not UTF-8":
                    stub = json.loads(copy.value)
                    assert stub["value_sha256"] == hashlib.sha256(record.value or b"").hexdigest()
                else:
                    assert (copy.value or b"") == (record.value or b""), record.name

        assert all(r.alive() for r in replicas), "a worker process exited"
        deadline = time.monotonic() + 30
        while True:
            lag = await group_lag(
                settings.kafka_bootstrap_servers, settings.consumer_group, settings.commands_topic
            )
            if sum(p.lag for p in lag) == 0:
                break
            assert time.monotonic() < deadline, f"lag stays at {lag}"
            await asyncio.sleep(0.5)
    finally:
        for replica in replicas:
            if replica.alive():
                replica.terminate()
