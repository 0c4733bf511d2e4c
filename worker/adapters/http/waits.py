"""Change requests waiting for their replies: capped per process, and ended when their client
leaves. A request over the cap is answered 503 with `retry-after` at once, before its command
is sent; a client that disconnects stops its wait (its command, if sent, still applies once)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import Request

from schemas.command import Command
from schemas.errors import ServiceUnavailableProblem
from worker.adapters.http.answers import ApiProblem, Gateway
from worker.adapters.kafka.request_reply import Reply
from worker.observability import metrics

RETRY_AFTER_SECONDS = 1


class ClientGone(Exception):
    """The client disconnected while its request waited."""


@dataclass
class Waits:
    limit: int
    count: int = field(default=0)

    async def reply(
        self,
        request: Request,
        gateway: Gateway,
        command: Command,
        headers: list[tuple[str, bytes]],
        deadline: float,
    ) -> Reply | None:
        """The command's reply, None past `deadline`; 503 over the cap; ClientGone when the
        client leaves first."""
        if self.count >= self.limit:
            metrics.HTTP_REFUSED.labels("waiting").inc()
            body = ServiceUnavailableProblem(detail="too many requests waiting; try again")
            raise ApiProblem(
                503, body.model_dump(mode="json"), {"retry-after": str(RETRY_AFTER_SECONDS)}
            )
        self.count += 1
        metrics.HTTP_WAITING.set(self.count)
        sent = time.monotonic()
        replying = asyncio.ensure_future(gateway.send(command, headers, deadline))
        leaving = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({replying, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if not replying.done():
                metrics.HTTP_REFUSED.labels("client_gone").inc()
                raise ClientGone(command.command_id)
            reply = replying.result()
            if reply is not None:
                metrics.HTTP_REPLY_SECONDS.observe(time.monotonic() - sent)
            return reply
        finally:
            for task in (replying, leaving):
                task.cancel()
            await asyncio.gather(replying, leaving, return_exceptions=True)
            self.count -= 1
            metrics.HTTP_WAITING.set(self.count)


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects. The body has been read whole by now, so the
    server's next message is the disconnect; where reading fails instead (a body the route did
    not read, refused by `BodyLimit`), it never returns: the client may still be there."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:
        await asyncio.Event().wait()


def waits_of(request: Request) -> Waits:
    waits: Waits = request.app.state.waits
    return waits
