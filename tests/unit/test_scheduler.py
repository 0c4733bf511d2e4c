"""The timer scheduler without services: which commands it sends for due runs, how often it
sends them again, how a burst is sent in chunks, and that they carry a signature the worker
accepts and no token."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from schemas.command import Command, RunCommand
from tests.support.commands import SECRET, SYSTEM_SECRET
from worker.service.auth import (
    SYSTEM_PRINCIPAL,
    TIMER_SIGNATURE,
    SystemKey,
    TokenVerifier,
    timer_command_id,
)
from worker.service.scheduler import (
    RESEND_AFTER_SECONDS,
    DueRun,
    Headers,
    TimerKind,
    TimerScheduler,
    fair_shares,
)

DUE_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def due(kind: TimerKind, n: int, version: int = 3, account_id: int = 101) -> DueRun:
    return DueRun(
        kind,
        account_id,
        "01BTGNYV6HRNK8K8VKZASZCFP0",
        f"01BTGNYV6HRNK8K8VKZASZCG{n:04d}"[-26:],
        f"01BTGNYV6HRNK8K8VKZASZCR{n:04d}"[-26:],
        version,
        DUE_AT + timedelta(seconds=n),
    )


class Store:
    def __init__(self, *runs: DueRun, lease_free: bool = True) -> None:
        self.runs = list(runs)
        self.lease_free = lease_free
        self.reads: list[int] = []

    def _due(self, kind: TimerKind) -> dict[int, list[DueRun]]:
        by_account: dict[int, list[DueRun]] = {}
        for run in sorted(self.runs, key=lambda r: (r.due_at, r.fielding_run_id)):
            if run.kind == kind:
                by_account.setdefault(run.account_id, []).append(run)
        return by_account

    async def due_accounts(self, kind: TimerKind) -> dict[int, int]:
        return {account: len(runs) for account, runs in self._due(kind).items()}

    async def due(self, kind: TimerKind, limits: Mapping[int, int]) -> list[DueRun]:
        """What PostgresDueRuns answers: each account's earliest, as many as its limit."""
        by_account = self._due(kind)
        page = [run for account, n in limits.items() for run in by_account.get(account, [])[:n]]
        self.reads.append(len(page))
        return page

    def apply(self, sent: list[tuple[Command, Headers]]) -> None:
        """The worker applied these timers: their runs are no longer due."""
        applied = {command.fielding_run_id for command, _ in sent}  # type: ignore[union-attr]
        self.runs = [r for r in self.runs if r.fielding_run_id not in applied]

    async def hold_lease(self, holder: str, seconds: float) -> bool:
        return self.lease_free


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[Command, Headers]] = []

    async def send(self, commands: list[tuple[Command, Headers]]) -> None:
        self.sent.extend(commands)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheduler(
    store: Store,
    sink: Sink,
    clock: Clock | None = None,
    chunk: int = 100,
) -> TimerScheduler:
    return TimerScheduler(
        store,
        sink,
        SystemKey(SYSTEM_SECRET),
        "replica-1",
        chunk=chunk,
        clock=clock or Clock(),
    )


async def test_each_due_run_becomes_the_timer_the_worker_accepts() -> None:
    store, sink = Store(due("start", 1), due("end", 2)), Sink()
    assert await scheduler(store, sink).scan() == 2
    (start, headers), (end, _) = sink.sent
    assert (start.type, end.type) == ("start_scheduled_fielding_run", "end_fielding_run")
    assert start.fielding_run_id == store.runs[0].fielding_run_id and start.if_match == 'W/"3"'
    verifier = TokenVerifier(SECRET, system_secret=SYSTEM_SECRET)
    assert start.command_id == verifier.timer_command_id(start.fielding_run_id, 3, start.type)
    assert isinstance(start, RunCommand)
    [(name, signature)] = headers
    assert name == TIMER_SIGNATURE
    assert verifier.verify_timer(start, signature) == SYSTEM_PRINCIPAL


async def test_its_commands_carry_no_token() -> None:
    store, sink = Store(*(due("end", n) for n in range(5))), Sink()
    await scheduler(store, sink).scan()
    names = {name for _, headers in sink.sent for name, _ in headers}
    assert names == {TIMER_SIGNATURE}, "no authorization header, nothing good for another command"


async def test_a_due_run_is_sent_again_only_after_a_while_and_less_often_each_time() -> None:
    clock, store, sink = Clock(), Store(due("end", 1)), Sink()
    timers = scheduler(store, sink, clock)
    assert [await timers.scan() for _ in range(3)] == [1, 0, 0]
    clock.now += RESEND_AFTER_SECONDS
    assert await timers.scan() == 1
    clock.now += RESEND_AFTER_SECONDS
    assert await timers.scan() == 0, "the second wait is twice as long"
    clock.now += RESEND_AFTER_SECONDS
    assert await timers.scan() == 1
    assert len({c.command_id for c, _ in sink.sent}) == 1, "always the same command"
    assert len({h[0][1] for _, h in sink.sent}) == 1, "with the same signature"


