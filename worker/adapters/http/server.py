"""`serve`'s HTTP server: uvicorn, with the edge bounded so that slow or many clients cannot
take it down.

- A request's headers must arrive within `header_seconds` of the connection's first byte
  (or of its last response, on a kept-alive connection), else the connection is closed.
  uvicorn has no such timer of its own: `BoundedEdge` adds it.
- Open connections are capped. At the cap, a new connection takes the place of the one that
  has waited longest for its request's headers (slow or idle clients go first); when every
  connection is busy with a request, the new one is answered 503 with `retry-after` and closed.
  The cap stays under the process's open-file limit, so `accept()` never runs out of
  descriptors.
- Idle kept-alive connections close after `keep_alive_seconds` (uvicorn's own timer); a
  request's body must arrive within its bound (`limits.BodyLimit`); requests waiting for their
  replies are capped (`waits.py`); a stop waits at most `shutdown_seconds` for open requests.

Requests are parsed by httptools (llhttp, in C), a quarter of h11's CPU per request
(docs/decisions/serve-edge.md). What h11 bounded or answered on its own is kept as h11 had it:
a request's head still incomplete past 16 KiB is refused, and a request that cannot be parsed
gets h11's 400, byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from schemas.errors import ServiceUnavailableProblem
from worker.observability import metrics

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: Kafka, Postgres, logs, metrics.
RESERVED_FILES = 128


@dataclass(frozen=True)
class EdgeLimits:
    header_seconds: float
    keep_alive_seconds: float
    max_connections: int
    shutdown_seconds: float


def _busy_answer() -> bytes:
    body = json.dumps(
        ServiceUnavailableProblem(detail="too many open connections; try again").model_dump()
    ).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


BUSY = _busy_answer()


# h11's own bound (its `max_incomplete_event_size`): a request's head, incomplete, held no larger.
MAX_HEAD_BYTES = 16 * 1024
# h11's answer to a request it cannot parse, as uvicorn sent it: kept, whatever parses.
UNPARSABLE = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n"
)

# Type-checked as the protocol it extends; at run time a mixin over any uvicorn HTTP/1 protocol.
if TYPE_CHECKING:
    _Protocol = HttpToolsProtocol
else:
    _Protocol = object


class BoundedEdge(_Protocol):
    """A uvicorn HTTP/1 protocol with a deadline on each request's headers, a cap on open
    connections (see the module's docstring) and h11's bound on a request's head. `limits` is
    set by `server()`."""

    limits: ClassVar[EdgeLimits]
    # Connections waiting for a request's headers, oldest first, across the server.
    waiting: ClassVar[OrderedDict[BoundedEdge, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._head_bytes = 0  # of the request whose headers are awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._evict():
            metrics.HTTP_REFUSED.labels("connections").inc()
            self._refused = True
            transport.write(BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._await_headers()

    def _evict(self) -> bool:
        """Closes the connection that has waited longest for headers; False if none waits."""
        if not self.waiting:
            return False
        oldest, _ = self.waiting.popitem(last=False)
        metrics.HTTP_REFUSED.labels("evicted").inc()
        oldest._close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():  # refused, or its answer was the last
            return
        if not self._in_request():
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_request():
            self._head_bytes = 0
            self._headers_arrived()
        elif self.transport.is_closing():  # refused by the parser
            return
        elif self._head_bytes > MAX_HEAD_BYTES:
            self.send_400_response("Invalid HTTP request received.")
        elif self._header_deadline is None:  # bytes of a next request on a kept-alive one
            self._await_headers()

    def send_400_response(self, msg: str) -> None:
        self._headers_arrived()
        self.transport.write(UNPARSABLE + msg.encode("ascii"))
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._in_request():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        if not self._refused:
            super().connection_lost(exc)

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _await_headers(self) -> None:
        self._headers_arrived()
        self._header_deadline = self.loop.call_later(self.limits.header_seconds, self._headers_late)
        self.waiting[self] = None

    def _headers_arrived(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        self.waiting.pop(self, None)

    def _headers_late(self) -> None:
        self._header_deadline = None
        self.waiting.pop(self, None)
        if not self._in_request():
            metrics.HTTP_REFUSED.labels("header_timeout").inc()
            self._close()

    def pause_writing(self) -> None:
        """The client has stopped reading: it gets as long to start again as it gets to send
        its headers, else the connection is dropped (a busy connection is never evicted)."""
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.header_seconds, self._reads_late
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _reads_late(self) -> None:
        self._write_deadline = None
        metrics.HTTP_REFUSED.labels("write_timeout").inc()
        self._close()

    def _close(self) -> None:
        """Drops the connection at once: `close()` would wait for a client that does not read
        to take what is buffered, and keep its descriptor meanwhile."""
        self._headers_arrived()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        self.transport.abort()


def connection_cap(wanted: int) -> int:
    """`wanted`, or less where the open-file limit would not hold it. The soft limit is raised
    to the hard one first (the usual soft default, 1024, is an accident of history)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            log.debug("could not raise the open-file limit", exc_info=True)
    if soft == resource.RLIM_INFINITY:
        return wanted
    cap = max(1, min(wanted, soft - RESERVED_FILES))
    if cap < wanted:
        log.warning(
            "open connections capped below FIELDING_HTTP_MAX_CONNECTIONS by the open-file limit",
            extra={"cap": cap, "open_file_limit": soft},
        )
    return cap


class BoundedHttpToolsProtocol(BoundedEdge, HttpToolsProtocol):
    """serve's protocol: httptools, bounded, judging a request's Host as h11 did."""

    def on_headers_complete(self) -> None:
        # One Host, and one in every HTTP/1.1 request (RFC 9112, 3.2): httptools takes any.
        hosts = sum(1 for name, _ in self.headers if name == b"host")
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise httptools.HttpParserError("a request has one Host")  # answered 400
        super().on_headers_complete()


def server(app: Any, host: str, port: int, limits: EdgeLimits) -> uvicorn.Server:
    protocol = type(
        "ServeProtocol",
        (BoundedHttpToolsProtocol,),
        {"limits": limits, "waiting": OrderedDict()},
    )
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=protocol,
            log_config=None,
            access_log=False,
            timeout_keep_alive=max(1, round(limits.keep_alive_seconds)),
            timeout_graceful_shutdown=max(1, round(limits.shutdown_seconds)),
            # asyncio accepts up to `backlog` connections in one go, before any is counted:
            # fewer than the descriptors held in reserve.
            backlog=RESERVED_FILES // 2,
        )
    )
