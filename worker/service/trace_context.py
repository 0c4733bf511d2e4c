"""W3C Trace Context for outputs: the command's trace continued with a new span.

OpenTelemetry's propagator does the parsing and validation; an invalid or missing
`traceparent` starts a fresh trace, and `tracestate` is passed through.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Headers = Sequence[tuple[str, bytes | None]]
TRACE_HEADERS = ("traceparent", "tracestate")
# W3C caps tracestate at 32 members of at most 256 characters; anything longer is not one.
MAX_HEADER_BYTES = 32 * 257

_PROPAGATOR = TraceContextTextMapPropagator()
# Span and trace ids need uniqueness, not secrecy (OpenTelemetry's SDK uses the same generator).
_random = random.Random()
# Whether a trace this process starts is sampled: yes, unless tracing is on and its sampler
# says otherwise (`observability.tracing` sets this).
_samples_new_trace: Callable[[int], bool] | None = None


def sample_new_traces(decide: Callable[[int], bool] | None) -> None:
    global _samples_new_trace
    _samples_new_trace = decide


def _carrier(headers: Headers) -> dict[str, str]:
    """The trace headers as text. A header without a value (null) is no header; latin-1
    decodes any bytes, and the propagator refuses what is not a valid trace context (an
    over-long header is not one either)."""
    carrier: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in TRACE_HEADERS and isinstance(value, bytes) and len(value) <= MAX_HEADER_BYTES:
            carrier[lowered] = value.decode("latin-1")
    return carrier


def parent_context(command_headers: Headers) -> Context:
    """The command's trace context, as OpenTelemetry reads it (empty when it has none)."""
    return _PROPAGATOR.extract(_carrier(command_headers))


def continue_trace(command_headers: Headers) -> tuple[list[tuple[str, bytes]], str]:
    """Headers for an output of this command, and its trace id (hex) for logs. The parent is
    read and validated by OpenTelemetry's propagator; the child's `traceparent` is written
    directly in W3C's format, without the propagator's inject, on every command
    (docs/decisions/outputs-serialisation.md)."""
    parent = trace.get_current_span(parent_context(command_headers)).get_span_context()
    if parent.is_valid:
        trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
    else:
        trace_id, state = _random.getrandbits(128) or 1, None
        sampled = _samples_new_trace is None or _samples_new_trace(trace_id)
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span_id = _random.getrandbits(64) or 1
    headers = [("traceparent", f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}".encode())]
    if state:
        headers.append(("tracestate", state.to_header().encode("latin-1")))
    return headers, f"{trace_id:032x}"
