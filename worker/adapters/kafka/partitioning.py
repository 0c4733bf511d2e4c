"""Which partition a keyed record goes to: Kafka's default, murmur2 of the key, as every Kafka
client computes it, so a record lands where any producer would have put it.

aiokafka's own murmur2 is a byte-by-byte port of the Java client's, too slow for every output
of every command (docs/decisions/batch-per-partition.md); this one unpacks the key's 32-bit
words at once and folds them with fewer masks. It must stay the same function: a unit test
compares the two on random keys of every length.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from functools import lru_cache

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


@lru_cache(maxsize=256)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    length = len(data)
    h = SEED ^ length
    if length >= 4:
        for k in _words(length >> 2).unpack_from(data):
            k = (k * M) & MASK
            k ^= k >> 24
            h = ((h * M) & MASK) ^ ((k * M) & MASK)
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    return h ^ (h >> 15)


def partition_for(key: bytes | None, partitions: Sequence[int]) -> int:
    """`partitions`: the topic's partition ids, sorted. A record without a key may go anywhere."""
    if key is None:
        return random.choice(partitions)
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
