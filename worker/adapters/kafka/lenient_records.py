"""Fetched record batches that aiokafka's reader refuses, read anyway.

aiokafka reads a fetched batch's records while the consumer iterates it, inside `getmany()`.
A header key that is not UTF-8, a codec it cannot decompress, a batch that does not parse:
each raises out of `getmany()`, takes with it the records already drained from other
partitions in that call, and leaves the partition's position where it was, so every later
`getmany()` raises again. One record stops the worker for good.

The fetcher builds its batches through the module-level name `MemoryRecords`, looked up per
fetch response; `install()` puts `LenientMemoryRecords` there. It splits a response into
batches as aiokafka does and hands each v2 batch to aiokafka's own (C) reader. Only when that
reader fails is the one batch read again here: on a header key, with header keys decoded with
`surrogateescape` (`key.encode("utf-8", "surrogateescape")` gives the bytes back); on anything
else, each offset of the batch not yet delivered comes out as a record with no key or value
and one header, UNREADABLE_BATCH, saying why. Every offset is delivered; the pipeline turns
the marker into an unreadable command record, and the DLQ gets a stub with its coordinates.
The normal path costs a wrapper object per batch. (A checksum mismatch is left to aiokafka,
which fetches the batch again: that is corruption on the way, not content.)

This leans on two private details of aiokafka 0.14 (the `MemoryRecords` name in
`aiokafka.consumer.fetcher`, and the batch attributes `PartitionRecords` reads); the
dependency is pinned below 0.15 and `tests/unit/test_lenient_records.py` checks both.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiokafka.consumer.fetcher as fetcher
from aiokafka import codec
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch

# A v2 batch header: base offset, length, leader epoch, magic, crc, attributes, last offset
# delta, first timestamp, max timestamp, producer id, producer epoch, base sequence, count.
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
LOG_OVERHEAD = 12  # base offset and length
MAGIC_OFFSET = 16
MIN_BATCH = LOG_OVERHEAD + 14  # aiokafka's own minimum (a v0 record's overhead)
DECOMPRESS = {
    1: codec.gzip_decode,
    2: codec.snappy_decode,
    3: codec.lz4_decode,
    4: codec.zstd_decode,
}


# A header key no Kafka record can carry: surrogateescape decoding yields only U+DC80-U+DCFF.
UNREADABLE_BATCH = "\ud800fielding.unreadable-batch"


def _is_header_key_error(error: BaseException) -> bool:
    # The C reader raises UnicodeDecodeError; the pure-Python one wraps it.
    return isinstance(error, UnicodeDecodeError) or isinstance(error.__cause__, UnicodeDecodeError)


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    """A zig-zag varint at `position`, and the position after it."""
    value = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), position
        shift += 7


@dataclass(frozen=True, slots=True)
class LenientRecord:
    """What aiokafka's fetcher reads of a record (the same attributes as its own records)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def read_leniently(batch: bytes) -> Iterator[LenientRecord]:
    """Every record of a v2 batch, header keys decoded with `surrogateescape`."""
    (base_offset, _, _, _, _, attributes, _, first_timestamp, max_timestamp, *_, count) = (
        BATCH_HEADER.unpack_from(batch)
    )
    body = bytes(batch[BATCH_HEADER.size :])
    if attributes & 0x07:
        body = DECOMPRESS[attributes & 0x07](body)
    log_append_time = bool(attributes & 0x08)
    position = 0
    for _ in range(count):
        length, position = _varint(body, position)
        start = position
        _, position = _varint(body, position)  # the record's attributes, unused
        timestamp_delta, position = _varint(body, position)
        offset_delta, position = _varint(body, position)
        key, position = _bytes(body, position)
        value, position = _bytes(body, position)
        header_count, position = _varint(body, position)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            raw_key, position = _bytes(body, position)
            header_value, position = _bytes(body, position)
            headers.append(((raw_key or b"").decode("utf-8", "surrogateescape"), header_value))
        if position - start != length:
            raise CorruptRecordException("a record's length does not match its fields")
        yield LenientRecord(
            offset=base_offset + offset_delta,
            timestamp=max_timestamp if log_append_time else first_timestamp + timestamp_delta,
            timestamp_type=int(log_append_time),
            key=key,
            value=value,
            headers=headers,
        )


