"""A TCP relay: `python -m tests.support.relay LISTEN_HOST:PORT=TARGET_HOST:PORT ...`.

The network fault tests run a worker in a network namespace of its own. Inside it, `localhost`
is the namespace's own loopback, where the services are not; a relay there listens on the
services' ports and forwards over the namespace's links to a relay on the host, which forwards
to the services. Every connection the worker makes crosses a link the test can cut or slow.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

CHUNK = 1 << 16


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def relay(listen: str, target: str) -> asyncio.Server:
    listen_host, listen_port = listen.rsplit(":", 1)
    target_host, target_port = target.rsplit(":", 1)

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                target_host, int(target_port)
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return await asyncio.start_server(connected, listen_host, int(listen_port), reuse_address=True)


@dataclass
class SilencingRelay:
    """An in-process relay to one target whose open connections can be made silent: what
    either side sends from then on is swallowed, and neither side is closed or reset, as when a
    NAT or firewall entry is dropped or a host vanishes. Connections made later pass."""

    target_host: str
    target_port: int
    _silent: set[asyncio.StreamWriter] = field(default_factory=set)
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listens on a free port of 127.0.0.1 and returns it."""
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def silence(self) -> None:
        self._silent |= self._open

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._open:
            writer.close()
        await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.target_host, self.target_port
        )
        self._open |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if writer not in self._silent:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass
        if writer not in self._silent:  # an end of stream is swallowed too
            writer.close()


async def main(routes: list[str]) -> None:
    servers = [await relay(*route.split("=", 1)) for route in routes]
    print("relaying", flush=True)  # the parent waits for this line
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
