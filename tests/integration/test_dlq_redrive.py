"""Working the DLQ through the real services and the `fielding-worker dlq` command line: dead
letters listed; a command the worker answered 500 and kept in the DLQ re-driven once and
answered once, then not again; an unreadable record re-driven and dead-lettered again with its
count; a stub refused; and, against Postgres alone, claims of dead letters of one command
taking turns under the command's lock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.kafka import Outgoing, produce
from tests.support.processes import environment
from tests.support.raw_records import produce_raw
from worker.adapters.kafka.admin import admin_client
from worker.adapters.postgres import redrives as store
from worker.service import outputs as built
from worker.service.dead_letters import REDRIVES, DeadLetter
from worker.service.ports import RecordOrigin
from worker.settings import Settings

pytestmark = pytest.mark.integration

JUNK = b"{not json"


def dlq_cli(
    settings: Settings, *args: str, answer: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.entrypoints.cli", "dlq", *args],
        env=environment(settings, **extra),
        capture_output=True,
        text=True,
        input=answer,
        timeout=120,
    )


def listed(settings: Settings, **extra: str) -> dict[tuple[int, int], dict[str, Any]]:
    printed = dlq_cli(settings, "list", "--json", **extra)
    assert printed.returncode == 0, printed.stderr
    return {
        (line["partition"], line["offset"]): line
        for line in map(json.loads, printed.stdout.splitlines())
    }


def as_outgoing(emission: built.Emission) -> Outgoing:
    """A DLQ record exactly as the worker writes it for `emission`."""
    return Outgoing(emission.value, emission.key, [(k, v or b"") for k, v in emission.headers])


def headers_named(record: ConsumerRecord[bytes, bytes], name: str) -> list[bytes]:
    return [value for key, value in record.headers if key == name]


def results_of(outputs: Outputs, command_id: str) -> list[dict[str, Any]]:
    return [r for r in outputs.results.values() if r["command_id"] == command_id]


async def test_an_empty_dlq_is_listed_and_re_driven_as_empty(settings: Settings) -> None:
    printed = dlq_cli(settings, "list")
    assert printed.returncode == 0, printed.stderr
    assert "0 dead letters" in printed.stdout
    assert listed(settings) == {}
    redriven = dlq_cli(settings, "redrive", "--yes")
    assert redriven.returncode == 0, redriven.stderr


async def test_dead_letters_are_listed_re_driven_once_answered_once_and_stubs_refused(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
) -> None:
    run = await make_run(RunStatus.LIVE)
    await workers.start(settings)
    server = settings.kafka_bootstrap_servers

    # An unreadable record, dead-lettered by the worker itself.
    await produce(server, settings.commands_topic, [Outgoing(JUNK, b"junk", [("x-origin", b"t")])])
    await outputs.dlq.read(at_least=1)
    # What the worker keeps of a command it answered 500 (its database failed, say), and a
    # stub for a record too large to copy: written as the worker writes them.
    body = for_run(run)
    failed = built.dlq_copy(
        RecordOrigin(settings.commands_topic, 0, 0),
        run.id.encode(),
        encode(body),
        auth_headers([run.account_id]),
        "unexpected_internal_error: InterfaceError: connection was closed",
    )
    stub = built.dlq_stub(
        RecordOrigin(settings.commands_topic, 1, 0),
        b"large",
        b"x" * 2000,
        "a dlq record of about 2000100 bytes does not fit the DLQ topic",
    )
    await produce(server, settings.dlq_topic, [as_outgoing(failed), as_outgoing(stub)])
    first = await outputs.dlq.read(at_least=3)
    where = {
        "junk": next((r.partition, r.offset) for r in first if r.value == JUNK),
        "failed": next((r.partition, r.offset) for r in first if r.value == encode(body)),
        "stub": next((r.partition, r.offset) for r in first if r.key == b"large"),
    }

    letters = listed(settings)
    assert set(letters) == set(where.values())
    assert letters[where["failed"]]["command_id"] == body["command_id"]
    assert letters[where["failed"]]["redrivable"] is True
    assert letters[where["junk"]]["command_id"] is None
    assert letters[where["junk"]]["reason"] == "the value is not JSON"
    assert letters[where["junk"]]["redrivable"] is True
    assert letters[where["stub"]]["redrivable"] is False
    assert "stub" in letters[where["stub"]]["not_redrivable_because"]
    table = dlq_cli(settings, "list")
    assert table.stdout.splitlines()[-1] == (
        f"3 dead letters in {settings.dlq_topic}, 2 re-drivable"
    )

    dry = dlq_cli(settings, "redrive", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"2 dead letters would go to {settings.commands_topic} (dry run)" in dry.stdout
    declined = dlq_cli(settings, "redrive", answer="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr

    sent = dlq_cli(settings, "redrive", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "2 re-driven, 0 skipped" in sent.stdout
    assert "stays: a stub" in sent.stdout

    # The command is answered, once; the unreadable record is dead-lettered again, counted.
    await outputs.results.read(at_least=1)
    assert [r["status"] for r in results_of(outputs, body["command_id"])] == [204]
    second = await outputs.dlq.read(at_least=4)
    (again,) = [r for r in second[3:] if r.value == JUNK]
    assert headers_named(again, REDRIVES) == [b"1"]
    assert len(headers_named(again, "dlq.reason")) == 1
    assert headers_named(again, "x-origin") == [b"t"]

    # Again: the dead letters already sent stay; only the new one goes.
    resent = dlq_cli(settings, "redrive", "--yes")
    assert resent.returncode == 0, resent.stderr
    assert "1 re-driven, 0 skipped" in resent.stdout
    assert f"{where['failed'][0]}:{where['failed'][1]} stays: re-driven at" in resent.stdout
    third = await outputs.dlq.read(at_least=5)
    (twice,) = [r for r in third[4:] if r.value == JUNK]
    assert headers_named(twice, REDRIVES) == [b"2"]
    await outputs.results.read(at_least=0, settle=3)
    assert len(results_of(outputs, body["command_id"])) == 1, "a command is answered once"

    # The limit: a dead letter re-driven twice stays at a limit of 2, unless forced.
    newest = (twice.partition, twice.offset)
    capped = listed(settings, FIELDING_DLQ_MAX_REDRIVES="2")[newest]
    assert capped["redrivable"] is False and capped["force_sends_it"] is True

    shown = dlq_cli(settings, "show", f"{where['failed'][0]}:{where['failed'][1]}")
    assert shown.returncode == 0, shown.stderr
    whole = json.loads(shown.stdout)
    assert whole["value"] == {"text": encode(body).decode()}
    assert ["dlq.original.topic", settings.commands_topic] in whole["headers"]
    assert whole["redrivable"] is False

    partition, offset = where["stub"]
    refused = dlq_cli(
        settings,
        "redrive",
        "--yes",
        "--force",
        "--partition",
        str(partition),
        "--from-offset",
        str(offset),
        "--to-offset",
        str(offset),
    )
    assert refused.returncode == 1
    assert "nothing to re-drive" in refused.stdout and "stub" in refused.stdout


async def test_a_dead_letter_too_large_for_the_commands_topic_is_skipped_and_the_rest_go(
    settings: Settings, outputs: Outputs, make_run: RunMaker
) -> None:
    # The commands topic takes less than the DLQ: a copy that fit the DLQ cannot go back.
    async with admin_client(settings.kafka_bootstrap_servers) as admin:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    settings.commands_topic,
                    configs={"max.message.bytes": "20000"},
                )
            ]
        )
    run = await make_run(RunStatus.LIVE)
    small, large = for_run(run), {**for_run(run), "padding": "x" * 40_000}
    letters = [
        built.dlq_copy(
            RecordOrigin(settings.commands_topic, 0, offset),
            run.id.encode(),
            encode(body),
            auth_headers([run.account_id]),
            "unexpected_internal_error: InterfaceError: connection was closed",
        )
        for offset, body in enumerate((large, small))
    ]
    await produce(settings.kafka_bootstrap_servers, settings.dlq_topic, map(as_outgoing, letters))
    written = await outputs.dlq.read(at_least=2)
    too_large = next((r.partition, r.offset) for r in written if b"padding" in (r.value or b""))

    sent = dlq_cli(settings, "redrive", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "1 re-driven, 1 skipped" in sent.stdout
    assert "too large for the commands topic" in sent.stdout
    assert "over the limit of 20000" in sent.stdout

    # Nothing of it was sent, and the tool does not say it may have been.
    again = listed(settings)[too_large]
    assert again["redrivable"] is True, again


def dead_letter(offset: int, command_id: str | None, at: datetime) -> DeadLetter:
    """What a claim reads of a dead letter: where it is, its command, when it was written."""
    return DeadLetter(
        partition=1,
        offset=offset,
        dead_lettered_at=at,
        reason=None,
        size=0,
        command_id=command_id,
        account_id=101,
        redrives=0,
        stub=False,
        original=None,
    )


async def test_a_claim_waits_for_a_claim_of_its_command_and_then_holds_none(
    pool: asyncpg.Pool,
) -> None:
    """Two re-drives whose plans saw no re-drive of a command claim two of its dead letters at
    once. The first claim's transaction is held open here: the second waits for the command's
    lock, then reads the first's committed claim and holds none."""
    topic = f"dlq-{uuid.uuid4().hex[:10]}"
    command_id = uuid.uuid4().hex
    written = datetime.now(UTC) - timedelta(hours=1)
    d1, d2 = dead_letter(5, command_id, written), dead_letter(6, command_id, written)
    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        first = await store.claim(holder, topic, d1)
        assert first.began_at is not None
        second = asyncio.ensure_future(store.claim(pool, topic, d2))
        await asyncio.sleep(1)
        assert not second.done(), "the second claim waits for the command's lock"
        await transaction.commit()
    refused = await asyncio.wait_for(second, 10)
    assert refused.began_at is None and refused.command_redriven is not None
    coordinates, redrive = refused.command_redriven
    assert coordinates == (1, 5) and redrive.began_at == first.began_at
    assert redrive.sent_to is None and redrive.command == (101, command_id)
    claimed = await pool.fetch("SELECT dlq_offset FROM dlq_redrives WHERE dlq_topic = $1", topic)
    assert [row["dlq_offset"] for row in claimed] == [5]


