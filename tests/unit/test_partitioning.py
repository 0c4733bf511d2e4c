"""Records land on the partition any Kafka client would choose for their key."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from worker.adapters.kafka.partitioning import murmur2, partition_for


def test_murmur2_is_the_kafka_clients_function_for_keys_of_every_length() -> None:
    rng = random.Random(7)
    keys = [
        bytes(rng.getrandbits(8) for _ in range(length))
        for length in range(0, 70)
        for _ in range(40)
    ]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]


def test_known_values_of_the_java_client() -> None:
    # From Kafka's own UtilsTest.testMurmur2.
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == -1486304829 & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971 & 0xFFFFFFFF
    assert murmur2(b"abc") == 479470107


def test_partition_for_a_key_is_the_default_partitioners() -> None:
    rng = random.Random(11)
    partitions = list(range(12))
    for _ in range(2000):
        key = bytes(rng.getrandbits(8) for _ in range(26))
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_record_without_a_key_goes_to_one_of_the_topics_partitions() -> None:
    assert {partition_for(None, [0, 1, 2]) for _ in range(200)} == {0, 1, 2}
