"""The HTTP API's limits on what a request may send, enforced as it arrives."""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A bulk job of 1,000 target groups is about 30 KB; nothing the API takes is larger.
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuses a request body larger than MAX_BODY_BYTES as it arrives (413), before it is
    read whole: FastAPI parses a body in one piece, on the event loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise StarletteHTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
            return message

        await self.app(scope, limited, send)
