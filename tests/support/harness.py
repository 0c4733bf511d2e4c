"""Helpers the integration and fault tests share: output readers, in-process workers, runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.kafka import TopicReader
from worker.adapters.postgres.runs import FieldingRunRecord
from worker.bootstrap import run_worker
from worker.observability.tracing import Tracing
from worker.settings import Settings


@dataclass
class Outputs:
    results: TopicReader
    events: TopicReader
    dlq: TopicReader
    states: TopicReader


def expected_state(run: FieldingRunRecord) -> dict[str, Any]:
    """A run's record on the states topic, as the store's row says it must read: the run as
    GET shows it, with its ids."""
    return {name: value for name, value in run.as_json().items() if name != "etag"}


@dataclass
class RunningWorker:
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class WorkerFactory:
    started: list[RunningWorker] = field(default_factory=list)

    async def start(
        self, settings: Settings, serve_http: bool = False, tracing: Tracing | None = None
    ) -> RunningWorker:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_worker(settings, stop, serve_http=serve_http, tracing=tracing)
        )
        running = RunningWorker(stop, task)
        self.started.append(running)
        return running

    async def stop(self, running: RunningWorker, timeout: float = 30) -> None:
        running.stop.set()
        await asyncio.wait_for(running.task, timeout)


RunMaker = Callable[..., Awaitable[FieldingRunRecord]]


def for_run(
    run: FieldingRunRecord, kind: str = "complete_fielding_run", /, **overrides: Any
) -> dict[str, Any]:
    """A command of type `kind` addressed to `run` at its version (overrides replace any field)."""
    from tests.support.commands import command

    fields: dict[str, Any] = {
        "account_id": run.account_id,
        "project_id": run.project_id,
        "target_group_id": run.target_group_id,
        "fielding_run_id": run.id,
        "if_match": f'W/"{run.version}"',
    }
    fields.update(overrides)
    return command(kind, **fields)
