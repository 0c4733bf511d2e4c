"""The partition-claims registry: which owner (one per group assignment) holds each command
partition.

A worker publishes all its partitions' outputs in one Kafka transaction per batch, under
transactional ids derived from its owner id. aiokafka cannot attach the group generation to
its offset commits (KIP-447), so the broker cannot tell a zombie from the owner; instead each
new owner records its id here and fences every earlier claimant it replaces before it reads
offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from worker.adapters.postgres.errors import translate_transient

# One statement: the row lock taken by ON CONFLICT makes claims of a partition a sequence,
# and partitions are claimed in order, so two claimants cannot deadlock.
CLAIM = """
INSERT INTO partition_claims (topic, partition, owner_id)
SELECT $1, p, $3 FROM unnest($2::int[]) AS p ORDER BY p
ON CONFLICT (topic, partition) DO UPDATE
   SET owner_id = EXCLUDED.owner_id,
       unfenced = array_append(partition_claims.unfenced, partition_claims.owner_id),
       claimed_at = now()
RETURNING unfenced
"""

CONFIRM_FENCED = """
UPDATE partition_claims SET unfenced = '{}'
 WHERE topic = $1 AND partition = ANY($2::int[]) AND owner_id = $3
"""


class PostgresPartitionClaims:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim(self, topic: str, partitions: Sequence[int], owner_id: str) -> set[str]:
        with translate_transient():
            rows = await self._pool.fetch(CLAIM, topic, sorted(partitions), owner_id)
        return {earlier for row in rows for earlier in row["unfenced"]} - {owner_id}

    async def confirm_fenced(self, topic: str, partitions: Sequence[int], owner_id: str) -> bool:
        with translate_transient():
            status = await self._pool.execute(CONFIRM_FENCED, topic, list(partitions), owner_id)
        return int(status.split()[-1]) == len(partitions)
