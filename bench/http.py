"""The HTTP API's cost in latency: complete requests to `fielding-worker serve` at a steady
rate, beside Kafka commands at the same rate to the same worker, in alternating rounds so
that the machine's drift hits both alike.

HTTP latency is from the request to its response (the command produced, decided, its reply
read back by `serve`); Kafka latency is from send() to the result being visible to a
read_committed reader. Both include the worker's batching and its transaction."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.drain import offer
from bench.fixtures import (
    ACCOUNT,
    ResultWatcher,
    auth_header,
    create_runs,
    free_port,
    fresh_database,
    scenario_settings,
    start_worker,
)
from bench.report import HttpLatency
from worker.bootstrap import create_topics
from worker.settings import Settings

ROUNDS = 2
Latencies = list[float]


def percentile(ordered: Latencies, fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def offer_http(
    client: httpx.AsyncClient, paths: list[str], headers: dict[str, str], rate: float
) -> Latencies:
    """POSTs to each of `paths` at `rate` per second, each request as its time comes (not
    waiting for the ones before: a steady rate, as independent callers make); returns each
    one's latency in ms, sorted."""

    async def one(path: str) -> float:
        started = time.monotonic()
        response = await client.post(path, headers=headers)
        if response.status_code != 204:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
        return (time.monotonic() - started) * 1000

    requests = []
    started = time.monotonic()
    for k, path in enumerate(paths):
        if (pause := started + k / rate - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        requests.append(asyncio.create_task(one(path)))
    return sorted(await asyncio.gather(*requests))


async def wait_until_serving(client: httpx.AsyncClient, serve: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if serve.poll() is not None:
            raise RuntimeError(f"serve exited with {serve.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/v1/openapi.json")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError("serve did not answer within 60 s")
        await asyncio.sleep(0.2)


async def bench_http(
    settings: Settings,
    api_port: int,
    paths: list[str],
    headers: dict[str, str],
    offer_kafka: Callable[[int, float, int], Awaitable[Latencies]],
    rate: float,
) -> HttpLatency:
    """`paths` are complete requests, one run each; `offer_kafka(count, rate, answered)`
    offers as many Kafka commands to runs of their own, once the results topic holds
    `answered` results (the HTTP requests' are there too). Half a round's count of each goes
    first, unmeasured (connections, caches, the group's assignment)."""
    per_round = len(paths) // (ROUNDS + 1)
    worker = start_worker(settings)
    serve = start_worker(settings, command="serve", API_PORT=str(api_port))
    http: Latencies = []
    kafka: Latencies = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}",
            timeout=60,
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=500),
        ) as client:
            await wait_until_serving(client, serve)
            warm = per_round // 2
            await offer_http(client, paths[:warm], headers, rate)
            await offer_kafka(warm, rate, warm)
            for n in range(1, ROUNDS + 1):
                kafka += await offer_kafka(per_round, rate, 2 * warm + len(http) + len(kafka))
                http += await offer_http(
                    client, paths[n * per_round : (n + 1) * per_round], headers, rate
                )
    finally:
        for process in (serve, worker):
            process.terminate()
            process.wait(60)
    http.sort()
    kafka.sort()
    return HttpLatency(
        offered_per_second=rate,
        requests=len(http),
        http_p50_ms=statistics.median(http),
        http_p99_ms=percentile(http, 0.99),
        kafka_p50_ms=statistics.median(kafka),
        kafka_p99_ms=percentile(kafka, 0.99),
        http_vs_kafka_p50=statistics.median(http) / statistics.median(kafka),
        http_vs_kafka_p99=percentile(http, 0.99) / percentile(kafka, 0.99),
    )


async def measure_http(base: Settings, requests: int, rate: float) -> HttpLatency:
    """bench_http on runs of its own: `requests` HTTP complete requests and as many Kafka
    commands, at `rate` per second each."""
    url = await fresh_database(base.database_url, "fielding_bench_http")
    runs = await create_runs(url, 2 * requests)
    settings = scenario_settings(base, url, "http")
    settings = settings.model_copy(update={"replies_topic": f"{settings.commands_topic}-replies"})
    await create_topics(settings)
    watcher = ResultWatcher(settings)
    await watcher.start()
    kafka_runs = iter(range(requests, 2 * requests))

    async def offer_kafka(count: int, per_second: float, answered: int) -> list[float]:
        await watcher.wait_for(answered)
        indexes = [next(kafka_runs) for _ in range(count)]
        return await offer(settings, watcher, runs, range(indexes[0], indexes[-1] + 1), per_second)

    paths = [
        f"/v1/demand/accounts/{ACCOUNT}/projects/{runs.project_id}/target-groups/"
        f"{runs.target_groups[i]}/fielding-runs/{runs.ids[i]}/complete"
        for i in range(requests)
    ]
    headers = {
        "Authorization": auth_header()[0][1].decode(),
        "Cint-API-Version": "2025-12-18",
        "If-Match": 'W/"1"',
    }
    try:
        return await bench_http(settings, free_port(), paths, headers, offer_kafka, rate)
    finally:
        await watcher.stop()
