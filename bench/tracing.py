"""What tracing costs the worker: the same backlog drained with tracing off, on at 100% (the
SDK's default sampler, parentbased_always_on, samples every command that starts its own
trace) and on at 10%, in alternating rounds so that the machine's drift hits each alike.

Spans go over OTLP/HTTP to a sink in this process that answers 200 and counts what it got, so
the worker pays for building, encoding and sending them, as it would to a real collector."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES: dict[str, dict[str, str]] = {
    "off": {},
    "on_100": {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on_10": {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}


class OtlpSink:
    """Accepts OTLP/HTTP exports and counts their bytes."""

    def __init__(self) -> None:
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                sink.bytes += len(self.rfile.read(length))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


async def bench_tracing(
    drain: Callable[[int, dict[str, str]], Awaitable[dict[str, float]]],
    per_drain: int,
    rounds: int = 2,
) -> dict[str, Any]:
    """`drain(n, env)` drains a fresh backlog of `n` commands with a worker started with `env`
    and returns its figures (commands_per_second, cpu_us_per_command)."""
    measured: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with OtlpSink() as sink:
        for _ in range(rounds):
            for mode, env in MODES.items():
                if env:
                    env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
                measured[mode].append(await drain(per_drain, env))
        exported = sink.bytes
    report: dict[str, Any] = {"commands_per_drain": per_drain, "rounds": rounds}
    for mode, results in measured.items():
        report[mode] = {
            "commands_per_second": statistics.median(r["commands_per_second"] for r in results),
            "cpu_us_per_command": statistics.median(r["cpu_us_per_command"] for r in results),
        }
    off = report["off"]
    for mode in ("on_100", "on_10"):
        report[f"{mode}_vs_off_throughput"] = (
            report[mode]["commands_per_second"] / off["commands_per_second"]
        )
        report[f"{mode}_vs_off_cpu_per_command"] = (
            report[mode]["cpu_us_per_command"] / off["cpu_us_per_command"]
        )
    report["otlp_bytes_per_sampled_command"] = exported / max(1, per_drain * rounds * (1 + 0.1))
    return report
