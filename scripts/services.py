"""Starts and stops real Apache Kafka (KRaft, one node) and Postgres on this machine.

    python scripts/services.py up [kafka|postgres]     # idempotent: starts what is not running, waits until ready
    python scripts/services.py down [kafka|postgres]   # stops what `up` started
    python scripts/services.py kill [kafka|postgres]   # as a crash would: SIGKILL, `immediate`
    python scripts/services.py status
    python scripts/services.py tool CLASS [ARGS...]    # a Kafka tool's main class, e.g.
        org.apache.kafka.tools.TransactionsCommand --bootstrap-server localhost:9092 list

Kafka is assembled from Maven Central artifacts (scripts/kafka/pom.xml) into .local/kafka/libs;
Postgres is Debian's `postgresql` package (installed with apt-get when missing) running a
private cluster in .local/postgres. Everything lives under .local/, which git ignores.

LOCAL_KAFKA_JIT chooses the broker's JIT: `fast-start` (the default: C1 only, the broker is up
in a few seconds, which is all the tests need) or `optimising` (the JVM's own tiered
compilation with C2, as a deployment runs it; `make bench` asks for it). Set explicitly, it
makes `up` restart a broker of this script's that runs with the other one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("FIELDING_LOCAL_DIR", ROOT / ".local"))
KAFKA_DIR = LOCAL / "kafka"
PG_DIR = LOCAL / "postgres"
KAFKA_PORT = int(os.environ.get("LOCAL_KAFKA_PORT", "9092"))
CONTROLLER_PORT = int(os.environ.get("LOCAL_KAFKA_CONTROLLER_PORT", "9093"))
PG_PORT = int(os.environ.get("LOCAL_POSTGRES_PORT", "5432"))
PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
DB_USER = DB_PASSWORD = DB_NAME = "fielding"
FAST_START, OPTIMISING = "fast-start", "optimising"
JIT_CHOICES = (FAST_START, OPTIMISING)
# C1 only: the optimising compiler's warm-up would cost each test run's broker seconds of CPU.
FAST_START_FLAG = "-XX:TieredStopAtLevel=1"


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


# --- Kafka -----------------------------------------------------------------------------------


def kafka_libs() -> Path:
    libs = KAFKA_DIR / "libs"
    stamp = libs / ".complete"
    pom = ROOT / "scripts" / "kafka" / "pom.xml"
    if stamp.exists() and stamp.read_text() == pom.read_text():
        return libs
    log("assembling Apache Kafka from Maven Central (cached in ~/.m2 and .local/kafka/libs)")
    shutil.rmtree(libs, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    stamp.write_text(pom.read_text())
    return libs


def kafka_jit() -> str | None:
    """The broker's JIT asked for in LOCAL_KAFKA_JIT, or None when it is not set."""
    jit = os.environ.get("LOCAL_KAFKA_JIT") or None
    if jit is not None and jit not in JIT_CHOICES:
        raise SystemExit(f"LOCAL_KAFKA_JIT={jit!r}: one of {', '.join(JIT_CHOICES)}")
    return jit


def jit_of(command: list[str]) -> str:
    """Which JIT a java command line runs with: the broker's, read from /proc/<pid>/cmdline."""
    return FAST_START if FAST_START_FLAG in command else OPTIMISING


