"""Traces as a tracing backend shows them, through an in-memory exporter: a command's span in
its caller's trace, named by its result's traceparent, with its batch's database and Kafka
work under the batch's span; and an HTTP request's span between the caller and the worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, command, encode
from tests.support.harness import Outputs, RunMaker, WorkerFactory, for_run
from tests.support.http import ApiStarter, headers, run_path
from tests.support.kafka import Outgoing, produce
from worker.observability.tracing import Tracing
from worker.settings import Settings

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def tracing(exported: InMemorySpanExporter) -> Iterator[Tracing]:
    tracing = Tracing.create("fielding-worker-test", [SimpleSpanProcessor(exported)])
    yield tracing
    tracing.shutdown()


async def span_with_id(exported: InMemorySpanExporter, span_id: int) -> ReadableSpan:
    """The exported span with this id (spans are recorded just after their batch commits)."""
    deadline = time.monotonic() + 10
    while True:
        found = [s for s in exported.get_finished_spans() if s.context.span_id == span_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no span {span_id:016x} exported"
        await asyncio.sleep(0.05)


def ids_of(traceparent: bytes | str) -> tuple[int, int, str]:
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    _, trace_id, span_id, flags = text.split("-")
    return int(trace_id, 16), int(span_id, 16), flags


async def test_a_commands_span_is_in_its_callers_trace_and_is_the_one_its_result_names(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    tracing: Tracing,
    exported: InMemorySpanExporter,
) -> None:
    run = await make_run(RunStatus.LIVE)
    body = command(**for_run(run))
    await workers.start(settings, tracing=tracing)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [
            Outgoing(
                encode(body),
                run.id.encode(),
                [*auth_headers([101]), ("traceparent", TRACEPARENT.encode())],
            )
        ],
    )
    [result] = await outputs.results.read(at_least=1)
    trace_id, span_id, flags = ids_of(dict(result.headers)["traceparent"])
    assert f"{trace_id:032x}" == TRACE_ID and flags == "01"

    span = await span_with_id(exported, span_id)
    assert span.context.trace_id == trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert span.name == "complete_fielding_run" and span.kind is SpanKind.CONSUMER
    assert span.attributes is not None
    assert span.attributes["fielding.command_id"] == body["command_id"]
    assert span.attributes["fielding.command_type"] == "complete_fielding_run"
    assert span.attributes["fielding.status"] == 204
    assert span.attributes["fielding.fielding_run_id"] == run.id
    assert span.attributes["messaging.destination.name"] == settings.commands_topic

    [link] = span.links
    batch = await span_with_id(exported, link.context.span_id)
    assert batch.name == "fielding batch" and batch.parent is None
    children = {
        s.name
        for s in exported.get_finished_spans()
        if s.parent is not None and s.parent.span_id == batch.context.span_id
    }
    assert {"decide", "kafka transaction", "postgres load", "postgres save"} <= children
    assert batch.start_time is not None and span.end_time == batch.end_time


async def test_a_command_without_trace_context_starts_a_trace_of_its_own(
    settings: Settings,
    outputs: Outputs,
    workers: WorkerFactory,
    make_run: RunMaker,
    tracing: Tracing,
    exported: InMemorySpanExporter,
) -> None:
    run = await make_run(RunStatus.PAUSED)  # a 422: a span all the same
    await workers.start(settings, tracing=tracing)
    await produce(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        [Outgoing(encode(command(**for_run(run))), run.id.encode(), auth_headers([101]))],
    )
    [result] = await outputs.results.read(at_least=1)
    trace_id, span_id, _ = ids_of(dict(result.headers)["traceparent"])
    span = await span_with_id(exported, span_id)
    assert span.parent is None and span.context.trace_id == trace_id
    assert f"{trace_id:032x}" != TRACE_ID
    assert span.attributes is not None and span.attributes["fielding.status"] == 422


async def test_an_http_request_joins_the_trace_between_its_caller_and_the_worker(
    settings: Settings,
    api: ApiStarter,
    workers: WorkerFactory,
    make_run: RunMaker,
    tracing: Tracing,
    exported: InMemorySpanExporter,
) -> None:
    await workers.start(settings, tracing=tracing)
    client = await api(tracing=tracing)
    run = await make_run(RunStatus.LIVE)
    done = await client.post(
        run_path(run) + "/complete",
        headers=headers(**{"If-Match": 'W/"1"', "traceparent": TRACEPARENT}),
    )
    assert done.status_code == 204
    trace_id, span_id, _ = ids_of(done.headers["traceparent"])
    assert f"{trace_id:032x}" == TRACE_ID

    command_span = await span_with_id(exported, span_id)  # the worker's
    assert command_span.parent is not None
    request_span = await span_with_id(exported, command_span.parent.span_id)
    assert request_span.kind is SpanKind.SERVER
    assert request_span.parent is not None and f"{request_span.parent.span_id:016x}" == CALLER_SPAN
    assert request_span.context.trace_id == trace_id
