"""A TCP relay: `python -m tests.support.relay LISTEN_HOST:PORT=TARGET_HOST:PORT ...`.

The network fault tests run a worker in a network namespace of its own. Inside it, `localhost`
is the namespace's own loopback, where the services are not; a relay there listens on the
services' ports and forwards over the namespace's links to a relay on the host, which forwards
to the services. Every connection the worker makes crosses a link the test can cut or slow.
"""

from __future__ import annotations

import asyncio
import sys

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


async def main(routes: list[str]) -> None:
    servers = [await relay(*route.split("=", 1)) for route in routes]
    print("relaying", flush=True)  # the parent waits for this line
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
