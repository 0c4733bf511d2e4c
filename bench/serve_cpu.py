"""serve's CPU per change request, in process, with no service: `python -m bench.serve_cpu`.

Complete requests (the open-loop section's POST: a token, If-Match, an idempotency-key of its
own) go one after another through what `fielding-worker serve` runs for each: the bounded HTTP
protocol with a transport that only collects what is written, the app, and request-reply with
a stand-in for the Kafka producer and the replies topic that answers each command, on the next
turn of the loop, with the result the worker would publish. CPU is `time.process_time` over
thousands of requests, after a warm-up, the least of a few rounds (other processes on the
machine only add); what the stand-ins cost is measured and shown apart.

- `app`: the ASGI app alone, called as uvicorn calls it (no HTTP parsing).
- `server`: the raw request through serve's protocol, then the app: serve's CPU per POST,
  less the socket's system calls and aiokafka's record encoding.
- `server over a socket`: the same over a connected pair of Unix sockets, the event loop's
  transport reading and writing them (no port is opened); the client's send and receive
  are counted too.
- `protocol (<name>)`: the raw request through each protocol serve could run, answered at
  once by an app that does nothing: the HTTP layer's own share.

`--profile` prints where `server`'s time goes (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import pstats
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from schemas.result import CommandResult, Status
from schemas.types import new_ulid
from worker.adapters.http.answers import ApiContext
from worker.adapters.http.app import create_app
from worker.adapters.http.server import EdgeLimits, server
from worker.adapters.kafka.request_reply import RequestReply
from worker.service.auth import TokenIssuer, TokenVerifier
from worker.service.replies import REPLY_ID, REPLY_ORIGIN, origin_text

SECRET = "bench-serve-cpu-secret-of-enough-length"
ACCOUNT = 101
PROJECT, GROUP, RUN_ID = (new_ulid() for _ in range(3))
RUN_PATH = (
    f"/v1/demand/accounts/{ACCOUNT}/projects/{PROJECT}/target-groups/{GROUP}"
    f"/fielding-runs/{RUN_ID}/complete"
)
LIMITS = EdgeLimits(
    header_seconds=10.0, keep_alive_seconds=5.0, max_connections=1000, shutdown_seconds=5.0
)
TRACEPARENT = f"00-{'a' * 32}-{'b' * 16}-01"
COMMAND_ID = re.compile(rb'"command_id":"([^"]*)"')

Asgi = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Sent:
    partition: int
    offset: int


@dataclass(frozen=True)
class ReplyRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class Replies:
    """The producer and the replies topic in one: a command sent is acknowledged at once and
    answered on the loop's next turn with the 204 the worker publishes for a complete."""

    def __init__(self, gateway: RequestReply) -> None:
        self._gateway = gateway
        self._offset = 0
        now = datetime.now(UTC)
        self._template = CommandResult(
            command_id="{command_id}",
            type="complete_fielding_run",
            status=Status.NO_CONTENT,
            etag='W/"2"',
            account_id=ACCOUNT,
            project_id=PROJECT,
            target_group_id=GROUP,
            fielding_run_id=RUN_ID,
            processed_at=now,
        ).model_dump_json()

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> Sent:
        self._offset += 1
        found = COMMAND_ID.search(value)
        assert found is not None
        result = self._template.replace("{command_id}", found.group(1).decode()).encode()
        reply_id = next(v for k, v in headers if k == REPLY_ID)
        reply_headers = [
            ("traceparent", TRACEPARENT.encode()),
            (REPLY_ORIGIN, origin_text(0, self._offset)),
        ]
        record = ReplyRecord(reply_id, result, reply_headers)
        asyncio.get_running_loop().call_soon(self._gateway._deliver, record)
        return Sent(0, self._offset)


def gateway() -> RequestReply:
    replies = RequestReply("unused:9092", "commands", "replies", partition=0)
    replies._producer = Replies(replies)
    return replies


