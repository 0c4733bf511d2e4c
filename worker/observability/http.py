"""/metrics, /healthz and /readyz on METRICS_PORT, served by the standard library from threads
of their own: a thread per connection, each giving up on a client silent for a few seconds,
so one idle connection cannot hold the probes back (wsgiref's server alone serves one
connection at a time), and a busy event loop cannot either."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

StartResponse = Callable[..., Any]


class Probes(Protocol):
    def liveness(self) -> tuple[bool, str]: ...
    def readiness(self) -> tuple[bool, str]: ...


# Seconds a connection may stay silent before its thread drops it.
CLIENT_TIMEOUT_SECONDS = 5.0


class _QuietHandler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one access-log line per scrape is noise


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def health_app(health: Probes) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok, detail = health.liveness() if path == "/healthz" else health.readiness()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [detail.encode() + b"\n"]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


def serve(health: Probes, port: int, host: str = "0.0.0.0") -> WSGIServer:
    server = make_server(
        host, port, health_app(health), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