def running_command(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def java_command(
    libs: Path, main_class: str, *args: str, heap: str = "768m", jit: str = FAST_START
) -> list[str]:
    return [
        "java",
        "-Xms256m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        *([FAST_START_FLAG] if jit == FAST_START else []),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka' / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={KAFKA_DIR}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def kafka_up() -> None:
    pid_file = KAFKA_DIR / "broker.pid"
    wanted = kafka_jit()
    pid = read_pid(pid_file)
    if pid is not None and wanted is not None and jit_of(running_command(pid)) != wanted:
        log(f"restarting kafka with the {wanted} JIT (LOCAL_KAFKA_JIT)")
        kafka_down()
    elif pid is not None or port_open(KAFKA_PORT):
        if pid is None and wanted is not None:
            log(f"kafka on localhost:{KAFKA_PORT} was not started here: its JIT is left as it is")
        log(f"kafka already running on localhost:{KAFKA_PORT}")
        return
    libs = kafka_libs()
    data = KAFKA_DIR / "data"
    properties = KAFKA_DIR / "server.properties"
    template = (ROOT / "scripts" / "kafka" / "server.properties.in").read_text()
    properties.write_text(
        template.replace("@KAFKA_PORT@", str(KAFKA_PORT))
        .replace("@CONTROLLER_PORT@", str(CONTROLLER_PORT))
        .replace("@DATA_DIR@", str(data))
    )
    if not (data / "meta.properties").exists():
        data.mkdir(parents=True, exist_ok=True)
        log("formatting KRaft storage")
        subprocess.run(
            java_command(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                _kraft_cluster_id(),
                "-c",
                str(properties),
                heap="256m",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    jit = wanted or FAST_START
    log(f"starting kafka broker ({jit} JIT)")
    with open(KAFKA_DIR / "broker.out", "ab") as out:
        process = subprocess.Popen(
            java_command(libs, "kafka.Kafka", str(properties), jit=jit),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))


def _kraft_cluster_id() -> str:
    """A KRaft cluster id is a base64url-encoded UUID without padding (22 characters). Like
    Kafka's own Uuid.randomUuid, never one that starts with '-': the storage tool would read
    it as an option (one format in 64 failed so)."""
    import base64

    while (
        cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    ).startswith("-"):
        pass
    return cluster_id


async def _kafka_ready(timeout: float) -> None:
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "connection refused" until it is up

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"localhost:{KAFKA_PORT}", request_timeout_ms=5000
        )
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as error:
            last_error = error
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise TimeoutError(
        f"kafka not ready after {timeout}s: {last_error!r}; see {KAFKA_DIR}/broker.log"
    )


async def _create_topics() -> None:
    from worker.bootstrap import create_topics
    from worker.settings import Settings

    await create_topics(Settings(kafka_bootstrap_servers=f"localhost:{KAFKA_PORT}"))


def kafka_down() -> None:
    _stop(KAFKA_DIR / "broker.pid", "kafka")


def kafka_kill() -> None:
    """SIGKILL, as a lost machine: open transactions stay open and the log is recovered on the
    next start."""
    pid_file = KAFKA_DIR / "broker.pid"
    pid = read_pid(pid_file)
    if pid is None:
        if port_open(KAFKA_PORT):  # a kill that does nothing would pass a fault test unfaulted
            raise SystemExit(
                f"kafka on localhost:{KAFKA_PORT} was not started from this checkout "
                f"({pid_file} names no live broker); stop it where it was started"
            )
        log("kafka not running")
        return
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    # The JVM's main thread can be a zombie while its other threads still exit and its socket
    # still listens: a start then would find the port taken and wait on a broker that is going.
    while _alive(pid) or port_open(KAFKA_PORT):
        if time.monotonic() > deadline:
            raise SystemExit(f"kafka (pid {pid}) still running 30 s after SIGKILL")
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    log("kafka killed")


# --- Postgres --------------------------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; the package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def postgres_install() -> None:
    if (PG_BIN / "postgres").exists():
        return
    log("installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", f"postgresql-{PG_VERSION}"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def postgres_up() -> None:
    data = PG_DIR / "data"
    if port_open(PG_PORT):
        log(f"postgres already running on localhost:{PG_PORT}")
        return
    postgres_install()
    PG_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(PG_DIR, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        log("creating a private postgres cluster")
        password_file = PG_DIR / "pwfile"
        password_file.write_text(DB_PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    DB_USER,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {PG_PORT}\nlisten_addresses = 'localhost'\n"
                f"unix_socket_directories = '{PG_DIR}'\nmax_connections = 200\n"
                "shared_buffers = 256MB\nfsync = on\nsynchronous_commit = on\n"
            )
    log("starting postgres")
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(PG_DIR / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    exists = subprocess.run(
        [
            str(PG_BIN / "psql"),
            "-h",
            str(PG_DIR),
            "-p",
            str(PG_PORT),
            "-U",
            DB_USER,
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            [
                str(PG_BIN / "createdb"),
                "-h",
                str(PG_DIR),
                "-p",
                str(PG_PORT),
                "-U",
                DB_USER,
                DB_NAME,
            ],
            check=True,
        )


def postgres_down() -> None:
    data = PG_DIR / "data"
    if not (data / "postmaster.pid").exists():
        log("postgres not running")
        return
    subprocess.run(
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        check=False,
        stdout=subprocess.DEVNULL,
    )
    log("postgres stopped")


def postgres_kill() -> None:
    """`immediate` shutdown: every backend quits at once, no checkpoint; the next start runs
    crash recovery from the WAL."""
    data = PG_DIR / "data"
    if not (data / "postmaster.pid").exists():
        if port_open(PG_PORT):  # a kill that does nothing would pass a fault test unfaulted
            raise SystemExit(
                f"postgres on localhost:{PG_PORT} was not started from this checkout ({data} "
                "is not running); stop it where it was started"
            )
        log("postgres not running")
        return
    subprocess.run(
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log("postgres stopped (immediate)")


# --- common ----------------------------------------------------------------------------------


def _stop(pid_file: Path, name: str) -> None:
    pid = read_pid(pid_file)
    if pid is None:
        log(f"{name} not running")
        return
    os.killpg(pid, signal.SIGTERM)
    for _ in range(300):
        if read_pid(pid_file) is None:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    log(f"{name} stopped")


def _alive(pid: int) -> bool:
    """Running and not a zombie (a killed child of ours stays in the table until reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def up(only: str | None = None) -> None:
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if only in (None, "kafka"):
        kafka_up()  # the broker boots in the background while Postgres starts
    if only in (None, "postgres"):
        postgres_up()
    if only in (None, "kafka"):
        asyncio.run(_kafka_ready(timeout=120))
        asyncio.run(_create_topics())
    log(
        f"ready in {time.monotonic() - started:.1f}s: kafka localhost:{KAFKA_PORT}, "
        f"postgres postgresql://{DB_USER}:{DB_PASSWORD}@localhost:{PG_PORT}/{DB_NAME}"
    )


def down(only: str | None = None) -> None:
    if only in (None, "kafka"):
        kafka_down()
    if only in (None, "postgres"):
        postgres_down()


def kill(only: str | None = None) -> None:
    if only in (None, "kafka"):
        kafka_kill()
    if only in (None, "postgres"):
        postgres_kill()


def status() -> None:
    print(f"kafka    localhost:{KAFKA_PORT}  {'up' if port_open(KAFKA_PORT) else 'down'}")
    print(f"postgres localhost:{PG_PORT}  {'up' if port_open(PG_PORT) else 'down'}")


def tool(main_class: str, *args: str) -> int:
    """Runs one of Kafka's command-line tools (kafka-transactions.sh, kafka-dump-log.sh, ...)
    by its main class, on the broker's classpath."""
    command = java_command(kafka_libs(), main_class, *args, heap="256m")
    return subprocess.run(command, check=False).returncode


def main() -> None:
    if sys.argv[1:2] == ["tool"]:
        if len(sys.argv) < 3:
            raise SystemExit("usage: services.py tool CLASS [ARGS...]")
        raise SystemExit(tool(sys.argv[2], *sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down", "kill", "status"])
    parser.add_argument("service", nargs="?", choices=["kafka", "postgres"], help="default: both")
    args = parser.parse_args()
    if args.action == "status":
        status()
    else:
        {"up": up, "down": down, "kill": kill}[args.action](args.service)


if __name__ == "__main__":
    main()
