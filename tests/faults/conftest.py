"""The fault-injection suite: load through real worker processes while things break, then the
invariants of exactly-once-in-effect, checked by read_committed consumers."""

from __future__ import annotations

import asyncio
import json
import random
from bisect import bisect_left
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fielding_statemachine.status import RunStatus
from tests.support.commands import auth_headers, encode
from tests.support.harness import Outputs, expected_state, for_run
from tests.support.kafka import Outgoing, TopicReader
from tests.support.processes import WorkerProcess
from worker.adapters.postgres.runs import FieldingRunRecord, get_run

# What each run is sent, by its index: a lifecycle of one to three commands, each at the
# version the one before leaves (so they succeed when they come in order).
SEQUENCES = [
    ["complete_fielding_run"],
    ["pause_fielding_run", "resume_fielding_run", "complete_fielding_run"],
    ["update_fielding_run", "complete_fielding_run"],
]


@dataclass
class Load:
    """Commands for `runs`: each run gets a short lifecycle of commands in order; some are
    sent twice (an upstream retry), some runs also get a conflicting command on another key (a
    mis-keyed producer)."""

    runs: list[FieldingRunRecord]
    records: list[Outgoing] = field(default_factory=list)
    sent_command_ids: Counter[str] = field(default_factory=Counter)
    # Runs also sent a command on another key: their changes may be decided on two command
    # partitions, whose transactions commit in either order.
    miskeyed: set[str] = field(default_factory=set)

    @classmethod
    def build(
        cls,
        runs: list[FieldingRunRecord],
        seed: int,
        repeat_every: int = 7,
        conflict_every: int = 5,
    ) -> Load:
        rng = random.Random(seed)
        load = cls(runs)
        later = datetime.now(UTC) + timedelta(days=30)
        groups: list[list[tuple[dict[str, Any], bytes]]] = []
        for i, run in enumerate(runs):
            group = []
            for step, kind in enumerate(SEQUENCES[i % len(SEQUENCES)]):
                times = (
                    {"start_fielding_at": later, "end_fielding_at": later + timedelta(days=1)}
                    if kind == "update_fielding_run"
                    else {}
                )
                body = for_run(run, kind, if_match=f'W/"{run.version + step}"', **times)
                group.append((body, run.id.encode()))
                if i % repeat_every == 0:
                    group.append((body, run.id.encode()))
            if i % conflict_every == 0:
                group.append((for_run(run), f"elsewhere-{rng.random()}".encode()))
                load.miskeyed.add(run.id)
            groups.append(group)
        rng.shuffle(groups)  # runs in any order, each run's commands in theirs
        for group in groups:
            for body, key in group:
                load.add(body, key)
        return load

    def add(self, body: dict[str, Any], key: bytes) -> None:
        self.records.append(Outgoing(encode(body), key, auth_headers([101])))
        self.sent_command_ids[body["command_id"]] += 1

    async def send(self, bootstrap: str, topic: str, per_second: float) -> None:
        """Sends every record at `per_second`, through a broker restart if need be: aiokafka's
        sender can die when the broker goes away, failing the records it held (they were not
        written), so those are sent again by a new producer until every record is acknowledged."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        async def started() -> AIOKafkaProducer:
            while True:
                producer = AIOKafkaProducer(
                    bootstrap_servers=bootstrap,
                    enable_idempotence=True,
                    # Longer than a broker restart: a batch the broker wrote but did not
                    # acknowledge, sent again by a new producer, would be a real duplicate.
                    request_timeout_ms=60_000,
                    retry_backoff_ms=200,
                )
                try:
                    await producer.start()
                    return producer
                except KafkaError:
                    await producer.stop()
                    await asyncio.sleep(0.5)

        pending = list(self.records)
        while pending:
            producer = await started()
            sent: list[tuple[Outgoing, asyncio.Future[object]]] = []
            try:
                for record in pending:
                    try:
                        future = await producer.send(
                            topic, record.value, key=record.key, headers=list(record.headers)
                        )
                    except KafkaError:
                        break  # not queued: this and the rest go again
                    sent.append((record, future))
                    await asyncio.sleep(1 / per_second)
                outcomes = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
            finally:
                await producer.stop()
            acknowledged = {
                id(r)
                for (r, _), o in zip(sent, outcomes, strict=True)
                if not isinstance(o, BaseException)
            }
            pending = [r for r in pending if id(r) not in acknowledged]


@dataclass
class Tally:
    commands: int
    results: int
    events: int
    lost: int
    duplicated: int
    states: int = 0

    def __str__(self) -> str:
        return (
            f"commands={self.commands} results={self.results} events={self.events} "
            f"states={self.states} lost={self.lost} duplicated={self.duplicated}"
        )


SUCCESS = {200, 202, 204}


async def check_invariants(
    load: Load,
    outputs: Outputs,
    pool: asyncpg.Pool,
    timeout: float = 180,
    log_dir: Path | None = None,
) -> Tally:
    """No command without its result, nothing twice, and for every run: its version rose
    exactly once per successful command, with exactly one event per rise (versions in order,
    none missing), and its status is what its last event says; and the states topic, read from
    the beginning, holds one state per rise, the latest equal to the store's row
    (`check_states`, which reads the workers' logs in `log_dir`)."""
    total = sum(load.sent_command_ids.values())
    results_records = await outputs.results.read(at_least=total, timeout=timeout, settle=3)
    events_records = await outputs.events.read(at_least=0, settle=1)
    results = outputs.results.values()
    events = outputs.events.values()

    answered = Counter(r["command_id"] for r in results)
    lost = sum((load.sent_command_ids - answered).values())
    duplicated_results = sum((answered - load.sent_command_ids).values())
    assert lost == 0, f"commands without a result: {load.sent_command_ids - answered}"
    assert duplicated_results == 0, f"results counted twice: {answered - load.sent_command_ids}"
    assert len(results_records) == total

    statuses = Counter(r["status"] for r in results)
    assert set(statuses) <= SUCCESS | {412, 422}, statuses
    event_ids = Counter(e["event_id"] for e in events)
    duplicated_events = sum(n - 1 for n in event_ids.values())
    assert duplicated_events == 0, "an event was seen twice"

    # One success per command id (a repeat replays it), by run.
    successes = Counter(
        r["fielding_run_id"]
        for r in {r["command_id"]: r for r in results if r["status"] in SUCCESS}.values()
    )
    events_of: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        events_of.setdefault(event["fielding_run_id"], []).append(event)
    rows = await pool.fetch(
        "SELECT id, status, version FROM fielding_runs WHERE id = ANY($1::text[])",
        [r.id for r in load.runs],
    )
    state = {row["id"]: row for row in rows}
    for run in load.runs:
        row, announced = state[run.id], events_of.get(run.id, [])
        rises = row["version"] - run.version
        assert rises == successes[run.id], (
            f"run {run.id}: version rose {rises}, successes {successes[run.id]}"
        )
        assert sorted(e["fielding_run_version"] for e in announced) == list(
            range(run.version + 1, row["version"] + 1)
        ), f"run {run.id}: events {[e['fielding_run_version'] for e in announced]}"
        if announced:
            last = max(announced, key=lambda e: e["fielding_run_version"])
            assert last["status"] == row["status"]
    assert len(events_records) == sum(successes.values())
    states = await check_states(load, outputs, pool, log_dir)
    return Tally(
        total,
        len(results_records),
        len(events_records),
        lost,
        duplicated_results + duplicated_events,
        states,
    )


async def check_states(
    load: Load, outputs: Outputs, pool: asyncpg.Pool, log_dir: Path | None
) -> int:
    """The states topic read from the beginning (read_committed) against the store: for every
    run, exactly one state per version rise (none twice), and the latest equal to the store's
    row; for a run whose commands were all keyed by it, also the last in the log, so that
    compaction keeps it. Returns the number of state records.

    One gap is by design: where the healer aborted a hanging transaction, a state it hid is not
    published again when a later state of its run stands in the log (its copy would follow that
    one, and compaction would keep the older). A missing version passes only so: its record is
    hidden, inside a transaction a worker's log in `log_dir` says it aborted as hanging, and a
    later version of its run is visible."""
    records = await outputs.states.read(at_least=0, settle=1)
    states_of: dict[str, list[dict[str, Any]]] = {}
    for state in outputs.states.values():  # one run's states are in one partition, in order
        states_of.setdefault(state["id"], []).append(state)
    hidden: dict[tuple[str, int], tuple[int, int]] | None = None  # read once a version is missing
    healed = healed_transactions(log_dir, outputs.states.topic)
    for run in load.runs:
        stored = await get_run(pool, run.id)
        assert stored is not None
        states = states_of.get(run.id, [])
        versions = [s["version"] for s in states]
        due = range(run.version + 1, stored.version + 1)
        shown = f"run {run.id}: states {versions}, store at {stored.version}"
        assert len(versions) == len(set(versions)) and set(versions) <= set(due), shown
        for version in (v for v in due if v not in versions):
            hidden = await hidden_states(outputs.states) if hidden is None else hidden
            partition, offset = hidden.get((run.id, version), (-1, -1))
            aborted = any(p == partition and start <= offset for p, start in healed)
            superseded = any(v > version for v in versions)
            assert aborted and superseded, f"{shown}: {version} lost (healed: {healed})"
        if states:
            latest = max(states, key=lambda s: s["version"])
            assert latest == expected_state(stored), f"run {run.id}: {latest} vs the store"
            if run.id not in load.miskeyed:
                assert versions == sorted(versions), f"run {run.id}: states out of order"
    return len(records)


async def hidden_states(visible: TopicReader) -> dict[tuple[str, int], tuple[int, int]]:
    """Where each state of the log stands, aborted ones too: (run, version) -> (partition,
    offset)."""
    reader = TopicReader(visible.bootstrap, visible.topic, hidden_too=True)
    try:
        await reader.read(at_least=0, settle=1)
        return {
            (state["id"], state["version"]): (record.partition, record.offset)
            for record in reader.records
            if record.value is not None
            for state in [json.loads(record.value)]
        }
    finally:
        await reader.close()


def healed_transactions(log_dir: Path | None, topic: str) -> list[tuple[int, int]]:
    """(partition, first offset) of every transaction on `topic` the workers' logs in `log_dir`
    say they aborted as hanging."""
    healed = []
    for log in sorted(log_dir.glob("*.log")) if log_dir is not None else []:
        for line in log.read_text(errors="replace").splitlines():
            if '"hanging transaction aborted"' not in line:
                continue
            entry = json.loads(line)
            if entry.get("topic") == topic:
                healed.append((entry["partition"], entry["start_offset"]))
    return healed


@pytest.fixture
def fault_log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the test, for fixtures that report more on failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def worker_processes(
    fault_log_dir: Path, request: pytest.FixtureRequest
) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    call = getattr(request.node, "report_call", None)
    if call is not None and call.failed:
        # What the workers said, for a failure seen only in CI's output.
        for worker in started:
            print(f"\n--- {worker.name} (alive={worker.alive()}): its own log lines, last 40")
            print("\n".join(worker.own_log_lines()[-40:]))
    for worker in started:
        if worker.alive():
            worker.kill()


@pytest.fixture
async def live_runs(make_run: Any) -> AsyncIterator[Any]:
    async def make(count: int) -> list[FieldingRunRecord]:
        return [await make_run(RunStatus.LIVE) for _ in range(count)]

    yield make


def report(name: str, tally: Tally, faults: int, runs: int = 1, recovered: str = "") -> None:
    print(f"\nFAULTS {name}: runs={runs} faults={faults} {tally} {recovered}".rstrip())


@dataclass(frozen=True)
class Fault:
    """When a fault began and ended (wall clock, seconds), as the test saw it."""

    started: float
    ended: float


def rate(stamps: list[float], since: float, until: float) -> float:
    """Per second, the sorted timestamps in [since, until)."""
    return (bisect_left(stamps, until) - bisect_left(stamps, since)) / (until - since)


def stamps_of(reader: TopicReader) -> list[float]:
    """The records' own timestamps, in seconds, sorted (a result's is set by the worker when
    it publishes it, a command's by the load's producer)."""
    return sorted(r.timestamp / 1000 for r in reader.records)


@dataclass(frozen=True)
class Recovery:
    """How a fault showed in the flow of results, measured against the rate commands were
    offered at before it: seconds the flow was under 90% of that from the fault's start until
    it was back for good, and how long after the fault's end it was back for good."""

    below_s: float
    after_end_s: float

    def __str__(self) -> str:
        return f"{self.below_s}/{self.after_end_s}"


def recovery(
    results: list[float],
    fault: Fault,
    level: float,
    horizon: float,
    window: float = 2.0,
    hold: float = 3.0,
    step: float = 0.1,
) -> Recovery | None:
    """Slides a `window` over the results' timestamps in `step`s, from the fault's start to
    `horizon` (the next fault, or the load's end): back for good is the first moment after the
    fault's end from which every window for `hold` seconds has at least 90% of `level`. None if
    the flow is not back for good before the horizon."""
    count = int((horizon - window - fault.started) / step)
    starts = [fault.started + i * step for i in range(max(0, count))]
    good = [rate(results, t, t + window) >= 0.9 * level for t in starts]
    run = int(hold / step)
    for i, t in enumerate(starts):
        if t >= fault.ended and i + run <= len(good) and all(good[i : i + run]):
            below = sum(1 for g in good[:i] if not g) * step
            return Recovery(round(below, 1), round(t - fault.ended, 1))
    return None
