"""OpenTelemetry traces: a span per command, in the caller's trace, and a span per batch with
its database and Kafka work under it; off, and costing nothing, unless the standard variables
ask for it.

- `OTEL_TRACES_EXPORTER`: `otlp` and/or `console` (comma-separated); unset or `none`: off.
  `OTEL_SDK_DISABLED=true` turns it off too.
- `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`), `..._HEADERS`, `..._TIMEOUT`,
  `..._PROTOCOL`: http/protobuf, the default (grpc when its exporter is installed).
- `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the SDK's default: parentbased_always_on),
  `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` (the batch span processor).

A command's span is recorded after its batch commits, when its outcome is known. Its ids are
the ones its outputs already carry in `traceparent` (written while the batch was decided, by
`trace_context.continue_trace`): `ChosenIds` hands them to the SDK for that span, so the span a
result points to is the span that is exported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from worker.service import trace_context
from worker.service.outputs import Channel, Emission
from worker.service.ports import RecordOrigin

log = logging.getLogger(__name__)

SCOPE = "fielding-worker"


class TracingConfigurationError(ValueError):
    pass


class ChosenIds(IdGenerator):
    """The SDK's random ids, except for a span whose ids are already published: `choose`
    them just before starting it. Spans start on the event loop's thread only."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._chosen: tuple[int, int] | None = None

    def choose(self, trace_id: int, span_id: int) -> None:
        self._chosen = (trace_id, span_id)

    def generate_trace_id(self) -> int:
        return self._chosen[0] if self._chosen else self._random.generate_trace_id()

    def generate_span_id(self) -> int:  # the SDK asks for the trace id first, when it needs one
        if self._chosen is None:
            return self._random.generate_span_id()
        span_id, self._chosen = self._chosen[1], None
        return span_id

    def is_trace_id_random(self) -> bool:
        # The outputs' traceparent says 01 or 00; the span's flags must say the same.
        return False


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider
    ids: ChosenIds

    @classmethod
    def create(
        cls, service_name: str, processors: Iterable[SpanProcessor], **provider: Any
    ) -> Tracing:
        ids = ChosenIds()
        tracer_provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            id_generator=ids,
            shutdown_on_exit=False,
            **provider,
        )
        for processor in processors:
            tracer_provider.add_span_processor(processor)
        tracing = cls(tracer_provider, ids)
        # A trace this process starts is sampled as the sampler says, in its outputs too.
        trace_context.sample_new_traces(tracing.samples_new_trace)
        return tracing

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer(SCOPE)

    def samples_new_trace(self, trace_id: int) -> bool:
        result = self.provider.sampler.should_sample(None, trace_id, "command")
        return result.decision in (Decision.RECORD_AND_SAMPLE,)

    def shutdown(self) -> None:
        trace_context.sample_new_traces(None)
        self.provider.shutdown()  # flushes what is queued


def configure_tracing(service_name: str, environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """Tracing as the OTEL_* variables say, or None (off)."""
    names = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip() and name.strip().lower() != "none"
    ]
    if not names or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    processors = [BatchSpanProcessor(_exporter(name, environ)) for name in names]
    service = environ.get("OTEL_SERVICE_NAME") or service_name
    tracing = Tracing.create(service, processors)
    log.info("tracing on", extra={"exporters": names, "service": service})
    return tracing


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingConfigurationError(
            f"OTEL_TRACES_EXPORTER: {name!r} is not one of otlp, console, none"
        )
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise TracingConfigurationError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                "installed; or use http/protobuf (port 4318)"
            ) from None
        exporter: SpanExporter = GrpcExporter()
        return exporter
    raise TracingConfigurationError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not http/protobuf or grpc"
    )


# --- the worker's spans -------------------------------------------------------------------------


class CommandRecordLike(Protocol):
    topic: str
    partition: int
    offset: int
    headers: Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class BatchTimes:
    """When a batch was taken, decided, and committed (time.time_ns())."""

    taken: int
    decided: int
    publishing: int
    committed: int


