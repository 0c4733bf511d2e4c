"""The timer scheduler without services: which commands it sends for due runs, how often it
sends them again, and that every replica derives the same command for the same due run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jwt

from schemas.command import Command
from tests.support.commands import SECRET
from worker.service.auth import SYSTEM_ACTOR, Principal, TokenVerifier
from worker.service.scheduler import (
    RESEND_AFTER_SECONDS,
    DueRun,
    TimerKind,
    TimerScheduler,
    timer_command_id,
)

DUE_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def due(kind: TimerKind, n: int, version: int = 3) -> DueRun:
    return DueRun(
        kind,
        101,
        "01BTGNYV6HRNK8K8VKZASZCFP0",
        f"01BTGNYV6HRNK8K8VKZASZCG{n:02d}",
        f"01BTGNYV6HRNK8K8VKZASZCR{n:02d}",
        version,
        DUE_AT,
    )


class Store:
    def __init__(self, *runs: DueRun, lease_free: bool = True) -> None:
        self.runs = list(runs)
        self.lease_free = lease_free

    async def due(self, kind: TimerKind, limit: int) -> list[DueRun]:
        return [r for r in self.runs if r.kind == kind][:limit]

    async def hold_lease(self, holder: str, seconds: float) -> bool:
        return self.lease_free


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[Command, bytes]] = []

    async def send(self, commands: list[Command], authorization: bytes) -> None:
        self.sent.extend((c, authorization) for c in commands)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheduler(store: Store, sink: Sink, clock: Clock | None = None) -> TimerScheduler:
    return TimerScheduler(store, sink, SECRET, "replica-1", clock=clock or Clock())


async def test_each_due_run_becomes_its_timer_command_signed_as_the_system_actor() -> None:
    store, sink = Store(due("start", 1), due("end", 2)), Sink()
    assert await scheduler(store, sink).scan() == 2
    (start, auth), (end, _) = sink.sent
    assert (start.type, end.type) == ("start_scheduled_fielding_run", "end_fielding_run")
    assert start.fielding_run_id == store.runs[0].fielding_run_id and start.if_match == 'W/"3"'
    principal = TokenVerifier(SECRET).verify(auth)
    assert isinstance(principal, Principal) and principal.system
    assert jwt.decode(auth.split()[1], options={"verify_signature": False})["sub"] == str(
        SYSTEM_ACTOR
    )
    assert json.loads(start.model_dump_json())["command_id"] == timer_command_id(
        SECRET, store.runs[0]
    )


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


async def test_a_run_no_longer_due_is_forgotten_and_a_new_version_is_a_new_timer() -> None:
    store, sink = Store(due("end", 1, version=3)), Sink()
    timers = scheduler(store, sink)
    await timers.scan()
    store.runs = [due("end", 1, version=4)]  # a command changed the run; still due
    assert await timers.scan() == 1
    first, second = (c.command_id for c, _ in sink.sent)
    assert first != second


async def test_replicas_derive_the_same_command_and_only_the_lease_holder_sends() -> None:
    run = due("start", 7)
    assert timer_command_id(SECRET, run) == timer_command_id(SECRET, run)
    assert timer_command_id(SECRET, run) != timer_command_id("another-secret", run)
    sink = Sink()
    assert await scheduler(Store(run, lease_free=False), sink).scan() == 0 and sink.sent == []
