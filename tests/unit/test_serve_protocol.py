"""serve's HTTP protocol, bytes in and bytes out, with a transport that only collects what is
written: what serve answered when it parsed with h11 it answers with httptools, byte for byte,
well-formed requests or not; and the edge's bounds (a deadline on a request's headers, a cap
on open connections, h11's bound on a request's head) hold on either. The same bounds against
a real socket and many clients: tests/integration/test_serve_edge.py."""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from tests.support.commands import SECRET
from tests.unit.test_http_edge import HEADERS, RUN, DownStore, Worker
from worker.adapters.http.answers import ApiContext
from worker.adapters.http.app import create_app
from worker.adapters.http.server import (
    BUSY,
    MAX_HEAD_BYTES,
    BoundedEdge,
    BoundedHttpToolsProtocol,
    EdgeLimits,
)
from worker.service.auth import TokenVerifier


class BoundedH11Protocol(BoundedEdge, H11Protocol):
    """What serve ran before httptools: the reference its answers are compared with."""


PROTOCOLS = {"h11": BoundedH11Protocol, "httptools": BoundedHttpToolsProtocol}


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.wrote = asyncio.Event()
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.wrote.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Edge:
    """One server's worth of connections of one protocol, bounded by `limits`."""

    def __init__(self, base: type[BoundedEdge], limits: EdgeLimits, worker: Worker) -> None:
        app = create_app(ApiContext(TokenVerifier(SECRET), worker, DownStore(), 1.0))  # type: ignore[arg-type]
        self.config = Config(app, log_config=None, access_log=False, lifespan="off")
        self.config.load()
        self.state = ServerState()
        self.state.default_headers = [(b"date", b"Sun, 06 Dec 2026 12:00:00 GMT")]
        self.base = base
        self.protocol = type("Serve", (base,), {"limits": limits, "waiting": OrderedDict()})

    def connect(self) -> tuple[Any, Transport]:
        protocol = self.protocol(config=self.config, server_state=self.state, app_state={})
        transport = Transport()
        protocol.connection_made(transport)
        return protocol, transport


LIMITS = EdgeLimits(header_seconds=0.4, keep_alive_seconds=5, max_connections=2, shutdown_seconds=1)


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: api", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


COMPLETE = {**HEADERS, "If-Match": 'W/"1"', "idempotency-key": "k-1"}
REQUESTS = {
    "a complete": request("POST", RUN + "/complete", COMPLETE),
    "a bad If-Match": request("POST", RUN + "/complete", {**COMPLETE, "If-Match": "five"}),
    "no token": request("POST", RUN + "/complete", {"If-Match": 'W/"1"'}),
    "a body that is not JSON": request(
        "PUT", RUN, {**COMPLETE, "content-type": "application/json"}, b"{"
    ),
    "a read with the database away": request("GET", RUN, HEADERS),
    "no such route": request("GET", "/v1/nothing", HEADERS),
    "a query string": request("GET", RUN + "?a=%20b", HEADERS),
    "not HTTP": b"GARBAGE\r\n\r\n",
    "a header without a colon": b"GET / HTTP/1.1\r\nhost: api\r\nnocolon\r\n\r\n",
    "a space before the colon": b"GET / HTTP/1.1\r\nhost : api\r\n\r\n",
    "two content lengths": b"POST / HTTP/1.1\r\nhost: api\r\ncontent-length: 1\r\n"
    b"content-length: 2\r\n\r\nab",
    "a bad chunk": b"POST / HTTP/1.1\r\nhost: api\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "a NUL in a header": b"GET / HTTP/1.1\r\nhost: api\r\nx-a: a\x00b\r\n\r\n",
    "non-ASCII in a header": request("GET", RUN, {**HEADERS, "x-a": "caf\u00e9"}),
    "trailing spaces in a header": b"GET /v1/nothing HTTP/1.1\r\nhost: api\r\n"
    b"Cint-API-Version: 2025-12-18  \r\n\r\n",
    "an absolute URL": b"GET http://api/v1/nothing HTTP/1.1\r\nhost: api\r\n\r\n",
    "no host": b"GET /v1/nothing HTTP/1.1\r\n\r\n",
    "two hosts": b"GET /v1/nothing HTTP/1.1\r\nhost: api\r\nhost: api\r\n\r\n",
    "no host in HTTP/1.0": b"GET /v1/nothing HTTP/1.0\r\n\r\n",
    "a chunked body": b"PUT " + RUN.encode() + b" HTTP/1.1\r\nhost: api\r\n"
    b"transfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n1\r\n{\r\n0\r\n\r\n",
    "two requests in one piece": request("GET", "/v1/nothing", HEADERS) * 2,
    "a head over the bound": b"GET / HTTP/1.1\r\nhost: api\r\nx-a: " + b"a" * MAX_HEAD_BYTES,
}
UNPARSED = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n\r\nInvalid HTTP request received."
)
# What differs from one answer to the next whatever parses: ids and trace ids.
RANDOM = re.compile(rb'"id":"[^"]*"|traceparent: [^\r]*')


