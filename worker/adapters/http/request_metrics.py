"""Counts serve's answers by route template and status (`fielding_serve_requests_total`). The
route is the template (`/v1/.../{fielding_run_id}`), never the path: labels stay few."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.observability import metrics


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before it starts a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.HTTP_REQUESTS.labels(route, str(status)).inc()
