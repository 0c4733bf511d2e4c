"""Zombie fencing through the claims registry, on the real Postgres and Kafka: whoever claims a
partition learns every earlier owner that may still commit, and fencing them stops their
transactions."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tests.support.harness import Outputs
from tests.support.kafka import Outgoing, produce
from worker.adapters.kafka.publisher import fence_owners, producer_ids
from worker.adapters.postgres.claims import PostgresPartitionClaims
from worker.settings import Settings

pytestmark = pytest.mark.integration


def topic() -> str:
    return f"claims-{uuid.uuid4().hex[:8]}"


async def test_a_claim_names_the_owners_it_replaces(pool: asyncpg.Pool) -> None:
    claims, commands = PostgresPartitionClaims(pool), topic()
    assert await claims.claim(commands, [0, 1, 2], "first") == set()
    await claims.confirm_fenced(commands, [0, 1, 2], "first")

    assert await claims.claim(commands, [1, 2], "second") == {"first"}
    # "second" died before fencing anyone: the next claimant must fence both.
    assert await claims.claim(commands, [2], "third") == {"first", "second"}
    await claims.confirm_fenced(commands, [2], "third")
    assert await claims.claim(commands, [0, 2], "fourth") == {"first", "third"}


async def test_a_stale_confirmation_does_not_hide_an_owner(pool: asyncpg.Pool) -> None:
    claims, commands = PostgresPartitionClaims(pool), topic()
    await claims.claim(commands, [0], "first")
    await claims.claim(commands, [0], "second")
    await claims.confirm_fenced(commands, [0], "first")  # "first" no longer owns partition 0
    assert await claims.claim(commands, [0], "third") == {"first", "second"}


async def test_fencing_stops_the_earlier_owners_transaction(
    settings: Settings, outputs: Outputs
) -> None:
    zombie_owner = f"{settings.transactional_id_prefix}-{uuid.uuid4().hex[:8]}"
    zombie = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=producer_ids(zombie_owner)[-1],
        enable_idempotence=True,
    )
    await zombie.start()
    try:
        await zombie.begin_transaction()
        await zombie.send_and_wait(settings.results_topic, b"from the zombie", key=b"k")
        await fence_owners(settings.kafka_bootstrap_servers, {zombie_owner})
        with pytest.raises(KafkaError):
            await zombie.commit_transaction()
    finally:
        await zombie.stop()
    await produce(
        settings.kafka_bootstrap_servers,
        settings.results_topic,
        [Outgoing(b"after the fence", key=b"k")],
    )
    seen = await outputs.results.read(at_least=1)
    assert [r.value for r in seen] == [
        b"after the fence"
    ]  # a read_committed reader never sees the zombie's
