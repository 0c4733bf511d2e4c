"""A network namespace for one worker, whose links to Kafka and to Postgres the test can cut
or slow, one at a time or both.

Each service gets a veth pair of its own between the namespace and this host, so a fault on
one link leaves the other alone. A relay inside the namespace listens on the services' ports
(the worker connects to `localhost`, as the broker advertises itself) and forwards over the
service's link to a relay on the host, which forwards to the service.

Faults are queueing disciplines on both ends of a link (`tc`): a token bucket too small for any
packet drops everything (a partition: no reset, no error, silence), a slow bucket delays and
drops what overflows it (a congested link). netem would be the usual tool for random loss and
delay; this machine's kernel is built without it (CONFIG_NET_SCH_NETEM is not set), and tbf is.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("kafka", "postgres")


def namespaces_available() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"fwprobe{random.randrange(1 << 20):x}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], check=False)
    return None


def _ip(command: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, *command.split()], check=True, capture_output=True)


@dataclass(frozen=True)
class Link:
    host_device: str
    namespace_device: str
    host_address: str
    namespace_address: str


class Isolated:
    """The namespace, its two links and its relays; `with Isolated(...) as net:` makes and
    removes them all."""

    def __init__(self, kafka_bootstrap_servers: str, postgres_url: str, log_dir: Path) -> None:
        self.name = f"fw{random.randrange(1 << 24):06x}"
        kafka_host, kafka_port = kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
        postgres = urlsplit(postgres_url)
        self._targets = {
            "kafka": (kafka_host, int(kafka_port)),
            "postgres": (postgres.hostname or "localhost", postgres.port or 5432),
        }
        subnet = random.randrange(0, 1 << 14)
        self.links = {
            service: Link(
                f"{self.name}{service[0]}h",
                f"{self.name}{service[0]}n",
                f"10.{200 + i}.{subnet >> 6}.{(subnet & 63) * 4 + 1}",
                f"10.{200 + i}.{subnet >> 6}.{(subnet & 63) * 4 + 2}",
            )
            for i, service in enumerate(SERVICES)
        }
        self._log_dir = log_dir
        self._relays: list[subprocess.Popen[bytes]] = []

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> Isolated:
        _ip(f"ip netns add {self.name}")
        try:
            _ip("ip link set lo up", namespace=self.name)
            for link in self.links.values():
                host, inner = link.host_device, link.namespace_device
                _ip(f"ip link add {host} type veth peer name {inner}")
                _ip(f"ip link set {inner} netns {self.name}")
                _ip(f"ip addr add {link.host_address}/30 dev {host}")
                _ip(f"ip link set {host} up")
                _ip(f"ip addr add {link.namespace_address}/30 dev {inner}", namespace=self.name)
                _ip(f"ip link set {inner} up", namespace=self.name)
            host_routes, inner_routes = [], []
            for service, (host, port) in self._targets.items():
                link = self.links[service]
                host_routes.append(f"{link.host_address}:{port}={host}:{port}")
                inner_routes.append(f"localhost:{port}={link.host_address}:{port}")
            self._start_relay([], host_routes, "relay-host")
            self._start_relay(self.prefix, inner_routes, "relay-namespace")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_relay(self, prefix: list[str], routes: list[str], name: str) -> None:
        relay = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.support.relay", *routes],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=open(self._log_dir / f"{name}.log", "ab"),
        )
        self._relays.append(relay)
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != b"relaying":
            raise RuntimeError(f"{name} did not start; see {self._log_dir / name}.log")

    def cut(self, *services: str) -> None:
        """Every packet on these links dropped, both ways (all links if none named)."""
        self._shape(services, "tbf", "rate", "8bit", "burst", "1", "limit", "1")

    def slow(self, *services: str, rate: str = "400kbit", queue_ms: int = 200) -> None:
        """A slow link: packets wait in a queue of up to `queue_ms` and the overflow is dropped."""
        self._shape(services, "tbf", "rate", rate, "burst", "16kb", "latency", f"{queue_ms}ms")

    def dropped(self, *services: str) -> int:
        """Packets the links' queueing disciplines have dropped, both ends."""
        shown = "".join(
            subprocess.run(
                [*prefix, "tc", "-s", "qdisc", "show", "dev", device],
                capture_output=True,
                text=True,
            ).stdout
            for prefix, device in self._ends(services)
        )
        return sum(int(n) for n in re.findall(r"dropped (\d+)", shown))

    def heal(self, *services: str) -> None:
        for prefix, device in self._ends(services):
            subprocess.run(
                [*prefix, "tc", "qdisc", "del", "dev", device, "root"],
                check=False,
                capture_output=True,
            )

    def _shape(self, services: tuple[str, ...], *qdisc: str) -> None:
        for prefix, device in self._ends(services):
            subprocess.run(
                [*prefix, "tc", "qdisc", "replace", "dev", device, "root", *qdisc],
                check=True,
                capture_output=True,
            )

    def _ends(self, services: tuple[str, ...]) -> list[tuple[list[str], str]]:
        """Both ends of these links (all if none named): what runs a command where the device
        is, and the device."""
        ends = []
        for service in services or SERVICES:
            link = self.links[service]
            ends += [([], link.host_device), (self.prefix, link.namespace_device)]
        return ends

    def __exit__(self, *_: object) -> None:
        for relay in self._relays:
            relay.kill()
            relay.wait()
        # Removing the namespace removes its ends of the veth pairs, and so the pairs.
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
