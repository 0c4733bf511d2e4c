"""serve's reply reader, given a record on the replies topic that aiokafka's own reader cannot
parse (a header key that is not UTF-8): it reads past it, and requests still get their results.

serve runs as a process of its own here: the worker's consumer, in this process, installs the
lenient record reader for the whole process and would hide a serve that lacks it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from fielding_statemachine.status import RunStatus
from tests.support.harness import RunMaker, WorkerFactory
from tests.support.http import headers, run_path
from tests.support.processes import WorkerProcess
from tests.support.raw_records import produce_raw
from worker.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_record_serve_cannot_parse_on_its_replies_partition_stops_no_request(
    settings: Settings, workers: WorkerFactory, make_run: RunMaker, tmp_path: Path
) -> None:
    serve = WorkerProcess(
        settings, tmp_path, "serve", command="serve", FIELDING_REPLY_PARTITION="0"
    )
    serve.start()
    try:
        await workers.start(settings)
        base = f"http://127.0.0.1:{serve.api_port}/v1"
        run = await make_run(RunStatus.LIVE)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:  # until serve answers (a read: it needs no reply)
                try:
                    if (await client.get(run_path(run), headers=headers())).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, serve.log()[-2000:]
                await asyncio.sleep(0.2)
            hostile = (b"k", b"{}", [(b"bad\xff\xfekey", b"v")])
            await produce_raw(
                settings.kafka_bootstrap_servers, settings.replies_topic, 0, [hostile]
            )
            done = await client.post(
                run_path(run) + "/complete", headers=headers(**{"If-Match": 'W/"1"'})
            )
        assert done.status_code == 204, (done.text, serve.log()[-2000:])
    finally:
        serve.kill()
