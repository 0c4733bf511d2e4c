"""Records that cannot be read go to the DLQ byte for byte; malformed commands get 400; nothing is
lost and the partition never stalls (property-based, over the real services)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.support.commands import auth_headers, command, encode
from tests.support.harness import Outputs, WorkerFactory
from tests.support.kafka import Outgoing, produce
from worker.settings import Settings

pytestmark = pytest.mark.integration

UNREADABLE = [
    b"\xff\xfe\x00garbage",
    b"{not json",
    b"[1,2,3]",
    b'"just a string"',
    b'{"no_command_id": 1}',
    b'{"command_id": 7}',
    b'{"command_id": ""}',
]


async def test_unreadable_records_go_to_the_dlq_byte_for_byte_with_their_origin(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
) -> None:
    records = [
        Outgoing(value, f"key-{i}".encode(), [("x-origin", b"test")])
        for i, value in enumerate(UNREADABLE)
    ]
    records.append(Outgoing(None, b"tombstone"))
    await workers.start(settings)
    await produce(settings.kafka_bootstrap_servers, settings.commands_topic, records)
    copies = await outputs.dlq.read(at_least=len(records))
    assert sorted((c.key, c.value or b"") for c in copies) == sorted(
        (r.key, r.value or b"") for r in records
    )
    for copy in copies:
        headers = dict(copy.headers)
        assert headers.get("x-origin") == b"test" or copy.key == b"tombstone"
        assert (
            headers["dlq.reason"]
            and headers["dlq.original.topic"] == settings.commands_topic.encode()
        )
        assert (
            int(headers["dlq.original.partition"]) in range(3)
            and int(headers["dlq.original.offset"]) >= 0
        )
    assert await outputs.results.read(at_least=0) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "type",
    "command_id",
    "account_id",
    "project_id",
    "target_group_id",
    "fielding_run_id",
    "if_match",
    "issued_at",
]


@st.composite
def malformed_records(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "missing"]))
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body: dict[str, Any] = command(account_id=101)
    if kind == "mutated":
        for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
            body[field] = draw(json_values)
    else:
        for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
            del body[field]
    return json.dumps(body).encode()


def readable_command_id(value: bytes) -> str | None:
    try:
        document = json.loads(value.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    command_id = document.get("command_id")
    return command_id if isinstance(command_id, str) and 1 <= len(command_id) <= 255 else None


@hypothesis_settings(
    max_examples=3,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(malformed_records(), min_size=100, max_size=100))
async def test_malformed_input_is_answered_or_kept_and_a_valid_command_still_goes_through(
    batch: list[bytes],
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
) -> None:
    if not workers.started:
        await workers.start(settings)
    # Outputs carry the command's trace id: it tells this example's outputs from earlier ones'.
    trace_id = uuid.uuid4().hex
    headers = [*auth_headers([101]), ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01".encode())]
    valid = command(account_id=101)  # addressed to no run: its answer is 404
    records = [Outgoing(value, b"same-partition", headers) for value in batch]
    records.append(Outgoing(encode(valid), b"same-partition", headers))
    await produce(settings.kafka_bootstrap_servers, settings.commands_topic, records)

    def ours(record: ConsumerRecord[bytes, bytes]) -> bool:
        return trace_id in dict(record.headers).get("traceparent", b"").decode()

    answerable = [v for v in batch if readable_command_id(v) is not None]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await outputs.results.read(at_least=0, settle=0.2)
        await outputs.dlq.read(at_least=0, settle=0.2)
        new_results = [json.loads(r.value) for r in outputs.results.records if ours(r)]
        new_copies = [c for c in outputs.dlq.records if ours(c)]
        if len(new_results) > len(answerable) and len(new_copies) >= len(batch) - len(answerable):
            break

    assert len(new_results) == len(answerable) + 1, (
        "one result per record with a readable command_id"
    )
    assert len(new_copies) == len(batch) - len(answerable), "every other record kept in the DLQ"
    assert sorted(c.value for c in new_copies) == sorted(
        v for v in batch if readable_command_id(v) is None
    )
    # Results are keyed by fielding_run_id, so they spread over partitions: compare as multisets.
    expected_ids = [readable_command_id(v) for v in answerable] + [valid["command_id"]]
    assert sorted(r["command_id"] for r in new_results) == sorted(expected_ids)
    assert {r["status"] for r in new_results} <= {400, 404}
    assert [r["status"] for r in new_results if r["command_id"] == valid["command_id"]][-1] == 404