async def answer(base: type[BoundedEdge], raw: bytes) -> tuple[bytes, bool]:
    """What a connection answers `raw`, sent in two pieces, and whether it is closed."""
    worker = Worker()
    worker.result = {"command_id": "k-1", "account_id": 101, "status": 204, "etag": 'W/"2"'}
    protocol, transport = Edge(base, LIMITS, worker).connect()
    for piece in (raw[:20], raw[20:]):
        protocol.data_received(piece)
    for _ in range(100):  # the app's turns of the loop
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    head, separator, body = bytes(transport.written).partition(b"\r\n\r\n")
    status, *fields = head.split(b"\r\n")
    # Header names without their case, as HTTP reads them (h11 wrote `Connection: close`).
    named = [name.lower() + b":" + value for name, _, value in (f.partition(b":") for f in fields)]
    answered = b"\r\n".join([status, *named]) + separator + body
    return RANDOM.sub(b"<random>", answered), transport.closed


@pytest.mark.parametrize("raw", REQUESTS.values(), ids=REQUESTS.keys())
async def test_httptools_answers_as_h11_did(raw: bytes) -> None:
    """Statuses, headers in their order, bodies, and whether the connection is closed."""
    before, after = (
        await answer(BoundedH11Protocol, raw),
        await answer(BoundedHttpToolsProtocol, raw),
    )
    assert before[0], "h11 answered something"
    assert after == before


# What httptools (llhttp) refuses where h11 let the app answer (404 here): framing a proxy
# may read otherwise, which is how requests are smuggled past one (RFC 9112, 6.3, 5.2 and
# 2.2), and a method that is no standard one (no route serves any).
REFUSED_NOW = {
    "content length and chunked": b"POST /v1/nothing HTTP/1.1\r\nhost: api\r\n"
    b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "a folded header": b"GET /v1/nothing HTTP/1.1\r\nhost: api\r\nx-a: a\r\n b\r\n\r\n",
    "bare line feeds": b"GET /v1/nothing HTTP/1.1\nhost: api\n\n",
    "a lower-case method": b"get /v1/nothing HTTP/1.1\r\nhost: api\r\n\r\n",
}


@pytest.mark.parametrize("raw", REFUSED_NOW.values(), ids=REFUSED_NOW.keys())
async def test_what_h11_let_through_and_httptools_refuses(raw: bytes) -> None:
    h11_answer, _ = await answer(BoundedH11Protocol, raw)
    assert h11_answer.startswith(b"HTTP/1.1 404 ")
    assert await answer(BoundedHttpToolsProtocol, raw) == (UNPARSED, True)


async def test_a_request_that_says_http_2_is_answered_and_closed_saying_so() -> None:
    raw = b"GET /v1/nothing HTTP/2.0\r\nhost: api\r\n\r\n"
    (h11_answer, h11_closed), (answered, closed) = [
        await answer(base, raw) for base in (BoundedH11Protocol, BoundedHttpToolsProtocol)
    ]
    assert answered.startswith(b"HTTP/1.1 404 ") and h11_closed and closed
    assert answered.replace(b"\r\nconnection: close", b"") == h11_answer


@pytest.fixture(params=PROTOCOLS.values(), ids=PROTOCOLS.keys())
def edge(request: pytest.FixtureRequest) -> Iterator[Edge]:
    worker = Worker()
    worker.result = {"command_id": "k-1", "account_id": 101, "status": 204}
    yield Edge(request.param, LIMITS, worker)


async def test_a_connection_whose_headers_are_late_is_dropped(edge: Edge) -> None:
    _, transport = edge.connect()
    await asyncio.sleep(LIMITS.header_seconds * 2)
    assert transport.aborted and not transport.written


async def test_headers_arriving_a_line_at_a_time_still_have_one_deadline(edge: Edge) -> None:
    protocol, transport = edge.connect()
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    await asyncio.sleep(LIMITS.header_seconds * 0.6)
    protocol.data_received(b"host: api\r\n")
    await asyncio.sleep(LIMITS.header_seconds * 0.7)
    assert transport.aborted


async def test_a_kept_alive_connection_gets_a_new_deadline_after_each_answer(edge: Edge) -> None:
    protocol, transport = edge.connect()
    await asyncio.sleep(LIMITS.header_seconds * 0.6)
    protocol.data_received(REQUESTS["a complete"])
    await asyncio.wait_for(transport.wrote.wait(), 5)
    assert transport.written.startswith(b"HTTP/1.1 204 ")
    await asyncio.sleep(LIMITS.header_seconds * 0.6)
    assert not transport.is_closing(), "the deadline starts again at the answer"
    await asyncio.sleep(LIMITS.header_seconds * 0.7)
    assert transport.aborted


async def test_at_the_cap_the_connection_waiting_longest_for_headers_makes_way(
    edge: Edge,
) -> None:
    _, oldest = edge.connect()
    _, newer = edge.connect()
    _, third = edge.connect()
    assert oldest.aborted and not newer.is_closing() and not third.is_closing()


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_answered_503(
    edge: Edge,
) -> None:
    worker = Worker()  # never answers: each request waits for its result
    busy = Edge(edge.base, LIMITS, worker)
    for _ in range(LIMITS.max_connections):
        protocol, _ = busy.connect()
        protocol.data_received(REQUESTS["a complete"])
    await asyncio.sleep(0)
    _, refused = busy.connect()
    assert bytes(refused.written) == BUSY and refused.closed


async def test_a_head_over_the_bound_is_refused_before_it_is_whole(edge: Edge) -> None:
    protocol, transport = edge.connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: api\r\nx-a: ")
    for _ in range(MAX_HEAD_BYTES // 1024 + 1):
        protocol.data_received(b"a" * 1024)
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n") and transport.closed