async def test_a_claim_follows_the_plan_s_rule_for_dead_letters_of_a_command(
    pool: asyncpg.Pool,
) -> None:
    """An older dead letter of a re-driven command is refused (naming where the re-drive
    went), a newer one claimed; --force takes over the command's own unconfirmed claim; a
    dead letter without a command is claimed as before."""
    topic = f"dlq-{uuid.uuid4().hex[:10]}"
    command_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    d1, older = (
        dead_letter(5, command_id, now - timedelta(hours=1)),
        dead_letter(6, command_id, now - timedelta(hours=2)),
    )
    newer = dead_letter(7, command_id, now + timedelta(hours=1))
    stopped = await store.claim(pool, topic, d1)  # a tool stopped before it confirmed
    assert stopped.began_at is not None
    taken = await store.claim(pool, topic, d1, take_over=stopped.began_at)
    assert taken.began_at is not None and taken.began_at > stopped.began_at
    await store.confirm(pool, topic, d1.coordinates, (0, 9))

    refused = await store.claim(pool, topic, older)
    assert refused.began_at is None and refused.command_redriven is not None
    assert refused.command_redriven[0] == (1, 5)
    assert refused.command_redriven[1].sent_to == (0, 9)
    again = await store.claim(pool, topic, d1, take_over=taken.began_at)
    assert again == store.Claim(None), "a confirmed re-drive is never taken over"
    assert (await store.claim(pool, topic, newer)).began_at is not None
    assert (await store.claim(pool, topic, dead_letter(8, None, now))).began_at is not None


