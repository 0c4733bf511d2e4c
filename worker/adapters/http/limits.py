"""The HTTP API's limits on what a request may send, enforced as it arrives."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.observability import metrics

# A bulk job of 1,000 target groups is about 30 KB; nothing the API takes is larger.
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuses a request body larger than MAX_BODY_BYTES as it arrives (413), before it is
    read whole: FastAPI parses a body in one piece, on the event loop. A body still arriving
    `body_seconds` after the headers is refused too (408): a slow client holds no request."""

    def __init__(self, app: ASGIApp, body_seconds: float = 10.0) -> None:
        self.app = app
        self.body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.body_seconds

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in; what comes next is the client leaving
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                metrics.HTTP_REFUSED.labels("body_timeout").inc()
                raise StarletteHTTPException(
                    408, f"the body did not arrive within {self.body_seconds:g} s"
                ) from None
            complete = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise StarletteHTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
            return message

        await self.app(scope, limited, send)