class Transport(asyncio.Transport):
    """Keeps what is written; a connection that is never closed by the client."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def token() -> str:
    return TokenIssuer(SECRET).issue([ACCOUNT], lifetime_seconds=3600)


def raw_request(bearer: str, index: int) -> bytes:
    return (
        f"POST {RUN_PATH} HTTP/1.1\r\n"
        "host: 127.0.0.1:8000\r\n"
        "user-agent: Go-http-client/1.1\r\n"
        "content-length: 0\r\n"
        f"authorization: Bearer {bearer}\r\n"
        "cint-api-version: 2025-12-18\r\n"
        'if-match: W/"1"\r\n'
        f"idempotency-key: bench-{index:09d}\r\n"
        "accept-encoding: gzip\r\n"
        "\r\n"
    ).encode()


def serve_app() -> Any:
    return create_app(ApiContext(TokenVerifier(SECRET), gateway(), None, 5.0))


async def nothing_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers 204 at once: what is left is the protocol's own work."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def connection(app: Any, http: type[asyncio.Protocol] | str) -> tuple[Any, Transport]:
    """A protocol instance as serve's server makes one per connection, with a hook on each
    response's end, on a transport that collects what is written."""
    protocol = unconnected(app, http)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def unconnected(app: Any, http: type[asyncio.Protocol] | str) -> Any:
    config = uvicorn.Config(
        app, http=http, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=5
    )
    config.load()
    base: Any = config.http_protocol_class

    def on_response_complete(self: Any) -> None:
        base.on_response_complete(self)
        self.bench_done.set_result(None)

    protocol_class = type("BenchProtocol", (base,), {"on_response_complete": on_response_complete})
    state = ServerState()
    state.default_headers = [(b"date", b"Sun, 06 Dec 2026 12:00:00 GMT"), *config.encoded_headers]
    return protocol_class(config=config, server_state=state, app_state={})


def serve_protocol() -> type[asyncio.Protocol]:
    """serve's own protocol class, bounded as `server()` builds it."""
    http = server(nothing_app, "127.0.0.1", 0, LIMITS).config.http
    assert isinstance(http, type)
    return http


