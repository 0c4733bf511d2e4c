"""The topics of the contract, created with the admin API where missing."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from worker.adapters.kafka.admin import admin_client
from worker.settings import Settings


def topic_specs(settings: Settings) -> dict[str, int]:
    """Topic name -> partitions. Commands and their DLQ share the partition count."""
    return {
        settings.commands_topic: settings.commands_partitions,
        settings.results_topic: settings.output_partitions,
        settings.events_topic: settings.output_partitions,
        settings.dlq_topic: settings.commands_partitions,
    }


async def _await_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0
) -> None:
    """New topics take a moment to get partition leaders; clients that come too early see errors."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        descriptions = await admin.describe_topics(names)
        if all(
            d["error_code"] == 0
            and d["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in d["partitions"])
            for d in descriptions
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout}s: {names}")
        await asyncio.sleep(0.1)


async def ensure_topics(settings: Settings) -> list[str]:
    """Creates the missing topics; returns the names it created."""
    async with admin_client(settings.kafka_bootstrap_servers) as admin:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name, num_partitions=partitions, replication_factor=settings.replication_factor
            )
            for name, partitions in topic_specs(settings).items()
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            await _await_leaders(admin, [topic.name for topic in wanted])
        return [topic.name for topic in wanted]
