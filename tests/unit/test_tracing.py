"""Tracing's configuration by the standard OTEL_* variables, and the ids its command spans take."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from worker.observability.tracing import (
    ChosenIds,
    Tracing,
    TracingConfigurationError,
    configure_tracing,
)
from worker.service.trace_context import continue_trace


@pytest.fixture(autouse=True)
def _no_tracing_left_on() -> Iterator[None]:
    yield
    from worker.service import trace_context

    trace_context.sample_new_traces(None)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_is_off_unless_an_exporter_is_asked_for(environ: dict[str, str]) -> None:
    assert configure_tracing("w", environ) is None


def test_otlp_over_http_to_the_endpoint_the_variables_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    tracing = configure_tracing("fielding-worker", {"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing is not None
    try:
        [processor] = tracing.provider._active_span_processor._span_processors
        assert isinstance(processor, BatchSpanProcessor)
        exporter = processor._batch_processor._exporter
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == "http://collector:4318/v1/traces"
        assert tracing.provider.resource.attributes["service.name"] == "fielding-worker"
    finally:
        tracing.shutdown()


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
    ],
)
def test_what_cannot_be_honoured_stops_the_start_named(environ: dict[str, str]) -> None:
    with pytest.raises(TracingConfigurationError, match="OTEL_"):
        configure_tracing("w", environ)


def test_the_service_name_variable_wins() -> None:
    tracing = configure_tracing("w", {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "x"})
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "x"
    tracing.shutdown()


def test_a_span_takes_the_ids_chosen_for_it_and_only_that_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.create("w", [SimpleSpanProcessor(exporter)])
    tracing.ids.choose(0xABC, 0xDEF)
    tracing.tracer.start_span("chosen").end()
    tracing.tracer.start_span("random").end()
    chosen, other = exporter.get_finished_spans()
    assert (chosen.context.trace_id, chosen.context.span_id) == (0xABC, 0xDEF)
    assert other.context.span_id != 0xDEF and other.context.trace_id != 0xABC
    tracing.shutdown()


def test_chosen_ids_fall_back_to_random_ones() -> None:
    ids = ChosenIds()
    assert ids.generate_span_id() != ids.generate_span_id()
    assert not ids.is_trace_id_random(), "the published flags carry no random-id bit"


@pytest.mark.parametrize(("sampler", "flags"), [("always_off", "00"), ("always_on", "01")])
def test_a_trace_the_worker_starts_is_flagged_as_the_sampler_decides(
    monkeypatch: pytest.MonkeyPatch, sampler: str, flags: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    tracing = Tracing.create("w", [])
    headers, _ = continue_trace([])
    assert dict(headers)["traceparent"].decode().endswith(f"-{flags}")
    tracing.shutdown()
    headers, _ = continue_trace([])  # off again: sampled, as before tracing
    assert dict(headers)["traceparent"].decode().endswith("-01")


def test_a_callers_flags_are_kept_whatever_the_sampler() -> None:
    tracing = Tracing.create("w", [])
    headers, _ = continue_trace([("traceparent", f"00-{'a' * 32}-{'b' * 16}-00".encode())])
    assert dict(headers)["traceparent"].decode().endswith("-00")
    tracing.shutdown()