async def through_protocol(app: Any, http: type[asyncio.Protocol] | str, count: int) -> float:
    """CPU seconds per request, raw bytes in."""
    protocol, transport = connection(app, http)
    bearer = token()
    loop = asyncio.get_running_loop()
    requests = [raw_request(bearer, i) for i in range(count)]

    async def one(request: bytes) -> None:
        protocol.bench_done = loop.create_future()
        protocol.data_received(request)
        await protocol.bench_done

    for request in requests[: count // 10]:  # warm-up
        await one(request)
    transport.written.clear()
    started = time.process_time()
    for request in requests[count // 10 :]:
        await one(request)
    spent = time.process_time() - started
    measured = count - count // 10
    answered = b"".join(transport.written)
    expected = b"HTTP/1.1 204 " if app is nothing_app else b"HTTP/1.1 204 No Content"
    assert answered.count(expected) == measured, answered[:400]
    protocol.connection_lost(None)
    return spent / measured


async def through_socket(app: Any, http: type[asyncio.Protocol] | str, count: int) -> float:
    """CPU seconds per request over a connected pair of Unix sockets, so that the loop's own
    transport reads and writes as for a client's connection (no port is opened). The client's
    share, a send and a receive per request, is counted too."""
    protocol = unconnected(app, http)
    client, server_end = socket.socketpair()
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: protocol, server_end)
    bearer = token()
    requests = [raw_request(bearer, i) for i in range(count)]
    answered = bytearray()

    async def one(request: bytes) -> None:
        protocol.bench_done = loop.create_future()
        await loop.sock_sendall(client, request)
        await protocol.bench_done
        answer = await loop.sock_recv(client, 65536)
        while not answer.endswith(b"\r\n\r\n"):  # a 204's head, its whole answer
            answer += await loop.sock_recv(client, 65536)
        answered.extend(answer)

    for request in requests[: count // 10]:  # warm-up
        await one(request)
    answered.clear()
    started = time.process_time()
    for request in requests[count // 10 :]:
        await one(request)
    spent = time.process_time() - started
    measured = count - count // 10
    assert answered.count(b"HTTP/1.1 204 No Content") == measured, answered[:400]
    client.close()
    await asyncio.sleep(0)
    return spent / measured


async def through_app(app: Any, count: int) -> float:
    """CPU seconds per request, the ASGI app called directly with uvicorn's scope."""
    bearer = token()
    loop = asyncio.get_running_loop()
    statuses: list[int] = []

    async def one(index: int) -> None:
        done = loop.create_future()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await loop.create_future()  # the client stays until the answer
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif not message.get("more_body", False):
                done.set_result(None)

        headers = [
            (name.lower(), value.strip())
            for line in raw_request(bearer, index).split(b"\r\n")[2:-2]
            for name, value in [line.split(b":", 1)]
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": RUN_PATH,
            "raw_path": RUN_PATH.encode(),
            "query_string": b"",
            "headers": headers,
            "state": {},
        }
        await app(scope, receive, send)
        await done

    for index in range(count // 10):
        await one(index)
    statuses.clear()
    started = time.process_time()
    for index in range(count // 10, count):
        await one(index)
    spent = time.process_time() - started
    assert statuses == [204] * (count - count // 10), set(statuses)
    return spent / (count - count // 10)


async def stand_in_cost(count: int) -> float:
    """CPU seconds per request of the stand-in alone (its part of `app` and `server`)."""
    replies = gateway()
    stand_in = replies._producer
    assert isinstance(stand_in, Replies)
    value = b'{"command_id":"bench-000000001","account_id":101}'
    headers = [(REPLY_ID, b"0" * 32)]
    replies._deliver = lambda record: None  # type: ignore[method-assign]
    started = time.process_time()
    for _ in range(count):
        await stand_in.send_and_wait("commands", value, b"", headers)
    await asyncio.sleep(0)
    return (time.process_time() - started) / count


def protocols() -> dict[str, type[asyncio.Protocol] | str]:
    """serve's protocol, and uvicorn's plain ones that are installed, for comparison."""
    found: dict[str, type[asyncio.Protocol] | str] = {"serve's": serve_protocol(), "h11": "h11"}
    try:
        import httptools  # noqa: F401

        found["httptools"] = "httptools"
    except ImportError:
        pass
    return found


async def measure(count: int) -> list[tuple[str, float]]:
    rows = [
        ("app", await through_app(serve_app(), count)),
        ("server", await through_protocol(serve_app(), serve_protocol(), count)),
        ("server over a socket", await through_socket(serve_app(), serve_protocol(), count)),
    ]
    for name, http in protocols().items():
        rows.append((f"protocol ({name})", await through_protocol(nothing_app, http, count)))
    rows.append(("stand-ins (in app and server)", await stand_in_cost(count)))
    return rows


def profile(count: int) -> None:
    profiler = cProfile.Profile()

    async def profiled() -> None:
        app = serve_app()
        await through_protocol(app, serve_protocol(), count // 5)  # warm
        profiler.enable()
        await through_protocol(app, serve_protocol(), count)
        profiler.disable()

    asyncio.run(profiled())
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(60)


def loops() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio's own loop, and uvloop's when it is installed."""
    found: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:  # not a dependency: imported by name, so that type checking does not need it
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return found
    found["uvloop"] = uvloop.new_event_loop
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="the least of these is shown")
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    if arguments.profile:
        profile(arguments.requests)
        return
    columns: dict[str, dict[str, float]] = {}
    for _ in range(arguments.rounds):
        for name, factory in loops().items():
            with asyncio.Runner(loop_factory=factory) as runner:
                rows = runner.run(measure(arguments.requests))
            column = columns.setdefault(name, {})
            for row, seconds in rows:
                column[row] = min(seconds, column.get(row, seconds))
    measured = arguments.requests - arguments.requests // 10
    print(f"CPU µs per request, {measured} requests each, the least of {arguments.rounds} rounds")
    print(f"  {'':<32}" + "".join(f"{name:>10}" for name in columns))
    for row in next(iter(columns.values())):
        print(f"  {row:<32}" + "".join(f"{c[row] * 1e6:10.1f}" for c in columns.values()))


if __name__ == "__main__":
    main()
