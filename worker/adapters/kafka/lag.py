"""Consumer-group lag read with the admin API: works whether or not a worker runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.adapters.kafka.admin import admin_client


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing for this partition yet
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag}


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    (description,) = await admin.describe_topics([topic])
    return sorted(TopicPartition(topic, p["partition"]) for p in description["partitions"])


async def group_lag(bootstrap_servers: str, group_id: str, topic: str) -> list[PartitionLag]:
    # A group-less consumer only to ask for end offsets (the last stable offset, so records
    # of open transactions do not count as lag).
    offsets = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, isolation_level="read_committed"
    )
    async with admin_client(bootstrap_servers) as admin:
        await offsets.start()
        try:
            tps = await topic_partitions(admin, topic)
            ends = await offsets.end_offsets(tps) if tps else {}
            committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
        finally:
            await offsets.stop()
    return [
        PartitionLag(
            topic,
            tp.partition,
            committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None,
            ends[tp],
        )
        for tp in tps
    ]


async def committed_offsets(bootstrap_servers: str, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (partitions without one left out)."""
    async with admin_client(bootstrap_servers) as admin:
        tps = await topic_partitions(admin, topic)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    return {tp.partition: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
