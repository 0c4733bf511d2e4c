"""The database and claims side of "no record can stall a worker", over real Postgres and Kafka:
a read-only database makes commands wait (no 500s), retention never forgets an outcome whose
record has not committed, and an owner superseded while it starts never publishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka import TopicPartition

from fielding_statemachine.status import RunStatus
from tests.support.commands import SECRET, auth_headers, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import Outgoing, produce
from tests.support.raw_records import produce_raw
from tests.support.services import Services
from worker.adapters.kafka.errors import PartitionLost
from worker.adapters.kafka.pipeline import AssignmentPipeline, Limits
from worker.adapters.kafka.publisher import TransactionalPublisher
from worker.adapters.postgres.claims import PostgresPartitionClaims
from worker.adapters.postgres.command_store import PostgresCommandStore
from worker.bootstrap import housekeeping
from worker.observability.health import Health
from worker.service.auth import TokenVerifier
from worker.service.handler import CommandHandler
from worker.service.intake import CommandRecord
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin
from worker.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_read_only_database_makes_commands_wait_then_all_are_answered(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    services: Services,
) -> None:
    runs = [await make_run(RunStatus.LIVE) for _ in range(30)]
    await workers.start(settings)
    admin = await asyncpg.connect(services.postgres_url)
    # As during a failover: the server is up, answers reads, and refuses every write.
    await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
    await admin.execute("SELECT pg_reload_conf()")
    await admin.execute("SET default_transaction_read_only = off")  # this session may still
    try:
        for chunk in (runs[:15], runs[15:]):  # load arriving while the database is read-only
            await produce(
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                [Outgoing(encode(for_run(r)), r.id.encode(), auth_headers([101])) for r in chunk],
            )
            await asyncio.sleep(2)
        assert await outputs.results.read(at_least=0, settle=2) == [], "nothing answered meanwhile"
    finally:
        await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()
    await outputs.results.read(at_least=len(runs))
    assert sorted(r["status"] for r in outputs.results.values()) == [204] * len(runs)
    assert await outputs.dlq.read(at_least=0, settle=0.5) == []
    await outputs.events.read(at_least=len(runs))


async def test_retention_never_forgets_an_outcome_whose_record_has_not_committed(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    pool: asyncpg.Pool,
) -> None:
    run = await make_run(RunStatus.LIVE)
    body = for_run(run)
    key, value, headers = run.id.encode(), encode(body), auth_headers([101])
    [offset] = await produce_raw(
        settings.kafka_bootstrap_servers, settings.commands_topic, 0, [(key, value, headers)]
    )
    # A worker decided it (the database committed) and died before its Kafka transaction did.
    handler = CommandHandler(PostgresCommandStore(pool, 1, 0), TokenVerifier(SECRET), 0)
    origin = RecordOrigin(settings.commands_topic, 0, offset)
    decided = await handler.handle([CommandRecord(origin, key, value, tuple(headers), 0)])
    assert [e.status for e in decided if e.channel is Channel.RESULT] == [204]
    # The outage lasts longer than the retention; housekeeping runs meanwhile.
    await pool.execute(
        "UPDATE command_outcomes SET decided_at = now() - interval '2 hours' WHERE command_id = $1",
        body["command_id"],
    )
    await housekeeping(pool, settings.model_copy(update={"outcome_retention_hours": 1}))
    kept = await pool.fetchval(
        "SELECT count(*) FROM command_outcomes WHERE command_id = $1", body["command_id"]
    )
    assert kept == 1, "forgotten before its record committed"

    await workers.start(settings)  # the redelivery replays what was decided, event included
    [result] = await outputs.results.read(at_least=1)
    [event] = await outputs.events.read(at_least=1)
    assert outputs.results.values()[0]["status"] == 204
    assert outputs.events.values()[0]["fielding_run_version"] == 2
    assert result.value == next(e.value for e in decided if e.channel is Channel.RESULT)
    assert event.value == next(e.value for e in decided if e.channel is Channel.EVENT)


class ClaimsThatPause(PostgresPartitionClaims):
    """Real claims; the claimant pauses between its claim and its confirmation."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.claimed = asyncio.Event()
        self.go_on = asyncio.Event()

    async def claim(self, topic: str, partitions: Sequence[int], owner_id: str) -> set[str]:
        earlier = await super().claim(topic, partitions, owner_id)
        self.claimed.set()
        await self.go_on.wait()
        return earlier


class NoRecords:
    async def process(self, records: Sequence[CommandRecord]) -> list[Emission]:
        return []


class FromTheStart:
    async def committed(self, tp: TopicPartition) -> int | None:
        return None

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None: ...


async def test_an_owner_superseded_while_it_starts_never_publishes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    topics = {
        Channel.RESULT: settings.results_topic,
        Channel.EVENT: settings.events_topic,
        Channel.DLQ: settings.dlq_topic,
    }
    partitions = [TopicPartition(settings.commands_topic, 0)]

    def pipeline(
        claims: PostgresPartitionClaims,
    ) -> tuple[AssignmentPipeline, TransactionalPublisher]:
        owner = AssignmentPipeline.new_owner_id(settings.transactional_id_prefix)
        publisher = TransactionalPublisher(
            settings.kafka_bootstrap_servers, owner, settings.consumer_group, topics
        )
        built = AssignmentPipeline(
            partitions,
            owner,
            publisher,
            claims,
            NoRecords(),
            FromTheStart(),
            Limits(10, 1 << 20),
            Health(stall_seconds=60),
        )
        return built, publisher

    slow_claims = ClaimsThatPause(pool)
    first, first_publisher = pipeline(slow_claims)
    first.start()
    await asyncio.wait_for(slow_claims.claimed.wait(), 30)  # started its producers, claimed
    second, _ = pipeline(PostgresPartitionClaims(pool))
    second.start()
    deadline = time.monotonic() + 30
    while not second.committed:  # the second owner claimed, fenced the first, and is ready
        assert time.monotonic() < deadline
        assert second.task is not None and not second.task.done()
        await asyncio.sleep(0.1)
    slow_claims.go_on.set()
    assert first.task is not None
    with pytest.raises(PartitionLost, match="another owner"):
        await asyncio.wait_for(first.task, 30)
    # And had it gone on regardless, its producers were fenced: the broker refuses them.
    with pytest.raises(PartitionLost):
        transaction = await first_publisher.prepare({partitions[0]: 1})
        await first_publisher.publish(transaction, [])
    await first.close(5)
    await second.close(5)
