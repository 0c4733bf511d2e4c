"""Time-driven transitions: a scheduled run goes live at its start, a live or paused one is
completed at its end.

A scheduler in each replica turns due runs into commands on the commands topic
(`start_scheduled_fielding_run`, `end_fielding_run`), which then go through the same pipeline,
checks and exactly-once publishing as every other command. A timer command's `command_id` is
derived from the run, its version and its type with the system key (`timer_command_id`), so
replicas that both see a due run send the same command, idempotency makes it one change and
one event, and no one else can take the id first. It carries no token, only a signature of
itself made with the same key (`SystemKey.sign`): nothing on the topic is good for any other
command. It carries the run's version as `if_match`,
so it loses to a concurrent command the way commands lose to each other, and a later scan
sends the timer for the new version if the run is still due.

One replica at a time scans (a lease in the store, renewed as it goes): others stand by. A
replica that freezes holding it loses it when it expires; should it wake and send too, the
duplicate is replayed, not applied.

Accounts share each scan: it reads at most CHUNK due runs of each kind, split among the
accounts that have some so that none gets more than an even share unless the others need less
(`fair_shares`), each account's earliest first. A timer sent and not yet applied stays in its
account's share until the worker applies it, so an account has at most its share in the
pipeline at once: a burst of 100,000 due runs of one account goes out as fast as the worker
applies them, and another account's due run waits behind at most a share, not behind the burst
(docs/decisions/fair-timers.md). An account whose earliest timers are not applied within 30 s
(refused for good, or on a partition that is not consumed) gets that many more the next scan,
so they do not hold back its later ones. While scans find timers to send they come every
BUSY_INTERVAL_SECONDS. A timer not yet applied is sent again after 30 s, then 60 s, and so on
up to every 10 minutes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from fielding_statemachine.transitions import RunEvent
from schemas.command import Command, RunCommand, new_command
from schemas.types import etag_of
from worker.service.auth import TIMER_SIGNATURE, SystemKey
from worker.service.catalogue import system_command_for
from worker.service.cooperative import take_turn

log = logging.getLogger(__name__)

TimerKind = Literal["start", "end"]
TIMER_TYPES: dict[TimerKind, str] = {
    "start": system_command_for(RunEvent.START_TIME_REACHED),
    "end": system_command_for(RunEvent.END_TIME_REACHED),
}
CHUNK = 4_000
BUSY_INTERVAL_SECONDS = 0.2
RESEND_AFTER_SECONDS = 30.0
RESEND_AT_MOST_EVERY_SECONDS = 600.0
LEASE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class DueRun:
    kind: TimerKind
    account_id: int
    project_id: str
    target_group_id: str
    fielding_run_id: str
    version: int
    due_at: datetime

    @property
    def timer(self) -> tuple[TimerKind, str, int]:
        """The timer this due run needs: one per kind, run and version."""
        return self.kind, self.fielding_run_id, self.version


class DueRuns(Protocol):
    async def due_accounts(self, kind: TimerKind) -> dict[int, int]:
        """The accounts with runs whose `kind` time has come (in the store's clock), and how
        many each has."""
        ...

    async def due(self, kind: TimerKind, limits: Mapping[int, int]) -> list[DueRun]:
        """The earliest `limits[account]` due runs of `kind` of each account, in (time, id)
        order within each account."""
        ...

    async def hold_lease(self, holder: str, seconds: float) -> bool:
        """Takes or renews the scheduler's lease for `holder`; False while another holds it."""
        ...


Headers = list[tuple[str, bytes]]


class CommandSink(Protocol):
    async def send(self, commands: list[tuple[Command, Headers]]) -> None:
        """Produces the commands, each with its headers, to the commands topic (each keyed by
        its run)."""
        ...


@dataclass
class _Sent:
    next_at: float
    interval: float


def fair_shares(due: Mapping[int, int], capacity: int, rng: random.Random) -> dict[int, int]:
    """How many of its due runs each account gets of `capacity`: the least demanding first,
    none more than an even share of what is left, so what one account does not need goes to
    the others (max-min fairness). With more accounts than capacity, those left out this time
    are drawn at random among equals, so none is left out every time."""
    accounts = list(due)
    rng.shuffle(accounts)
    accounts.sort(key=due.__getitem__)  # stable: equals stay shuffled
    shares: dict[int, int] = {}
    left = capacity
    for served, account in enumerate(accounts):
        if left <= 0:
            break
        share = min(due[account], max(1, left // (len(accounts) - served)))
        shares[account] = share
        left -= share
    return shares


def in_turns(runs: list[DueRun]) -> list[DueRun]:
    """Every account's earliest due run, then every account's second, and so on."""
    turn: Counter[int] = Counter()
    ordered = []
    for run in sorted(runs, key=lambda r: (r.due_at, r.fielding_run_id)):
        ordered.append((turn[run.account_id], run))
        turn[run.account_id] += 1
    ordered.sort(key=lambda t: (t[0], t[1].due_at, t[1].fielding_run_id))
    return [run for _, run in ordered]


class TimerScheduler:
    def __init__(
        self,
        due_runs: DueRuns,
        sink: CommandSink,
        key: SystemKey,
        holder: str,
        *,
        interval_seconds: float = 1.0,
        chunk: int = CHUNK,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._due_runs = due_runs
        self._sink = sink
        self._key = key
        self._holder = holder
        self._interval = interval_seconds
        self._chunk = chunk
        self._clock = clock
        self._rng = rng or random.Random()
        self._sent: dict[tuple[TimerKind, str, int], _Sent] = {}
        # Per kind, the accounts whose timers in the last scan's share were not applied within
        # RESEND_AFTER_SECONDS, and how many: read past them next time.
        self._stuck: dict[TimerKind, Counter[int]] = {kind: Counter() for kind in TIMER_TYPES}
        self._forgotten_at = 0.0
        self._holding = False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sent = 0
            try:
                sent = await self.scan()
            except Exception:  # the store or the broker away: try again next round
                log.warning("timer scan failed", exc_info=True)
            # Timers went out: more may follow as soon as the worker applies them.
            wait = min(self._interval, BUSY_INTERVAL_SECONDS) if sent else self._interval
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass

    async def scan(self) -> int:
        """One round: sends the timer commands due next; returns how many were sent."""
        # A replica that stops renewing (killed, frozen) gives way to another within seconds.
        lease = max(LEASE_SECONDS, self._interval * 5)
        if not await self._due_runs.hold_lease(self._holder, lease):
            if self._holding:
                log.info("timer scheduler lost its lease", extra={"holder": self._holder})
            self._holding = False
            self._sent.clear()  # another replica scans; start afresh should this one take over
            self._stuck = {kind: Counter() for kind in TIMER_TYPES}
            return 0
        if not self._holding:
            log.info("timer scheduler took the lease", extra={"holder": self._holder})
            self._holding = True
        now = self._clock()
        self._forget_old(now)
        sent = 0
        for kind in TIMER_TYPES:
            due = await self._due_runs.due_accounts(kind)
            if not due:
                self._stuck[kind].clear()
                continue
            shares = fair_shares(due, self._chunk, self._rng)
            stuck = self._stuck[kind]
            limits = {a: min(due[a], share + stuck[a]) for a, share in shares.items()}
            runs = in_turns(await self._due_runs.due(kind, limits))
            sent += await self._send_due(kind, runs, now)
        return sent

    async def _send_due(self, kind: TimerKind, due: list[DueRun], now: float) -> int:
        commands: list[tuple[Command, Headers]] = []
        resent: dict[tuple[TimerKind, str, int], _Sent] = {}
        stuck: Counter[int] = Counter()
        for done, run in enumerate(due):
            await take_turn(done)
            before = self._sent.get(run.timer)
            if before is not None and before.interval > RESEND_AFTER_SECONDS:
                stuck[run.account_id] += 1  # sent twice at least, still due
            if before is not None and before.next_at > now:
                continue  # in the pipeline: not sent again until its resend time
            command_type = TIMER_TYPES[run.kind]
            command_id = self._key.timer_command_id(run.fielding_run_id, run.version, command_type)
            interval = (
                min(RESEND_AT_MOST_EVERY_SECONDS, before.interval * 2)
                if before
                else RESEND_AFTER_SECONDS
            )
            command = self._command(run, command_type, command_id)
            assert isinstance(command, RunCommand)  # a timer addresses one run
            commands.append((command, [(TIMER_SIGNATURE, self._key.sign(command))]))
            resent[run.timer] = _Sent(now + interval, interval)
        if commands:
            await self._sink.send(commands)
            self._sent.update(resent)  # only once sent: a failed send is tried next round
            log.info("timer commands sent", extra={"count": len(commands)})
        self._stuck[kind] = stuck
        return len(commands)

    def _forget_old(self, now: float) -> None:
        """Timers whose resend time is long past are of runs no longer due (or whose timer was
        applied): they are dropped, so memory follows the runs that are due. At most every
        RESEND_AFTER_SECONDS: a scan comes every 0.2 s while busy."""
        if len(self._sent) > 2 * self._chunk and now - self._forgotten_at > RESEND_AFTER_SECONDS:
            self._forgotten_at = now
            self._sent = {
                k: v
                for k, v in self._sent.items()
                if v.next_at > now - RESEND_AT_MOST_EVERY_SECONDS
            }

    @staticmethod
    def _command(run: DueRun, command_type: str, command_id: str) -> Command:
        return new_command(
            command_type,
            command_id=command_id,
            account_id=run.account_id,
            project_id=run.project_id,
            target_group_id=run.target_group_id,
            fielding_run_id=run.fielding_run_id,
            if_match=etag_of(run.version),
        )
