"""Time-driven transitions: a scheduled run goes live at its start, a live or paused one is
completed at its end.

A scheduler in each replica turns due runs into commands on the commands topic
(`start_scheduled_fielding_run`, `end_fielding_run`), which then go through the same pipeline,
checks and exactly-once publishing as every other command. A timer command's `command_id` is
derived from the run, its version and the transition (keyed with the worker's system secret, so
no one else can predict it and take the id first): replicas that both see a due run send the
same command, and idempotency makes it one change and one event. It carries the run's version
as `if_match`, so it loses to a concurrent command the way commands lose to each other, and
the next scan sends the timer for the new version if the run is still due.

One replica at a time scans (a lease in the store, renewed every scan): others stand by. A
replica that freezes holding it loses it when it expires; should it wake and send too, the
duplicate is replayed, not applied. A due run whose command is not yet applied is sent again
after 30 s, then 60 s, and so on up to 10 minutes, so a stopped pipeline is not flooded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from schemas.command import Command, new_command
from schemas.types import etag_of
from worker.service.auth import SYSTEM_ACTOR, TokenIssuer

log = logging.getLogger(__name__)

TimerKind = Literal["start", "end"]
COMMAND_TYPES: dict[TimerKind, str] = {
    "start": "start_scheduled_fielding_run",
    "end": "end_fielding_run",
}
RESEND_AFTER_SECONDS = 30.0
RESEND_AT_MOST_EVERY_SECONDS = 600.0
TOKEN_LIFETIME_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class DueRun:
    kind: TimerKind
    account_id: int
    project_id: str
    target_group_id: str
    fielding_run_id: str
    version: int
    due_at: datetime


class DueRuns(Protocol):
    async def due(self, kind: TimerKind, limit: int) -> list[DueRun]:
        """Runs whose `kind` time has come (in the store's clock), oldest first."""
        ...

    async def hold_lease(self, holder: str, seconds: float) -> bool:
        """Takes or renews the scheduler's lease for `holder`; False while another holds it."""
        ...


class CommandSink(Protocol):
    async def send(self, commands: list[Command], authorization: bytes) -> None:
        """Produces the commands to the commands topic (each keyed by its run)."""
        ...


def timer_command_id(secret: str, run: DueRun) -> str:
    """The same for every replica that sees this run due at this version; unknowable without
    the secret."""
    message = f"{run.fielding_run_id}:{run.version}:{run.kind}".encode()
    return "timer-" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


@dataclass
class _Sent:
    next_at: float
    interval: float


class TimerScheduler:
    def __init__(
        self,
        due_runs: DueRuns,
        sink: CommandSink,
        system_secret: str,
        holder: str,
        *,
        interval_seconds: float = 1.0,
        most_per_scan: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._due_runs = due_runs
        self._sink = sink
        self._secret = system_secret
        self._issuer = TokenIssuer(system_secret)
        self._holder = holder
        self._interval = interval_seconds
        self._most = most_per_scan
        self._clock = clock
        self._sent: dict[str, _Sent] = {}
        self._token: tuple[bytes, float] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.scan()
            except Exception:  # the store or the broker away: try again next round
                log.warning("timer scan failed", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), self._interval)
            except TimeoutError:
                pass

    async def scan(self) -> int:
        """One round: sends the timer commands now due; returns how many were sent."""
        # A replica that stops renewing (killed, frozen) gives way to another within seconds.
        if not await self._due_runs.hold_lease(self._holder, max(5.0, self._interval * 5)):
            self._sent.clear()  # another replica scans; start afresh should this one take over
            return 0
        due = [
            *await self._due_runs.due("start", self._most),
            *await self._due_runs.due("end", self._most),
        ]
        now = self._clock()
        still_due: dict[str, _Sent] = {}
        to_send: list[Command] = []
        for run in due:
            command_id = timer_command_id(self._secret, run)
            sent = self._sent.get(command_id)
            if sent is None or sent.next_at <= now:
                interval = (
                    min(RESEND_AT_MOST_EVERY_SECONDS, sent.interval * 2)
                    if sent
                    else RESEND_AFTER_SECONDS
                )
                to_send.append(self._command(run, command_id))
                sent = _Sent(now + interval, interval)
            still_due[command_id] = sent
        self._sent = still_due  # runs no longer due are forgotten
        if to_send:
            await self._sink.send(to_send, self._authorization(now))
            log.info("timer commands sent", extra={"count": len(to_send)})
        return len(to_send)

    def _command(self, run: DueRun, command_id: str) -> Command:
        return new_command(
            COMMAND_TYPES[run.kind],
            command_id=command_id,
            account_id=run.account_id,
            project_id=run.project_id,
            target_group_id=run.target_group_id,
            fielding_run_id=run.fielding_run_id,
            if_match=etag_of(run.version),
        )

    def _authorization(self, now: float) -> bytes:
        if self._token is None or self._token[1] <= now:
            bearer = self._issuer.bearer(
                [], user_id=SYSTEM_ACTOR, lifetime_seconds=TOKEN_LIFETIME_SECONDS
            )
            self._token = (bearer, now + TOKEN_LIFETIME_SECONDS / 2)
        return self._token[0]
