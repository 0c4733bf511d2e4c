"""An open-loop Kafka producer in a process of its own, so that the bench's processes under
measurement never include the load's client:

    BENCH_AUTHORIZATION='Bearer ...' python -m bench.kafka_load --bootstrap-servers HOST:PORT \\
        --topic TOPIC --rate R --records FILE --sent FILE

FILE of --records: one JSON array [key, value] a line (both text). Each record is sent as its
time comes (the k-th at k / R seconds), whatever became of the ones before it, with the
bearer token as its `authorization` header. Prints `ready` once connected, just before the
first send; writes to --sent the wall-clock time (time.time()) each record was sent, in the
records' order. Kafka's own kafka-producer-perf-test cannot stand in: it sends no headers, and
a command without its token is refused (401).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

Record = tuple[bytes, bytes]


def read_records(path: Path) -> list[Record]:
    return [
        (key.encode(), value.encode())
        for key, value in (json.loads(line) for line in path.read_text().splitlines())
    ]


def write_records(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


async def produce(
    bootstrap_servers: str, topic: str, rate: float, records: list[Record], authorization: bytes
) -> list[float]:
    """Sends `records` at `rate` a second; returns when each was sent. linger.ms=5 is the Java
    producer's default since Kafka 4.0 (KIP-1030), what an upstream service would run."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
    await producer.start()
    headers = [("authorization", authorization)]
    sent: list[float] = []
    print("ready", flush=True)
    started = time.monotonic()
    try:
        for k, (key, value) in enumerate(records):
            if (pause := started + k / rate - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            sent.append(time.time())
            # Returns once the record is queued for its batch, not when the broker has it.
            await producer.send(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()  # sends what is queued
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description="An open-loop Kafka producer for the bench.")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True, help="records per second")
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--sent", type=Path, required=True)
    args = parser.parse_args()
    authorization = os.environ["BENCH_AUTHORIZATION"].encode()
    sent = asyncio.run(
        produce(
            args.bootstrap_servers,
            args.topic,
            args.rate,
            read_records(args.records),
            authorization,
        )
    )
    args.sent.write_text(json.dumps(sent))


if __name__ == "__main__":
    main()
