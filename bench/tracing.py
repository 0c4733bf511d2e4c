"""What tracing costs the worker: the same backlog drained with tracing off, on at 100% (the
SDK's default sampler, parentbased_always_on, samples every command that starts its own
trace) and on at 10%, in alternating rounds so that the machine's drift hits each alike.

Spans go over OTLP/HTTP to a sink in this process that answers 200 and counts what it got, so
the worker pays for building, encoding and sending them, as it would to a real collector."""

from __future__ import annotations

import signal
import statistics
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.drain import timed_drain
from bench.fixtures import (
    ResultWatcher,
    backlog_scenario,
    create_runs,
    fresh_database,
    start_worker,
)
from bench.report import Drain, DrainMedians, Tracing
from worker.settings import Settings

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
    drain: Callable[[int, dict[str, str]], Awaitable[Drain]],
    per_drain: int,
    rounds: int = 2,
) -> Tracing:
    """`drain(n, env)` drains a fresh backlog of `n` commands with a worker started with `env`
    and returns its figures (commands_per_second, cpu_us_per_command)."""
    measured: dict[str, list[Drain]] = {mode: [] for mode in MODES}
    with OtlpSink() as sink:
        for _ in range(rounds):
            for mode, env in MODES.items():
                if env:
                    env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
                measured[mode].append(await drain(per_drain, env))
        exported = sink.bytes
    medians = {
        mode: DrainMedians(
            commands_per_second=statistics.median(r.commands_per_second for r in results),
            cpu_us_per_command=statistics.median(r.cpu_us_per_command for r in results),
        )
        for mode, results in measured.items()
    }
    off, on_100, on_10 = medians["off"], medians["on_100"], medians["on_10"]
    return Tracing(
        commands_per_drain=per_drain,
        rounds=rounds,
        off=off,
        on_100=on_100,
        on_10=on_10,
        on_100_vs_off_throughput=on_100.commands_per_second / off.commands_per_second,
        on_100_vs_off_cpu_per_command=on_100.cpu_us_per_command / off.cpu_us_per_command,
        on_10_vs_off_throughput=on_10.commands_per_second / off.commands_per_second,
        on_10_vs_off_cpu_per_command=on_10.cpu_us_per_command / off.cpu_us_per_command,
        otlp_bytes_per_sampled_command=exported / max(1, per_drain * rounds * (1 + 0.1)),
    )


async def measure_tracing(base: Settings, per_drain: int) -> Tracing:
    """bench_tracing with each drain on its own topics, over runs of its own."""
    url = await fresh_database(base.database_url, "fielding_bench_tracing")
    rounds = 2
    runs = await create_runs(url, per_drain * rounds * 3)
    next_run = iter(range(0, per_drain * rounds * 3, per_drain))

    async def drain(n: int, env: dict[str, str]) -> Drain:
        start = next(next_run)
        settings = await backlog_scenario(base, url, "tracing", runs, range(start, start + n))
        watcher = ResultWatcher(settings)
        await watcher.start()
        process = start_worker(settings, **env)
        try:
            return await timed_drain(watcher, process, n)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            await watcher.stop()

    return await bench_tracing(drain, per_drain, rounds)
