"""Record batches with header keys that are not UTF-8, which no Kafka client will write.

aiokafka's batch builder takes header keys as `str` and encodes them strictly, so a key is
written as an ASCII placeholder of the same length and the built batch's bytes are patched
afterwards, its CRC-32C recomputed. For a real broker the patch is applied when the producer's
sender builds the batch (after it has set the producer id and sequence).
"""

from __future__ import annotations

import gzip
import struct
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

CRC_OFFSET = 17  # base offset (8), length (4), leader epoch (4), magic (1)
BATCH_HEADER_SIZE = 61
ATTRIBUTES_OFFSET = 21  # what the CRC covers starts here

RawHeaders = Sequence[tuple[str | bytes, bytes | None]]


def _placeholder(raw: bytes) -> str:
    assert len(raw) >= 8, "a raw header key of 8 bytes at least, so its placeholder is unique"
    seed = uuid.uuid4().hex
    return ("\x01" + seed * (len(raw) // len(seed) + 1))[: len(raw)]


def _with_placeholders(
    headers: RawHeaders, replacements: dict[bytes, bytes]
) -> list[tuple[str, bytes | None]]:
    written = []
    for key, value in headers:
        if isinstance(key, bytes):
            placeholder = _placeholder(key)
            replacements[placeholder.encode()] = key
            key = placeholder
        written.append((key, value))
    return written


def patch(buffer: bytearray, replacements: dict[bytes, bytes]) -> bytearray:
    """Writes the raw header keys over their placeholders in a built, uncompressed batch."""
    for placeholder, raw in replacements.items():
        at = buffer.find(placeholder, ATTRIBUTES_OFFSET)
        assert at != -1, "placeholder not found (is the batch compressed?)"
        assert buffer.find(placeholder, at + 1) == -1, "placeholder not unique in the batch"
        buffer[at : at + len(raw)] = raw
    struct.pack_into(">I", buffer, CRC_OFFSET, calc_crc32c(bytes(buffer[ATTRIBUTES_OFFSET:])))
    return buffer


def build_batch(records: Sequence[tuple[bytes, bytes, RawHeaders]], base_offset: int = 0) -> bytes:
    """The wire bytes of one v2 batch of (key, value, headers) records."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    replacements: dict[bytes, bytes] = {}
    for offset, (key, value, headers) in enumerate(records):
        written = _with_placeholders(headers, replacements)
        assert (
            builder.append(
                offset, timestamp=1_700_000_000_000 + offset, key=key, value=value, headers=written
            )
            is not None
        )
    buffer = patch(builder.build(), replacements)
    struct.pack_into(">q", buffer, 0, base_offset)  # the base offset is outside the CRC
    return bytes(buffer)


RawRecord = tuple[bytes | None, bytes | None, RawHeaders]  # key, value, headers


def compressed(batch: bytes, codec: int, body: bytes | None = None) -> bytes:
    """`batch` with its records compressed by `body` (gzip'd records by default) and the
    attributes naming `codec`: 1 gzip; any number aiokafka does not know makes it unreadable."""
    header = bytearray(batch[:BATCH_HEADER_SIZE])
    records = gzip.compress(batch[BATCH_HEADER_SIZE:]) if body is None else body
    out = header + records
    struct.pack_into(">i", out, 8, len(out) - 12)
    attributes = struct.unpack_from(">h", out, ATTRIBUTES_OFFSET)[0] & ~0x07 | codec
    struct.pack_into(">h", out, ATTRIBUTES_OFFSET, attributes)
    struct.pack_into(">I", out, CRC_OFFSET, calc_crc32c(bytes(out[ATTRIBUTES_OFFSET:])))
    return bytes(out)


async def produce_raw(
    bootstrap: str, topic: str, partition: int, records: Sequence[RawRecord]
) -> list[int]:
    """Produces records whose header keys may be raw bytes, in order, to one partition;
    returns their offsets. Records are packed into batches of at most ~900 KB each."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=None, max_batch_size=900_000
    )
    await producer.start()
    offsets: list[int] = []
    try:
        pending = list(records)
        while pending:
            batch: Any = producer.create_batch()
            replacements: dict[bytes, bytes] = {}
            count = 0
            for key, value, headers in pending:
                these: dict[bytes, bytes] = {}
                written = _with_placeholders(headers, these)
                if batch.append(key=key, value=value, timestamp=None, headers=written) is None:
                    break  # full: the rest go in the next batch
                replacements.update(these)
                count += 1
            batch.close()
            build = batch._build

            def patched_build(
                build: Any = build,
                batch: Any = batch,
                replacements: dict[bytes, bytes] = replacements,
            ) -> bytearray:
                first = batch._buffer is None
                buffer: bytearray = build()
                return patch(buffer, replacements) if first and replacements else buffer

            batch._build = patched_build
            delivered = await (await producer.send_batch(batch, topic, partition=partition))
            offsets.extend(range(int(delivered.offset), int(delivered.offset) + count))
            pending = pending[count:]
    finally:
        await producer.stop()
    return offsets
