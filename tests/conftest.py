"""Fixtures over the real services: a fresh database per session, fresh topics per test,
and workers running in this process. Unit tests request none of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import hypothesis
import pytest

from fielding_statemachine.status import RunStatus
from schemas.types import new_ulid
from tests.support.commands import SECRET, SYSTEM_SECRET
from tests.support.harness import Outputs, RunMaker, WorkerFactory
from tests.support.http import ApiStarter, serving
from tests.support.kafka import TopicReader
from tests.support.services import Services, real_services
from worker.adapters.kafka.admin import admin_client
from worker.adapters.postgres.migrate import upgrade
from worker.adapters.postgres.runs import FieldingRunRecord, put_run
from worker.bootstrap import create_topics
from worker.service.runs_by_hand import run_times
from worker.settings import Settings

# CI draws the same property-test examples run after run, so that a red CI is a change's doing
# and not a draw's; local runs draw new ones each time (HYPOTHESIS_PROFILE=ci repeats CI's).
hypothesis.settings.register_profile("ci", derandomize=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else None)
if PROFILE:
    hypothesis.settings.load_profile(PROFILE)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with real_services() as found:
        yield found


@pytest.fixture(scope="session")
async def database_url(services: Services) -> AsyncIterator[str]:
    name = f"fielding_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(services.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base, _, _ = services.postgres_url.rpartition("/")
    url = f"{base}/{name}"
    await asyncio.to_thread(upgrade, url)
    yield url
    # A fresh connection: the fault tests restart Postgres, which closes older ones.
    admin = await asyncpg.connect(services.postgres_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def settings(services: Services, database_url: str) -> AsyncIterator[Settings]:
    """Settings with this test's own topics and group, so tests never see each other's records.
    The topics are deleted afterwards: a broker with thousands of partitions takes minutes to
    recover its logs after the fault tests SIGKILL it."""
    suffix = uuid.uuid4().hex[:10]
    s = Settings(
        kafka_bootstrap_servers=services.kafka_bootstrap_servers,
        database_url=database_url,
        jwt_secret=SECRET,
        system_jwt_secret=SYSTEM_SECRET,
        environment="production",  # whatever the shell says: as a deployment runs
        commands_topic=f"commands-{suffix}",
        results_topic=f"results-{suffix}",
        events_topic=f"events-{suffix}",
        dlq_topic=f"dlq-{suffix}",
        replies_topic=f"replies-{suffix}",
        states_topic=f"states-{suffix}",
        reply_partitions=3,
        consumer_group=f"group-{suffix}",
        commands_partitions=3,
        output_partitions=3,
        rate_limit_per_account=0,
        read_rate_limit_per_account=0,
        # Tests share one database: a scheduler would send timers for other tests' runs into
        # this test's topic. The timer tests turn it on.
        scheduler_interval_seconds=0,
        session_timeout_ms=6000,
        metrics_port=0,
    )
    topics = await create_topics(s)
    yield s
    with contextlib.suppress(Exception):  # a fault test may have left the broker away
        async with admin_client(s.kafka_bootstrap_servers) as admin:
            await asyncio.wait_for(admin.delete_topics(topics), 30)


@pytest.fixture
async def outputs(settings: Settings) -> AsyncIterator[Outputs]:
    readers = Outputs(
        TopicReader(settings.kafka_bootstrap_servers, settings.results_topic),
        TopicReader(settings.kafka_bootstrap_servers, settings.events_topic),
        TopicReader(settings.kafka_bootstrap_servers, settings.dlq_topic),
        TopicReader(settings.kafka_bootstrap_servers, settings.states_topic),
    )
    yield readers
    for reader in (readers.results, readers.events, readers.dlq, readers.states):
        await reader.close()


@pytest.fixture
async def workers() -> AsyncIterator[WorkerFactory]:
    factory = WorkerFactory()
    yield factory
    for running in factory.started:
        running.stop.set()
    for running in factory.started:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running.task, 30)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ApiStarter]:
    """`serve` in this process: `await api(**overrides)` starts one and gives its client."""
    async with serving(settings) as start:
        yield start


# Who the tests' runs were last changed by when made: neither a test's user nor the system
# actor, so a test sees who changed a run since.
SETUP_ACTOR = uuid.UUID("00000000-0000-4000-8000-0000000005e7")


@pytest.fixture
def make_run(pool: asyncpg.Pool) -> RunMaker:
    async def make(
        status: RunStatus = RunStatus.LIVE,
        account_id: int = 101,
        version: int | None = None,
        start_fielding_at: datetime | None = None,
        end_fielding_at: datetime | None = None,
        **ids: Any,
    ) -> FieldingRunRecord:
        # The times not given are derived as `runs put` derives them.
        start, end = run_times(status, datetime.now(UTC), start_fielding_at, end_fielding_at)
        return await put_run(
            pool,
            account_id=account_id,
            project_id=ids.get("project_id") or new_ulid(),
            target_group_id=ids.get("target_group_id") or new_ulid(),
            fielding_run_id=ids.get("fielding_run_id") or new_ulid(),
            status=status,
            version=version,
            start_fielding_at=start,
            end_fielding_at=end,
            changed_by=SETUP_ACTOR,
        )

    return make
