"""A command that names a replies partition for `serve` is answered on the results topic
whatever becomes of the replies topic: found at start and deleted later, its copies are
dropped, and no batch waits on it (a batch that waited would time out, again and again)."""

from __future__ import annotations

import secrets

import pytest

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import Outgoing, TopicReader, produce
from worker.adapters.kafka.admin import admin_client
from worker.service.replies import REPLY_ID, REPLY_TO
from worker.settings import Settings

pytestmark = pytest.mark.integration


def asking_for_a_reply() -> list[tuple[str, bytes]]:
    return [
        *auth_headers([101]),
        (REPLY_TO, b"0"),
        (REPLY_ID, secrets.token_hex(16).encode()),
    ]


async def test_a_replies_topic_deleted_after_it_was_found_stalls_nothing(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await workers.start(settings)
    first, second = await make_run(RunStatus.LIVE), await make_run(RunStatus.LIVE)
    send = [Outgoing(encode(for_run(first)), first.id.encode(), asking_for_a_reply())]
    await produce(settings.kafka_bootstrap_servers, settings.commands_topic, send)
    await outputs.results.read(at_least=1, timeout=60)
    replies = TopicReader(settings.kafka_bootstrap_servers, settings.replies_topic)
    try:
        assert len(await replies.read(at_least=1, timeout=30)) == 1  # the copy for `serve`
    finally:
        await replies.close()

    async with admin_client(settings.kafka_bootstrap_servers) as admin:
        await admin.delete_topics([settings.replies_topic])
    send = [Outgoing(encode(for_run(second)), second.id.encode(), asking_for_a_reply())]
    await produce(settings.kafka_bootstrap_servers, settings.commands_topic, send)
    await outputs.results.read(at_least=2, timeout=60)
    assert [r["status"] for r in outputs.results.values()] == [204, 204]
    # Answered in its first batch: the partition was never given up for want of the topic.
    assert not [r for r in caplog.records if "partition lost" in r.getMessage()]
