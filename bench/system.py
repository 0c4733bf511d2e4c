"""Readings of the machine and of its processes, from /proc: memory, CPU time, busy cores,
and which processes are the broker and Postgres."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status in MB: VmRSS now, VmHWM at its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds_of(pid: int) -> float:
    """CPU time a process's threads have had so far, in nanosecond resolution (schedstat);
    threads that have exited are not counted, which the worker's never do mid-run."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(fields)
    return total - fields[3] - fields[4], total  # idle and iowait are not busy


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many of the machine's cores were busy between two cpu_jiffies() readings, by
    anything: the worker, the broker, Postgres and the bench itself."""
    return (after[0] - before[0]) / max(1, after[1] - before[1]) * (os.cpu_count() or 1)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessStat:
    """The fields of /proc/<pid>/stat that the bench reads; times in clock ticks."""

    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int  # of its children that have exited and been waited for
    cstime: int


def parse_stat(text: str) -> ProcessStat:
    """/proc/<pid>/stat: the name sits in parentheses and may hold spaces and parentheses
    itself, so the fields are counted from the last ')'."""
    name, rest = text[text.index("(") + 1 :].rsplit(")", 1)
    fields = rest.split()  # fields[0] is the state, the stat's 3rd field
    return ProcessStat(
        comm=name,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def process_table() -> dict[int, ProcessStat]:
    """Every process's stat, by pid (those that end while being read are left out)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError):
                continue
    return table


def tree_cpu_seconds(root: int, table: dict[int, ProcessStat] | None = None) -> float:
    """CPU seconds that `root` and its descendants have had so far: the live ones' own time
    and what each has been credited for its exited children. A Postgres backend that ends
    mid-reading moves from the first to the second, so the difference of two readings counts
    every process that ran between them, once."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    ticks, pending = 0, [root]
    while pending:
        pid = pending.pop()
        if (found := table.get(pid)) is not None:
            ticks += found.utime + found.stime + found.cutime + found.cstime
            pending += children.get(pid, [])
    return ticks / CLOCK_TICKS


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def local_services() -> ModuleType:
    """scripts/services.py, for where it keeps what it starts (the broker's pid file, the
    Postgres cluster, the tools it downloads)."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("local_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _only(found: list[int], what: str) -> int:
    if len(found) != 1:
        raise RuntimeError(f"{what}: found {len(found)} such processes ({found}), need exactly one")
    return found[0]


def broker_pid(services: ModuleType) -> int:
    """The Kafka broker's JVM: from scripts/services.py's pid file, else the one process
    whose main class is kafka.Kafka (a broker started another way)."""
    pid: int | None = services.read_pid(Path(services.KAFKA_DIR) / "broker.pid")
    if pid is not None:
        return pid
    found = []
    for candidate in process_table():
        try:
            if "kafka.Kafka" in command_line(candidate):
                found.append(candidate)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return _only(found, "the Kafka broker (a java process running kafka.Kafka)")


def postmaster_pid(services: ModuleType) -> int:
    """Postgres's postmaster, the parent of every process of its cluster: from the cluster's
    postmaster.pid when scripts/services.py started it, else the one process named postgres
    whose parent is not."""
    table = process_table()
    try:
        pid_file = Path(services.PG_DIR) / "data" / "postmaster.pid"
        pid = int(pid_file.read_text().split("\n", 1)[0])
        if (stat := table.get(pid)) is not None and stat.comm == "postgres":
            return pid
    except (FileNotFoundError, PermissionError, ValueError):
        pass
    return _only(postmasters(table), "Postgres's postmaster")


def postmasters(table: dict[int, ProcessStat]) -> list[int]:
    """The processes named postgres whose parent is not: each cluster's postmaster (its
    backends and background processes are its children)."""
    return [
        pid
        for pid, stat in table.items()
        if stat.comm == "postgres"
        and (parent := table.get(stat.ppid)) is not None
        and parent.comm != "postgres"
    ]
