"""`serve` in the test's own event loop, and the requests the HTTP tests make of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests.support.commands import token
from tests.support.processes import free_port
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.bootstrap import run_api
from worker.observability.tracing import Tracing
from worker.settings import Settings

ApiStarter = Callable[..., Awaitable[httpx.AsyncClient]]


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[ApiStarter]:
    """Starts `serve` processes' worth of app in this loop (settings overridable per call)
    and yields clients of them; stops them all at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[None], httpx.AsyncClient]] = []

    async def start(tracing: Tracing | None = None, **overrides: Any) -> httpx.AsyncClient:
        port = free_port()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_api(settings.model_copy(update={"api_port": port, **overrides}), stop, tracing)
        )
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", timeout=30)
        running.append((stop, task, client))
        deadline = time.monotonic() + 30
        while True:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "serve did not start"
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/openapi.json")).status_code == 200:
                    return client
            await asyncio.sleep(0.1)

    try:
        yield start
    finally:
        for stop, task, client in running:
            stop.set()
            await client.aclose()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)


def headers(account_ids: list[int] | None = None, **extra: str) -> dict[str, str]:
    """A caller's headers: a token for `account_ids` (101 by default), the API version."""
    return {
        "Authorization": f"Bearer {token(account_ids or [101])}",
        "Cint-API-Version": "2025-12-18",
        **extra,
    }


def run_path(run: FieldingRunRecord, fielding_run_id: str | None = None) -> str:
    return (
        f"/demand/accounts/{run.account_id}/projects/{run.project_id}/target-groups/"
        f"{run.target_group_id}/fielding-runs/{fielding_run_id or run.id}"
    )
