"""What the service layer needs from the outside world, as Protocols. Adapters implement them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from fielding_statemachine.decisions import RunState


class TransientFailure(Exception):
    """A failure that retrying later can cure (database or broker unreachable, a lost race)."""


class StatementTimeout(TransientFailure):
    """The database gave up on a statement that ran too long: retried, but a batch that keeps
    meeting it is made smaller."""


@dataclass(frozen=True, slots=True)
class RecordOrigin:
    """Where a command record sits in Kafka; tells a redelivery from a repeated command."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Output:
    """A keyed record as published: a stored event is replayed byte for byte with its key."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the store keeps it, readable by id."""

    job_id: str
    account_id: int
    project_id: str
    target_group_id: str | None  # a draft job's (a bulk job names many)
    command_type: str
    body: bytes  # the job resource's JSON, as the result carried it


@dataclass(frozen=True, slots=True)
class RememberedOutcome:
    """A decided command (2xx, 404, 412, 422) kept for idempotent replays: its result, its
    events and its runs' states, the very bytes first published. A redelivery publishes these
    states again, never the run as it is by then."""

    account_id: int
    command_id: str
    fingerprint: bytes
    status: int
    result: bytes
    events: tuple[Output, ...]
    origin: RecordOrigin
    states: tuple[Output, ...] = ()  # one per event, when run states were published


@dataclass(frozen=True, slots=True)
class RunChange:
    """A run's new state; `expected_version` None creates it."""

    run: RunState
    expected_version: int | None
    changed_at: datetime
    changed_by: UUID
    times_changed: bool = True  # False: only the status and version need writing


@dataclass(frozen=True, slots=True)
class Quota:
    """An account's rate window as a charge found it: the units it had `left` before the
    charge (0 or less when spent), the window's length and what remains of it, and the store's
    handle of the window (for `give_back`)."""

    left: int
    seconds_left: float
    limit: int
    window_seconds: float
    window: object = None

    def retry_after(self, used: int) -> int:
        """Seconds until a window opens with quota left, when this one holds `used` units:
        what is taken beyond the limit is carried into the windows after it."""
        owed = max(0, used // self.limit - 1) if self.limit > 0 else 0
        return max(1, math.ceil(self.seconds_left + owed * self.window_seconds))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a batch's decisions start from, read at one moment."""

    runs: dict[str, RunState]  # by fielding_run_id
    outcomes: dict[tuple[int, str], RememberedOutcome]
    # The store's clock at the read: every replica and the scheduler judge times by it.
    now: datetime


class CommandStore(Protocol):
    async def load(
        self,
        run_ids: Sequence[str],
        target_group_ids: Sequence[str],
        command_keys: Sequence[tuple[int, str]],
    ) -> Snapshot:
        """The runs with these ids or of these target groups, and the outcomes remembered for
        these (account, command) ids, as of one moment. Nothing is locked: `save` checks what
        changed since."""
        ...

    async def save(
        self,
        changes: Sequence[RunChange],
        outcomes: Sequence[RememberedOutcome],
        jobs: Sequence[JobRecord],
    ) -> None:
        """Writes the runs with a compare-and-swap on the versions `load` read (creates those
        without one), remembers the outcomes and keeps the jobs, all or nothing.

        Raises TransientFailure when another writer won a race; nothing is written then, and
        the batch is decided again from a fresh `load`.
        """
        ...

    async def take_quota(self, requested: Mapping[int, int]) -> dict[int, Quota]:
        """Counts `requested` units per account against the shared rate limit; what an account
        takes beyond its limit in one window is carried into the windows after it."""
        ...

    async def give_back(self, units: Mapping[int, int], quotas: Mapping[int, Quota]) -> None:
        """Returns `units` per account to the windows `quotas` charged: refused commands take
        no quota."""
        ...


class PartitionClaims(Protocol):
    """Who owns which command partition, for fencing the producers of earlier owners."""

    async def claim(self, topic: str, partitions: Sequence[int], owner_id: str) -> set[str]:
        """Records `owner_id` as the partitions' owner; returns the ids
        of earlier owners that may still be able to commit and must be fenced first."""
        ...

    async def confirm_fenced(self, topic: str, partitions: Sequence[int], owner_id: str) -> bool:
        """Notes that the ids `claim` returned are fenced. False if `owner_id` no longer holds
        every one of the partitions: a later claimant superseded it, and it must not publish."""
        ...
