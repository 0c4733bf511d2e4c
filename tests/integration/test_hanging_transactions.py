"""A transaction left open on an output partition, made on purpose, and healed: by the worker
itself, or by an operator with `fielding-worker transactions`. Either way every
read_committed reader of the partition moves on, and sees each result exactly once,
including the one the hanging transaction held (its coordinator had committed it).

The hanging transaction is KIP-890's "buggy client": with the broker's partition verification
off, a transactional producer writes to a partition it never added to its transaction, then
commits; the coordinator writes markers only to the partitions it knows of."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from tests.support.commands import auth_headers, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import Outgoing, produce
from worker.adapters.kafka.transactions import open_at_leaders
from worker.observability import metrics
from worker.service.hanging import COMMAND_ORIGIN
from worker.settings import Settings

pytestmark = pytest.mark.integration

VERIFICATION = "transaction.partition.verification.enable"
LOST = "lost-in-a-hanging-transaction"


def _verification(bootstrap: str, on: bool) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.BROKER,
                    str(broker["broker_id"]),
                    configs={VERIFICATION: str(on).lower()},
                )
                for broker in admin.describe_cluster()["brokers"]
            ]
        )
    finally:
        admin.close()


async def hang(bootstrap: str, tp: TopicPartition, settings: Settings) -> None:
    """Commits a transaction whose record on `tp` its coordinator never hears of: the leader of
    `tp` keeps it open for good. Its other record goes to a replies partition, which no
    reader here reads."""
    elsewhere = TopicPartition(settings.replies_topic, 0)
    await asyncio.to_thread(_verification, bootstrap, False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=uuid.uuid4().hex)
    await producer.start()
    try:
        await producer.begin_transaction()
        await (await producer.send(elsewhere.topic, b"{}", partition=elsewhere.partition))
        # What a client without partition verification may do: produce before (or without)
        # AddPartitionsToTxn.
        producer._txn_manager._txn_partitions.add(tp)
        value = json.dumps({"command_id": LOST, "status": 204}).encode()
        headers = [(COMMAND_ORIGIN, b"0:999999")]
        await (await producer.send(tp.topic, value, partition=tp.partition, headers=headers))
        await producer.commit_transaction()
    finally:
        await producer.stop()
        await asyncio.to_thread(_verification, bootstrap, True)


@pytest.fixture
async def restore_verification(settings: Settings) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(_verification, settings.kafka_bootstrap_servers, True)


async def commands_after_the_hang(
    settings: Settings, make_run: RunMaker, count: int = 6
) -> list[str]:
    runs = [await make_run() for _ in range(count)]
    bodies = [for_run(run) for run in runs]
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [
            Outgoing(encode(body), run.id.encode(), auth_headers([run.account_id]))
            for body, run in zip(bodies, runs, strict=True)
        ],
    )
    return [body["command_id"] for body in bodies]


async def test_the_worker_heals_a_hanging_transaction_and_nothing_is_lost_or_twice(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    restore_verification: None,
) -> None:
    quick = settings.model_copy(
        update={
            "hanging_check_seconds": 1,
            "transaction_timeout_ms": 10_000,
            "hanging_margin_seconds": 2,
        }
    )
    await hang(
        settings.kafka_bootstrap_servers, TopicPartition(settings.results_topic, 0), settings
    )
    await workers.start(quick)
    sent = await commands_after_the_hang(settings, make_run)

    await outputs.results.read(at_least=len(sent) + 1, timeout=90, settle=2)

    answered = Counter(result["command_id"] for result in outputs.results.values())
    assert answered == Counter({**dict.fromkeys(sent, 1), LOST: 1})
    assert metrics.HANGING_ABORTED.labels(settings.results_topic)._value.get() == 1
    assert metrics.PUBLISHED_AGAIN.labels(settings.results_topic)._value.get() == 1
    assert await open_at_leaders(settings.kafka_bootstrap_servers, [settings.results_topic]) == []


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **settings.as_environment(),
        "FIELDING_TRANSACTION_TIMEOUT_MS": "10000",
        "FIELDING_HANGING_MARGIN_SECONDS": "0",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.entrypoints.cli", "transactions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_operator_finds_a_hanging_transaction_and_heals_it_with_the_cli(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    restore_verification: None,
) -> None:
    # The worker only reports: FIELDING_HEAL_HANGING_TRANSACTIONS off.
    reporting = settings.model_copy(
        update={
            "hanging_check_seconds": 1,
            "transaction_timeout_ms": 10_000,
            "hanging_margin_seconds": 0,
            "heal_hanging_transactions": False,
        }
    )
    await hang(
        settings.kafka_bootstrap_servers, TopicPartition(settings.results_topic, 2), settings
    )
    await workers.start(reporting)
    sent = await commands_after_the_hang(settings, make_run)
    await asyncio.sleep(12)  # past the transaction timeout since the buggy producer wrote

    found = await asyncio.to_thread(cli, settings, "find-hanging")
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"{settings.results_topic}[2]" in found.stdout and "HANGING" in found.stdout
    gauge = metrics.HANGING_TRANSACTIONS.labels(settings.results_topic, "2")
    assert gauge._value.get() == 1

    where = ("--topic", settings.results_topic, "--partition", "2")
    dry = await asyncio.to_thread(cli, settings, "abort", *where)
    assert dry.returncode == 0 and "would publish again 1 records" in dry.stdout, dry.stdout
    assert await open_at_leaders(settings.kafka_bootstrap_servers, [settings.results_topic])

    done = await asyncio.to_thread(cli, settings, "abort", *where, "--execute")
    assert done.returncode == 0 and "published again 1 records" in done.stdout, done.stderr

    await outputs.results.read(at_least=len(sent) + 1, timeout=60, settle=2)
    answered = Counter(result["command_id"] for result in outputs.results.values())
    assert answered == Counter({**dict.fromkeys(sent, 1), LOST: 1})
    again = await asyncio.to_thread(cli, settings, "find-hanging")
    assert again.returncode == 0, again.stdout