async def test_a_burst_goes_out_as_fast_as_the_worker_applies_it_a_chunk_at_most() -> None:
    store, sink = Store(*(due("start", n) for n in range(250))), Sink()
    timers = scheduler(store, sink, chunk=100)
    assert await timers.scan() == 100
    assert await timers.scan() == 0, "the first hundred are in the pipeline, not yet applied"
    sent_per_scan = []
    while store.runs:
        store.apply(sink.sent)
        sent_per_scan.append(await timers.scan())
    assert sent_per_scan == [100, 50, 0]
    assert len({c.fielding_run_id for c, _ in sink.sent}) == 250
    assert max(store.reads) <= 100, "never more than a chunk read at once"


async def test_one_accounts_burst_leaves_another_account_its_share_of_each_scan() -> None:
    burst = [due("end", n, account_id=101) for n in range(1000)]
    other = due("end", 5000, account_id=202)  # due after every run of the burst
    store, sink = Store(*burst), Sink()
    timers = scheduler(store, sink, chunk=100)
    assert await timers.scan() == 100
    store.runs.append(other)
    assert await timers.scan() == 1, "the other account's run, while the burst's are in flight"
    assert sink.sent[-1][0].fielding_run_id == other.fielding_run_id  # type: ignore[union-attr]
    store.apply(sink.sent)
    assert await timers.scan() == 100
    in_pipeline = {c.fielding_run_id for c, _ in sink.sent[-100:]}  # type: ignore[union-attr]
    assert len(in_pipeline) == 100 and other.fielding_run_id not in in_pipeline


async def test_a_new_version_of_a_due_run_is_a_new_timer() -> None:
    store, sink = Store(due("end", 1, version=3)), Sink()
    timers = scheduler(store, sink)
    await timers.scan()
    store.runs = [due("end", 1, version=4)]  # a command changed the run; still due
    assert await timers.scan() == 1
    first, second = (c.command_id for c, _ in sink.sent)
    assert first != second


async def test_a_failed_send_is_tried_again_at_the_next_scan() -> None:
    class Failing(Sink):
        failures = 1

        async def send(self, commands: list[tuple[Command, Headers]]) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker away")
            await super().send(commands)

    store, sink = Store(due("end", 1)), Failing()
    timers = scheduler(store, sink)
    with pytest.raises(ConnectionError):
        await timers.scan()
    assert await timers.scan() == 1


async def test_only_the_lease_holder_sends_and_ids_need_the_key() -> None:
    run = due("start", 7)
    ids = {
        timer_command_id(key, run.fielding_run_id, 3, "start_scheduled_fielding_run")
        for key in (SYSTEM_SECRET, "another-secret-of-32-bytes-or-more!!")
    }
    assert len(ids) == 2
    sink = Sink()
    assert await scheduler(Store(run, lease_free=False), sink).scan() == 0 and sink.sent == []


def test_what_one_account_does_not_need_goes_to_the_others() -> None:
    rng = random.Random(7)
    few = {account: 1 for account in range(1, 1001)}
    shares = fair_shares({**few, 5000: 100_000}, 4_000, rng)
    assert shares[5000] == 3_000 and all(shares[a] == 1 for a in few)
    assert fair_shares({1: 10, 2: 10}, 4_000, rng) == {1: 10, 2: 10}
    assert fair_shares({1: 5_000, 2: 5_000}, 4_000, rng) == {1: 2_000, 2: 2_000}


def test_with_more_accounts_than_room_the_ones_left_out_change() -> None:
    rng = random.Random(7)
    due = {account: 1 for account in range(10)}
    served = [set(fair_shares(due, 4, rng)) for _ in range(20)]
    assert all(len(s) == 4 for s in served)
    assert set().union(*served) == set(due), "every account served some time"


async def test_timers_that_are_never_applied_do_not_hold_back_their_accounts_later_ones() -> None:
    clock = Clock()
    stuck = [due("end", n, account_id=101) for n in range(2)]
    others = [due("end", 100 + n, account_id=202) for n in range(2)]
    later = due("end", 50, account_id=101)
    store, sink = Store(*stuck, *others), Sink()
    timers = scheduler(store, sink, clock, chunk=4)
    assert await timers.scan() == 4
    store.runs = [*stuck, later]  # 202's applied; 101's two never are; a later one comes due
    store.runs += [due("end", 200 + n, account_id=303) for n in range(10)]
    clock.now += RESEND_AFTER_SECONDS
    assert await timers.scan() == 4, "101's two again (not applied in 30 s), 303's share"
    for _ in range(2):  # then 101's share reaches past the two that are never applied
        await timers.scan()
    sent = [command.fielding_run_id for command, _ in sink.sent]  # type: ignore[union-attr]
    assert sent.count(later.fielding_run_id) == 1
    assert sent.count(stuck[0].fielding_run_id) == 2, "not sent again before its backoff"
