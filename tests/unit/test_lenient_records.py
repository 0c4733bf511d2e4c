"""Fetched batches aiokafka cannot read (a header key that is not UTF-8, a codec it does not
know, records that do not parse): read through aiokafka's own fetcher, every offset comes out,
instead of an exception that stops the consumer."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.memory_records import MemoryRecords

from tests.support.raw_records import build_batch, compressed
from worker.adapters.kafka import lenient_records
from worker.adapters.kafka.lenient_records import UNREADABLE_BATCH, LenientMemoryRecords

BAD_KEY = b"bad\xff\xfekey"
RECORDS = [
    (b"k0", b"v0", [("ok", b"1")]),
    (b"k1", b"v1", [(BAD_KEY, b"x"), ("null", None)]),
    (b"k2", b"v2", []),
]


def read(records: object) -> list[tuple[int, bytes | None, list[tuple[str, bytes | None]]]]:
    """What aiokafka's fetcher hands to `getmany`, for a response holding `records`."""
    partition = PartitionRecords(TopicPartition("commands", 0), records, [], 0, None, None, True, 1)
    return [(r.offset, r.key, list(r.headers)) for r in partition]


def test_aiokafkas_own_reader_stops_at_the_bad_key() -> None:
    with pytest.raises(UnicodeDecodeError):
        read(MemoryRecords(build_batch(RECORDS, base_offset=100)))


def test_every_record_comes_out_with_the_raw_key_recoverable() -> None:
    wire = build_batch(RECORDS, base_offset=100) + build_batch(
        [(b"k3", b"v3", [])], base_offset=103
    )
    got = read(LenientMemoryRecords(wire))
    assert [(offset, key) for offset, key, _ in got] == [
        (100, b"k0"),
        (101, b"k1"),
        (102, b"k2"),
        (103, b"k3"),
    ]
    [(key, value), null] = got[1][2]
    assert key.encode("utf-8", "surrogateescape") == BAD_KEY and value == b"x"
    assert null == ("null", None)


def test_good_batches_are_read_by_aiokafkas_reader_unchanged() -> None:
    wire = build_batch([(b"k", b"v", [("h", b"1")])] * 3, base_offset=5)
    assert read(LenientMemoryRecords(wire)) == read(MemoryRecords(wire))


def test_install_puts_the_lenient_reader_where_the_fetcher_looks_it_up() -> None:
    original = fetcher.MemoryRecords
    try:
        lenient_records.install()
        assert fetcher.MemoryRecords is LenientMemoryRecords
    finally:
        fetcher.MemoryRecords = original


def test_a_compressed_batch_with_a_bad_key_is_read_leniently_too() -> None:
    wire = compressed(build_batch(RECORDS, base_offset=100), codec=1)  # gzip
    got = read(LenientMemoryRecords(wire))
    assert [offset for offset, _, _ in got] == [100, 101, 102]
    assert got[1][2][0][0].encode("utf-8", "surrogateescape") == BAD_KEY


@pytest.mark.parametrize(
    ("codec", "body"), [(7, None), (1, b"not gzip at all")], ids=["unknown codec", "corrupt gzip"]
)
def test_a_batch_that_cannot_be_read_gives_every_offset_as_an_unreadable_marker(
    codec: int, body: bytes | None
) -> None:
    wire = compressed(build_batch(RECORDS, base_offset=100), codec, body)
    wire += build_batch([(b"k3", b"v3", [])], base_offset=103)
    got = read(LenientMemoryRecords(wire))
    assert [offset for offset, _, _ in got] == [100, 101, 102, 103], (
        "nothing skipped, nothing stuck"
    )
    for _, key, headers in got[:3]:
        assert key is None and headers[0][0] == UNREADABLE_BATCH and headers[0][1]
    assert got[3][1] == b"k3"