def _bytes(buffer: bytes, position: int) -> tuple[bytes | None, int]:
    length, position = _varint(buffer, position)
    if length < 0:
        return None, position
    return buffer[position : position + length], position + length


class LenientBatch:
    """aiokafka's reader over one v2 batch, falling back to `read_leniently` should it fail on
    a header key (records it already gave are not given twice)."""

    __slots__ = ("_fast", "_raw")

    def __init__(self, raw: memoryview) -> None:
        self._raw = raw
        self._fast: Any = DefaultRecordBatch(raw)

    # What aiokafka's PartitionRecords reads of a batch.
    @property
    def base_offset(self) -> int:
        return int(self._fast.base_offset)

    @property
    def next_offset(self) -> int:
        return int(self._fast.next_offset)

    @property
    def producer_id(self) -> int | None:
        return self._fast.producer_id  # type: ignore[no-any-return]

    @property
    def is_control_batch(self) -> bool:
        return bool(self._fast.is_control_batch)

    @property
    def is_transactional(self) -> bool:
        return bool(self._fast.is_transactional)

    def validate_crc(self) -> bool:
        return bool(self._fast.validate_crc())

    def __next__(self) -> Any:  # read directly only for control batches
        return next(self._fast)

    def __iter__(self) -> Iterator[Any]:
        # The whole batch through aiokafka's C reader at once: no Python frame per record.
        try:
            return iter(list(self._fast))
        except Exception as error:
            return self._after_failure(error)

    def _after_failure(self, failure: Exception) -> Iterator[Any]:
        """Every offset of a batch the C reader refused: read leniently when a header key was
        what it refused, else as unreadable markers."""
        last = self.base_offset - 1  # the C reader's records were not delivered
        if _is_header_key_error(failure):
            try:
                for record in read_leniently(bytes(self._raw)):
                    if record.offset > last:
                        last = record.offset
                        yield record
                return
            except Exception as error:
                failure = error
        reason = f"the record batch could not be read: {type(failure).__name__}: {failure}"
        timestamp = BATCH_HEADER.unpack_from(self._raw)[7]  # the batch's first timestamp
        for offset in range(last + 1, self.next_offset):
            yield LenientRecord(
                offset=offset,
                timestamp=timestamp,
                timestamp_type=0,
                key=None,
                value=None,
                headers=[(UNREADABLE_BATCH, reason[:500].encode("utf-8", "replace"))],
            )


class LenientMemoryRecords:
    """aiokafka's MemoryRecords (has_next, next_batch, size_in_bytes) with lenient v2 batches."""

    __slots__ = ("_buffer", "_next", "_position")

    def __init__(self, data: bytes) -> None:
        self._buffer = data
        self._position = 0
        self._next: memoryview | None = None
        self._cache_next()

    def size_in_bytes(self) -> int:
        return len(self._buffer)

    def _cache_next(self) -> None:
        remaining = len(self._buffer) - self._position
        if remaining < LOG_OVERHEAD:
            self._next = None
            return
        (length,) = struct.unpack_from(">i", self._buffer, self._position + 8)
        end = self._position + LOG_OVERHEAD + length
        if end > len(self._buffer):  # a partial batch at the end of a fetch, as usual
            self._next = None
            return
        self._next = memoryview(self._buffer)[self._position : end]
        self._position = end

    def has_next(self) -> bool:
        return self._next is not None

    def next_batch(self) -> LenientBatch | Any:
        raw = self._next
        if raw is None:
            return None
        if len(raw) < MIN_BATCH:
            raise CorruptRecordException("a record batch is shorter than the minimum overhead")
        self._cache_next()
        magic = raw[MAGIC_OFFSET]
        return LenientBatch(raw) if magic >= 2 else LegacyRecordBatch(raw, magic)


def install() -> None:
    """Makes aiokafka's fetcher read record batches through LenientMemoryRecords."""
    fetcher.MemoryRecords = LenientMemoryRecords