class BatchTracer:
    """Turns a committed batch into spans: the batch, its decision (with the database's spans
    under it, see `TracedStore`) and its Kafka transaction; and one span per command, a child
    of the command's own trace context, linked to the batch."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracer = tracing.tracer
        self._ids = tracing.ids

    def start_batch(self, size: int) -> trace.Span:
        return self._tracer.start_span(
            "fielding batch", attributes={"fielding.batch.size": size}, start_time=time.time_ns()
        )

    def deciding(self, batch: trace.Span) -> AbstractContextManager[Any]:
        """Makes `batch` the current span while its decision is made (tasks copy it)."""
        return trace.use_span(batch, end_on_exit=False)

    def committed(
        self,
        batch: trace.Span,
        records: Sequence[CommandRecordLike],
        emissions: Sequence[Emission],
        times: BatchTimes,
    ) -> None:
        parent = trace.set_span_in_context(batch)
        self._tracer.start_span("decide", parent, start_time=times.taken).end(
            end_time=times.decided
        )
        self._tracer.start_span(
            "kafka transaction",
            parent,
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "fielding.outputs": len(emissions)},
            start_time=times.publishing,
        ).end(end_time=times.committed)
        by_origin = {RecordOrigin(r.topic, r.partition, r.offset): r for r in records}
        link = [Link(batch.get_span_context())]
        for emission in emissions:
            if emission.channel is Channel.RESULT and emission.origin in by_origin:
                self._command_span(emission, by_origin[emission.origin], link, times)
        batch.set_attribute("fielding.outputs", len(emissions))
        batch.end(end_time=times.committed)

    def failed(self, batch: trace.Span, error: BaseException) -> None:
        """Ends the span of a batch whose outputs were never committed (its records are fetched
        again by the partitions' next owner): exported with the error, not left open."""
        batch.record_exception(error)
        batch.set_status(Status(StatusCode.ERROR, f"not committed: {type(error).__name__}"))
        batch.end()

    def _command_span(
        self, result: Emission, record: CommandRecordLike, link: list[Link], times: BatchTimes
    ) -> None:
        published = _published_ids(result.headers)
        if published is None:
            return
        trace_id, span_id = published
        parent = trace_context.parent_context(record.headers)
        self._ids.choose(trace_id, span_id)
        status = int(result.status or 0)
        span = self._tracer.start_span(
            result.command_type or "unknown command",
            parent,
            kind=SpanKind.CONSUMER,
            links=link,
            start_time=times.taken,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "fielding.command_id": result.command_id or "",
                "fielding.command_type": result.command_type or "",
                "fielding.status": status,
                "fielding.fielding_run_id": result.fielding_run_id or "",
            },
        )
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, "unexpected internal error"))
        span.end(end_time=times.committed)


def _published_ids(headers: Sequence[tuple[str, bytes | None]]) -> tuple[int, int] | None:
    for name, value in headers:
        if name == "traceparent" and value is not None:
            _, trace_id, span_id, _ = value.decode("ascii").split("-")
            return int(trace_id, 16), int(span_id, 16)
    return None


class TracedStore:
    """A CommandStore whose calls are spans under the current one (the batch)."""

    def __init__(self, store: Any, tracing: Tracing) -> None:
        self._store = store
        self._tracer = tracing.tracer

    def _span(self, operation: str, **attributes: Any) -> AbstractContextManager[Any]:
        if not trace.get_current_span().get_span_context().is_valid:
            return nullcontext()  # outside a batch: no orphan spans
        return self._tracer.start_as_current_span(
            f"postgres {operation}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": "postgresql",
                "db.operation.name": operation,
                **attributes,
            },
        )

    async def load(self, *args: Any) -> Any:
        with self._span("load", **{"fielding.runs": len(args[0])}):
            return await self._store.load(*args)

    async def save(self, *args: Any) -> Any:
        with self._span("save", **{"fielding.changes": len(args[0])}):
            return await self._store.save(*args)

    async def take_quota(self, *args: Any) -> Any:
        with self._span("take_quota"):
            return await self._store.take_quota(*args)

    async def give_back(self, *args: Any) -> Any:
        with self._span("give_back"):
            return await self._store.give_back(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