async def test_a_record_with_a_header_key_that_is_not_utf8_is_listed_and_refused(
    settings: Settings,
) -> None:
    """Another producer wrote to the DLQ records whose header keys are not UTF-8 (no Kafka
    client would; the worker never does), one of them also forging the worker's dlq.* headers.
    Both are listed, shown and refused (no client could send them again), the record after
    them is still read, and a re-drive ends cleanly with nothing to send."""
    bad_key = b"bad\xff\xfekey!"
    server, topic = settings.kafka_bootstrap_servers, settings.dlq_topic
    forged_headers: list[tuple[str | bytes, bytes | None]] = [
        (bad_key, b"v"),
        (built.DLQ_REASON, b"the value is not JSON"),
        (built.DLQ_TOPIC, settings.commands_topic.encode()),
        (built.DLQ_PARTITION, b"0"),
        (built.DLQ_OFFSET, b"5"),
    ]
    [foreign] = await produce_raw(server, topic, 0, [(b"k", b"{}", [(bad_key, b"v")])])
    [forged] = await produce_raw(server, topic, 0, [(b"k", JUNK, forged_headers)])
    [after] = await produce_raw(server, topic, 0, [(b"k", JUNK, [])])

    letters = listed(settings)
    assert set(letters) == {(0, foreign), (0, forged), (0, after)}
    assert "dlq.original" in letters[(0, foreign)]["not_redrivable_because"]
    assert "not UTF-8" in letters[(0, forged)]["not_redrivable_because"]
    assert not any(letter["redrivable"] for letter in letters.values())
    shown = dlq_cli(settings, "show", f"0:{foreign}")
    assert shown.returncode == 0, shown.stderr
    keys = [key for key, _ in json.loads(shown.stdout)["headers"]]
    assert [key.encode("utf-8", "surrogateescape") for key in keys] == [bad_key]
    redriven = dlq_cli(settings, "redrive", "--yes")
    assert redriven.returncode == 1 and "nothing to re-drive" in redriven.stdout, redriven.stderr
