"""Hypothesis over whole records, through real Kafka and Postgres: random header keys and values
(invalid UTF-8 keys, null values), JOSE headers and claims of every JSON type, bodies with
surrogates, NUL, deep nesting, huge numbers, sizes up to most of the topic's limit. For every
record: exactly one result (readable command_id) or exactly one DLQ record, and no 500."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.support.commands import auth_headers, command, forged_token
from tests.support.harness import Outputs, WorkerFactory
from tests.support.raw_records import RawHeaders, RawRecord, produce_raw
from worker.settings import Settings

pytestmark = pytest.mark.integration

RECORDS_PER_EXAMPLE = 40
EXAMPLES = 10

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None), max_size=20),  # surrogates and NUL included
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# At least 8 bytes: the key is written as a placeholder of its length, then patched, and a
# short placeholder could match other bytes of the batch.
invalid_utf8 = (
    st.binary(min_size=1, max_size=12)
    .map(lambda b: b"x-raw-\xff" + b)
    .filter(lambda b: not _decodes(b))
)


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@dataclass(frozen=True)
class Expected:
    command_id: str | None  # a result with this id; None: a DLQ record


def _json(document: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\uXXXX escapes: valid JSON, hostile text.
    return json.dumps(document, ensure_ascii=True).encode()


@st.composite
def bodies(draw: st.DrawFn, command_id: str) -> tuple[bytes | None, bool]:
    """A record value, and whether its command_id is readable."""
    kind = draw(
        st.sampled_from(
            ["command", "mutated", "deep", "huge number", "no id", "bytes", "tombstone", "big"]
        )
    )
    body: dict[str, Any] = {**command(), "command_id": command_id}
    if kind == "tombstone":
        return None, False
    if kind == "bytes":
        return draw(st.binary(max_size=80)).replace(b"command_id", b"xx"), False
    if kind == "no id":
        del body["command_id"]
        return _json({**body, "x": draw(json_values)}), False
    if kind == "mutated":
        for field in draw(st.lists(st.sampled_from(list(body)), max_size=3, unique=True)):
            if field != "command_id":
                body[field] = draw(json_values)
    text = _json(body)
    if kind == "deep":
        depth = draw(st.integers(1000, 20_000))
        text = text[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "huge number":
        text = text[:-1] + b', "n": ' + b"9" * draw(st.integers(4000, 50_000)) + b"}"
    if kind == "big":
        text = text[:-1] + b', "pad": "' + b"p" * draw(st.integers(100_000, 700_000)) + b'"}'
    return text, True


@st.composite
def authorization(draw: st.DrawFn) -> RawHeaders:
    kind = draw(st.sampled_from(["valid", "forged", "garbage", "none", "null"]))
    if kind == "valid":
        return auth_headers([101])
    if kind == "forged":
        header = draw(json_values | st.fixed_dictionaries({"alg": json_values}))
        claims = draw(
            json_values
            | st.fixed_dictionaries(
                {"sub": json_values, "account_ids": json_values, "exp": json_values}
            )
        )
        return [("authorization", f"Bearer {forged_token(header, claims)}".encode())]
    if kind == "garbage":
        return [("authorization", draw(st.binary(max_size=100)))]
    if kind == "null":
        return [("authorization", None)]
    return []


@st.composite
def records(draw: st.DrawFn, trace: str) -> tuple[RawRecord, Expected]:
    command_id = f"fuzz-{trace}-{uuid.uuid4().hex[:12]}"
    value, readable = draw(bodies(command_id))
    headers: list[tuple[str | bytes, bytes | None]] = [*draw(authorization())]
    headers.append(
        (
            "traceparent",
            draw(
                st.none()
                | st.binary(max_size=60)
                | st.just(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            ),
        )
    )
    extra_keys = st.text(max_size=10).map(lambda k: "x-" + k) | invalid_utf8
    headers.extend(
        draw(st.lists(st.tuples(extra_keys, st.none() | st.binary(max_size=30)), max_size=3))
    )
    header_keys_ok = all(isinstance(k, str) for k, _ in headers)
    expected = Expected(command_id if readable and header_keys_ok and value is not None else None)
    return (draw(st.none() | st.binary(min_size=1, max_size=20)), value, headers), expected


examples_seen: Counter[str] = Counter()


@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
async def test_every_record_ends_in_exactly_one_result_or_dlq_record(
    data: st.DataObject, settings: Settings, outputs: Outputs, workers: WorkerFactory
) -> None:
    if not workers.started:
        await workers.start(settings)
    trace = uuid.uuid4().hex[:8]
    batch = [data.draw(records(trace)) for _ in range(RECORDS_PER_EXAMPLE)]
    partition = data.draw(st.integers(0, 2))
    offsets = await produce_raw(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        partition,
        [record for record, _ in batch],
    )
    expected_ids = [e.command_id for _, e in batch if e.command_id is not None]
    expected_copies = {o for o, (_, e) in zip(offsets, batch, strict=True) if e.command_id is None}

    def ours() -> tuple[list[dict[str, Any]], list[int]]:
        results = [
            r for r in outputs.results.values() if str(r["command_id"]).startswith(f"fuzz-{trace}-")
        ]
        copies = [
            int(dict(c.headers)["dlq.original.offset"])
            for c in outputs.dlq.records
            if int(dict(c.headers)["dlq.original.partition"]) == partition
            and int(dict(c.headers)["dlq.original.offset"]) in set(offsets)
        ]
        return results, copies

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        await outputs.results.read(at_least=0, settle=0.3)
        await outputs.dlq.read(at_least=0, settle=0.3)
        results, copies = ours()
        if len(results) >= len(expected_ids) and len(copies) >= len(expected_copies):
            break
    await outputs.results.read(at_least=0, settle=1.5)  # anything extra arrives too
    await outputs.dlq.read(at_least=0, settle=0.3)
    results, copies = ours()
    assert sorted(r["command_id"] for r in results) == sorted(expected_ids)
    assert sorted(copies) == sorted(expected_copies)
    assert all(r["status"] != 500 for r in results), [r for r in results if r["status"] == 500]
    examples_seen["records"] += len(batch)
    assert workers.started[0].task.done() is False, "the worker stopped"
