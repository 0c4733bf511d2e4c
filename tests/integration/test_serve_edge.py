"""serve's edge under abuse, as a process of its own: slow clients cannot take it down, the
requests waiting for replies are capped, a client that leaves stops its wait, SIGTERM ends it
within its bound, and its own probes and metrics say how it is."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fielding_statemachine.status import RunStatus
from tests.support.harness import RunMaker, WorkerFactory
from tests.support.http import headers, run_path
from tests.support.processes import WorkerProcess, http_status
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.settings import Settings

pytestmark = pytest.mark.integration

SLOW_CONNECTIONS = 1100
OPEN_FILES = 1024


async def started(serve: WorkerProcess, run: FieldingRunRecord) -> str:
    serve.start()
    base = f"http://127.0.0.1:{serve.api_port}/v1"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        deadline = time.monotonic() + 60
        while True:  # until serve answers (a read needs no worker)
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(run_path(run), headers=headers())).status_code == 200:
                    return base
            assert time.monotonic() < deadline, serve.log()[-2000:]
            await asyncio.sleep(0.2)


def scraped(serve: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples whose line starts with `name` (labels included)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def slow_client(port: int, stop: asyncio.Event) -> None:
    """Sends a request line, then one header line every 5 s, until told to stop or closed."""
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /v1/openapi.json HTTP/1.1\r\n")
            while not stop.is_set():
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5)
                writer.write(b"x-slow: 1\r\n")
        finally:
            writer.close()


@pytest.fixture
def many_files() -> None:
    """This process holds the slow clients' sockets: more than the usual 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * SLOW_CONNECTIONS:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * SLOW_CONNECTIONS), hard))


async def test_slow_clients_leave_well_behaved_requests_answered_and_sigterm_ends_serve(
    settings: Settings, make_run: RunMaker, tmp_path: Path, many_files: None
) -> None:
    serve = WorkerProcess(
        settings,
        tmp_path,
        "serve",
        command="serve",
        prefix=["prlimit", f"--nofile={OPEN_FILES}:{OPEN_FILES}", "--"],
        FIELDING_HTTP_SHUTDOWN_SECONDS="3",
    )
    run = await make_run(RunStatus.LIVE)
    base = await started(serve, run)
    stop = asyncio.Event()
    slow = [asyncio.create_task(slow_client(serve.api_port, stop)) for _ in range(SLOW_CONNECTIONS)]
    try:
        await asyncio.sleep(2)  # every slow connection opened and waiting
        slowest = 0.0
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(20):
                began = time.monotonic()
                answer = await client.get(run_path(run), headers=headers())
                slowest = max(slowest, time.monotonic() - began)
                assert answer.status_code == 200, answer.text
                await asyncio.sleep(0.5)
        assert slowest < 2.0, f"a well-behaved request took {slowest:.1f}s"
        text = scraped(serve)
        assert metric(text, "fielding_serve_refused_total") > 0
        # SIGTERM with the slow clients still attached.
        began = time.monotonic()
        serve.send(signal.SIGTERM)
        assert serve.process is not None
        await asyncio.to_thread(serve.process.wait, 30)  # raises if still running then
        assert time.monotonic() - began < 3 + 10, "serve took longer than its bound to stop"
    finally:
        stop.set()
        await asyncio.gather(*slow, return_exceptions=True)
        if serve.alive():
            serve.kill()


@pytest.fixture
async def serve_without_worker(
    settings: Settings, make_run: RunMaker, tmp_path: Path
) -> AsyncIterator[tuple[WorkerProcess, str, FieldingRunRecord]]:
    """serve with no worker behind it: changes wait for replies that never come."""
    serve = WorkerProcess(
        settings,
        tmp_path,
        "serve",
        command="serve",
        FIELDING_HTTP_MAX_WAITING="1",
        FIELDING_HTTP_DEADLINE_SECONDS="20",
    )
    run = await make_run(RunStatus.LIVE)
    base = await started(serve, run)
    try:
        yield serve, base, run
    finally:
        serve.kill()


async def test_waiting_requests_are_capped_and_a_client_that_leaves_stops_its_wait(
    serve_without_worker: tuple[WorkerProcess, str, FieldingRunRecord],
) -> None:
    serve, base, run = serve_without_worker
    complete = run_path(run) + "/complete"
    change = headers(**{"If-Match": 'W/"1"'})
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        waiting = asyncio.create_task(client.post(complete, headers=change))
        await asyncio.sleep(1)  # the first request waits for its reply
        over = await client.post(complete, headers=change)
        assert over.status_code == 503, over.text
        assert over.headers["retry-after"] == "1"
        assert over.json()["object"] == "service_unavailable_error"
        waiting.cancel()  # the client leaves: httpx closes its connection
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    deadline = time.monotonic() + 10
    while metric(scraped(serve), "fielding_serve_waiting_requests") != 0:
        assert time.monotonic() < deadline, "the wait went on after its client left"
        await asyncio.sleep(0.2)
    text = scraped(serve)
    assert metric(text, 'fielding_serve_refused_total{reason="client_gone"}') == 1
    assert metric(text, 'fielding_serve_refused_total{reason="waiting"}') == 1


async def test_serve_has_its_own_probes_and_metrics(
    settings: Settings, workers: WorkerFactory, make_run: RunMaker, tmp_path: Path
) -> None:
    serve = WorkerProcess(settings, tmp_path, "serve", command="serve")
    run = await make_run(RunStatus.LIVE)
    try:
        base = await started(serve, run)
        await workers.start(settings)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            done = await client.post(
                run_path(run) + "/complete", headers=headers(**{"If-Match": 'W/"1"'})
            )
        assert done.status_code == 204, done.text
        assert http_status(serve.metrics_port, "/healthz") == 200
        assert http_status(serve.metrics_port, "/readyz") == 200
        text = scraped(serve)
        route = "/v1/demand/accounts/{account_id}/projects/{project_id}/target-groups/"
        assert metric(text, f'fielding_serve_requests_total{{route="{route}') >= 2
        assert metric(text, "fielding_serve_reply_seconds_count") == 1
    finally:
        serve.kill()
