"""The topics of the contract, created with the admin API where missing, and the largest record
each accepts.

The states topic is created with `cleanup.policy=compact`. The commands topic is created with
`compression.type=uncompressed`: the broker then
decompresses what producers send and checks `max.message.bytes` against the records as
stored, so a small compressed batch cannot unfold into gigabytes in the worker (a gzip batch
of 3 MB of one byte, 3 KB compressed, is refused at produce time). The DLQ must take a copy of
any record the commands topic accepts, plus the `dlq.*` headers: it is created with the
commands topic's `max.message.bytes` plus DLQ_HEADROOM. A copy that still does not fit (the
topics were made elsewhere) becomes a stub; the publisher checks every output against these
limits before sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from worker.adapters.kafka.admin import admin_client

MAX_MESSAGE_BYTES = "max.message.bytes"
COMPRESSION_TYPE = "compression.type"
COMMANDS_CONFIG = {COMPRESSION_TYPE: "uncompressed"}
# A reply is read within seconds by the HTTP process waiting for it, or never.
REPLIES_CONFIG = {"retention.ms": str(60 * 60 * 1000)}
# The last state of each run is kept for as long as the topic exists: older ones are compacted
# away, never expired by time.
CLEANUP_POLICY = "cleanup.policy"
STATES_CONFIG = {CLEANUP_POLICY: "compact"}
DLQ_HEADROOM = 64 * 1024  # the dlq.* headers are bounded far below this


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


async def topic_configs(
    admin: AIOKafkaAdminClient, topics: Iterable[str], name: str
) -> dict[str, str]:
    """The value of config `name` of each topic."""
    responses = await admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, topic, configs={name: None})
            for topic in sorted(set(topics))
        ]
    )
    values: dict[str, str] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise RuntimeError(
                    f"cannot read the config of topic {resource['resource_name']}: "
                    f"{resource['error_message']}"
                )
            for entry in resource["config_entries"]:
                if entry["config_names"] == name:
                    values[resource["resource_name"]] = entry["config_value"]
    return values


async def message_limits(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> dict[str, int]:
    """Each topic's `max.message.bytes`: the largest record batch its broker accepts."""
    limits = await topic_configs(admin, topics, MAX_MESSAGE_BYTES)
    return {topic: int(value) for topic, value in limits.items()}


async def commands_topic_warnings(bootstrap_servers: str, commands_topic: str) -> list[str]:
    """What is unsafe in how the commands topic was made (when someone else made it)."""
    async with admin_client(bootstrap_servers) as admin:
        compression = (await topic_configs(admin, [commands_topic], COMPRESSION_TYPE)).get(
            commands_topic
        )
    if compression != "uncompressed":
        return [
            f"topic {commands_topic} has compression.type={compression}: a compressed record "
            "can be far larger than max.message.bytes once read (set it to uncompressed)"
        ]
    return []


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    try:
        await admin.create_topics(topics)
    except TopicAlreadyExistsError:
        pass  # another process created them first
    await _await_leaders(admin, [topic.name for topic in topics])


async def ensure_topics(
    bootstrap_servers: str,
    partitions: dict[str, int],
    *,
    commands_topic: str,
    dlq_topic: str,
    replication_factor: int,
    replies_topic: str | None = None,
    states_topic: str | None = None,
) -> list[str]:
    """Creates the missing topics of `partitions` (name -> partition count), the DLQ sized for
    the commands topic's largest record; returns the names it created."""
    async with admin_client(bootstrap_servers) as admin:
        existing = set(await admin.list_topics())
        missing = [name for name in partitions if name not in existing]
        first = [
            NewTopic(
                name,
                num_partitions=partitions[name],
                replication_factor=replication_factor,
                topic_configs=(
                    COMMANDS_CONFIG
                    if name == commands_topic
                    else REPLIES_CONFIG
                    if name == replies_topic
                    else STATES_CONFIG
                    if name == states_topic
                    else {}
                ),
            )
            for name in missing
            if name != dlq_topic
        ]
        if first:
            await _create(admin, first)
        if dlq_topic in missing:
            command_limit = (await message_limits(admin, [commands_topic]))[commands_topic]
            dlq = NewTopic(
                dlq_topic,
                num_partitions=partitions[dlq_topic],
                replication_factor=replication_factor,
                topic_configs={MAX_MESSAGE_BYTES: str(command_limit + DLQ_HEADROOM)},
            )
            await _create(admin, [dlq])
        return missing
