"""What the publisher sends when an output is larger than its topic takes: a stub, never a
record the broker would refuse (which aborts nothing and loses the partition)."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer

from worker.adapters.kafka.publisher import TransactionalPublisher
from worker.service import outputs, replies
from worker.service.outputs import Channel
from worker.service.ports import RecordOrigin

ORIGIN = RecordOrigin("commands", 2, 40)


def publisher(dlq_limit: int) -> TransactionalPublisher:
    topics = {Channel.RESULT: "results", Channel.EVENT: "events", Channel.DLQ: "dlq"}
    publisher = TransactionalPublisher("unused:9092", "owner", "group", topics)
    publisher._limits = {
        Channel.RESULT: 1_048_588,
        Channel.EVENT: 1_048_588,
        Channel.DLQ: dlq_limit,
    }
    return publisher


def test_a_copy_that_fits_goes_as_it_is() -> None:
    copy = outputs.dlq_copy(ORIGIN, b"k", b"v" * 1000, [("h", b"1")], "not JSON")
    assert publisher(dlq_limit=2000)._fit(copy) is copy


def test_a_copy_larger_than_the_dlq_takes_becomes_a_stub_with_its_coordinates() -> None:
    copy = outputs.dlq_copy(ORIGIN, b"k", b"v" * 5000, [("h", b"1")], "not JSON")
    fitted = publisher(dlq_limit=2000)._fit(copy)
    assert fitted.channel is Channel.DLQ and fitted.size <= 2000
    body = json.loads(fitted.value or b"")
    assert body["original"] == {"topic": "commands", "partition": 2, "offset": 40}
    assert body["value_bytes"] == 5000 and "does not fit" in body["reason"]


async def test_a_results_copy_for_serve_is_one_the_kafka_client_can_write() -> None:
    # aiokafka's record batch builder takes headers as a list and nothing else; a tuple made
    # every batch with a reply address fail.
    result = outputs.Emission(
        Channel.RESULT,
        b"run",
        b"{}",
        [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],
        ORIGIN,
        reply=(0, b"0" * 32),
    )
    builder = AIOKafkaProducer(bootstrap_servers="unused:9092").create_batch()
    headers = replies.reply_headers(result)
    assert builder.append(key=b"0" * 32, value=b"{}", timestamp=None, headers=headers) is not None
    assert (replies.REPLY_ORIGIN, b"2:40") in headers
