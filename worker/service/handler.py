"""Decides a batch of command records: one read and one atomic write, outputs in record order.

The order of checks is the public API's: 401, 400, 403 happen in `intake`; here come replays
of remembered commands (`replay`), then 429 (`throttled`), and then each command's operation
(`operations.decide_command`): 404, 412, 422 or success. `_decide` strings them together
over one snapshot of the store.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.command import BulkCommand, RunCommand
from schemas.errors import InvalidParam
from schemas.result import Status
from worker.service import outputs
from worker.service.auth import TokenVerifier
from worker.service.cooperative import take_turn
from worker.service.intake import Admitted, CommandRecord, Rejected, Unreadable, triage
from worker.service.operations import Workspace, decide_command
from worker.service.outputs import Emission
from worker.service.ports import CommandStore, Quota, RecordOrigin, RememberedOutcome, Snapshot

log = logging.getLogger(__name__)

IDEMPOTENCY_CONFLICT = InvalidParam(
    name="command_id", reason="this command_id was already used for a different command"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class QuotaLedger:
    """The rate-limit verdict of each command record of one batch, kept across the batch's
    retries and splits: a command takes quota once, however often its batch is tried.
    A verdict is None (allowed) or the seconds to wait (refused)."""

    verdicts: dict[RecordOrigin, int | None] = field(default_factory=dict)


def cost(command: object) -> int:
    """The quota units a command takes: the runs it asks to change (a bulk job one per target
    group, anything else one)."""
    return len(command.target_group_ids) if isinstance(command, BulkCommand) else 1


def rejected(item: Rejected, processed_at: datetime) -> Emission:
    status = Status(item.status)
    value = outputs.result_value(
        item.echo, status, processed_at, detail=item.detail, invalid_params=item.invalid_params
    )
    return _result(item, value, status)


def unreadable(item: Unreadable) -> Emission:
    record = item.record
    if record.unreadable is not None:  # nothing of it could be read: its coordinates stand in
        return outputs.dlq_stub(record.origin, None, None, item.reason)
    return outputs.dlq_copy(record.origin, record.key, record.value, record.headers, item.reason)


def _result(item: Admitted | Rejected, value: bytes, status: Status) -> Emission:
    return outputs.result(item.echo, value, status, item.envelope, item.record.origin)


def _emit(
    item: Admitted, outcome: RememberedOutcome, with_events: bool, with_states: bool
) -> list[Emission]:
    emissions = [_result(item, outcome.result, Status(outcome.status))]
    if with_events:
        trace_headers, origin = item.envelope.trace_headers, item.record.origin
        emissions.extend(
            outputs.event(e.key, e.value, trace_headers=trace_headers, origin=origin)
            for e in outcome.events
        )
        if with_states:
            emissions.extend(
                outputs.state(s.key, s.value, trace_headers=trace_headers, origin=origin)
                for s in outcome.states
            )
    return emissions


def replay(
    item: Admitted, prior: RememberedOutcome, now: datetime, with_states: bool = False
) -> list[Emission]:
    """A remembered command answered again. The same record again (a redelivery after a
    crash) re-emits its events and run states too, as they were decided, since the earlier
    attempt's outputs never committed; a new record with the same command only gets the result
    again."""
    if prior.fingerprint != item.command.fingerprint():
        value = outputs.result_value(
            item.echo,
            Status.BAD_REQUEST,
            now,
            detail=IDEMPOTENCY_CONFLICT.reason,
            invalid_params=(IDEMPOTENCY_CONFLICT,),
        )
        return [_result(item, value, Status.BAD_REQUEST)]
    return _emit(
        item, prior, with_events=prior.origin == item.record.origin, with_states=with_states
    )


def throttled(item: Admitted, retry_after_seconds: int, now: datetime) -> list[Emission]:
    detail = (
        f"account {item.command.account_id} sent more commands than its limit; "
        f"retry after {retry_after_seconds} s"
    )
    value = outputs.result_value(
        item.echo,
        Status.TOO_MANY_REQUESTS,
        now,
        detail=detail,
        retry_after_seconds=retry_after_seconds,
    )
    return [_result(item, value, Status.TOO_MANY_REQUESTS)]


@dataclass
class BatchDecision:
    """What deciding the admitted commands of a batch came to: their outputs (in their order),
    and what to write."""

    emissions: list[list[Emission]]
    workspace: Workspace
    outcomes: list[RememberedOutcome] = field(default_factory=list)


def _reads(
    admitted: list[Admitted], with_bulk: bool = True
) -> tuple[set[str], set[str], set[tuple[int, str]]]:
    """The runs (by id and by target group) and remembered outcomes a batch may need; the
    target groups of bulk jobs only `with_bulk`."""
    run_ids: set[str] = set()
    target_groups: set[str] = set()
    keys: set[tuple[int, str]] = set()
    for item in admitted:
        command = item.command
        keys.add((command.account_id, command.command_id))
        if isinstance(command, RunCommand):
            run_ids.add(command.fielding_run_id)
        elif isinstance(command, BulkCommand):
            if with_bulk:
                target_groups.update(command.target_group_ids)
        else:  # a run from a draft: the target group must not have one yet
            target_groups.add(command.target_group_id)
    return run_ids, target_groups, keys


def _allowed_bulk_groups(
    admitted: list[Admitted], snapshot: Snapshot, ledger: QuotaLedger
) -> set[str]:
    """The target groups of the bulk jobs that the quota allowed and that are not replays."""
    groups: set[str] = set()
    for item in admitted:
        command = item.command
        if (
            isinstance(command, BulkCommand)
            and ledger.verdicts.get(item.record.origin) is None
            and (command.account_id, command.command_id) not in snapshot.outcomes
        ):
            groups.update(command.target_group_ids)
    return groups


class CommandHandler:
    def __init__(
        self,
        store: CommandStore,
        verifier: TokenVerifier,
        rate_limit_per_account: int,
        clock: Callable[[], datetime] = utc_now,
        *,
        run_states: bool = False,
    ) -> None:
        """With `run_states`, every change publishes the run's state besides its event (the
        states topic is set)."""
        self._store = store
        self._verifier = verifier
        self._rate_limited = rate_limit_per_account > 0
        self._clock = clock
        self._run_states = run_states

    @property
    def verifier(self) -> TokenVerifier:
        return self._verifier

    async def handle(
        self, records: Sequence[CommandRecord], ledger: QuotaLedger | None = None
    ) -> list[Emission]:
        triaged = []
        for done, record in enumerate(records):
            await take_turn(done)
            triaged.append(triage(record, self._verifier))
        admitted = [t for t in triaged if isinstance(t, Admitted)]
        decided = iter(await self._decide(admitted, ledger or QuotaLedger()) if admitted else [])
        processed_at = self._clock()
        emissions: list[Emission] = []
        debug = log.isEnabledFor(logging.DEBUG)  # asked once per batch: the hot path stays quiet
        for item in triaged:
            if isinstance(item, Unreadable):
                origin = item.record.origin
                log.warning(
                    "unreadable record copied to the DLQ",
                    extra={
                        "reason": item.reason,
                        "topic": origin.topic,
                        "partition": origin.partition,
                        "offset": origin.offset,
                    },
                )
                emissions.append(unreadable(item))
                continue
            if debug:
                log.debug(
                    "command answered",
                    extra={
                        "command_id": item.echo.command_id,
                        "fielding_run_id": item.echo.fielding_run_id,
                        "trace_id": item.envelope.trace_id,
                        "status": getattr(item, "status", None),
                    },
                )
            if isinstance(item, Rejected):
                emissions.append(rejected(item, processed_at))
            else:
                emissions.extend(next(decided))
        return emissions

    async def _decide(self, admitted: list[Admitted], ledger: QuotaLedger) -> list[list[Emission]]:
        """One read, the quota, the decisions in memory, one write; outputs in `admitted`'s order.
        Times are judged by the store's clock at the read, as the scheduler judges them."""
        # Under a quota, a bulk job's runs are read once it is allowed: a refused job of a
        # thousand target groups costs no read of a thousand runs (a flood stays cheap).
        run_ids, target_groups, keys = _reads(admitted, with_bulk=not self._rate_limited)
        snapshot = await self._store.load(list(run_ids), list(target_groups), list(keys))
        await self._charge(admitted, snapshot, ledger)
        if self._rate_limited and (
            bulk := _allowed_bulk_groups(admitted, snapshot, ledger) - target_groups
        ):
            more = await self._store.load([], list(bulk), [])
            snapshot = Snapshot({**more.runs, **snapshot.runs}, snapshot.outcomes, snapshot.now)
        decision = await self._apply(admitted, snapshot, ledger, snapshot.now)
        workspace = decision.workspace
        await self._store.save(list(workspace.changes.values()), decision.outcomes, workspace.jobs)
        return decision.emissions

    async def _charge(
        self, admitted: list[Admitted], snapshot: Snapshot, ledger: QuotaLedger
    ) -> None:
        """Takes quota for the commands not charged in an earlier try of this batch, by the work
        each asks for (`cost`). A repeat of a remembered command, or of one earlier in the
        batch, is replayed whatever the quota, and counts one unit."""
        if not self._rate_limited:
            return
        charged: list[tuple[Admitted, bool]] = []  # (item, a repeat?)
        units: Counter[int] = Counter()
        seen = set(snapshot.outcomes)
        for item in admitted:
            # The scheduler's timers take no quota: they are due, not asked for.
            if item.principal.system or item.record.origin in ledger.verdicts:
                continue
            key = (item.command.account_id, item.command.command_id)
            repeat = key in seen
            seen.add(key)
            charged.append((item, repeat))
            units[item.command.account_id] += 1 if repeat else cost(item.command)
        if not charged:
            return
        quotas: dict[int, Quota] = await self._store.take_quota(units)
        left = {account: quota.left for account, quota in quotas.items()}
        taken: Counter[int] = Counter()
        refused: list[Admitted] = []
        refused_keys: set[tuple[int, str]] = set()
        for item, repeat in charged:
            account = item.command.account_id
            key = (account, item.command.command_id)
            # A repeat of a command refused earlier in this batch is refused with it: it would
            # otherwise be decided as if it had been allowed.
            if key in refused_keys if repeat else left[account] <= 0:
                refused.append(item)
                refused_keys.add(key)
                continue
            spent = 1 if repeat else cost(item.command)
            left[account] -= spent
            taken[account] += spent
            ledger.verdicts[item.record.origin] = None
        for item in refused:
            quota = quotas[item.command.account_id]
            used = quota.limit - quota.left + taken[item.command.account_id]
            ledger.verdicts[item.record.origin] = quota.retry_after(used)
        unused = {a: units[a] - taken[a] for a in units if units[a] > taken[a]}
        if unused:  # a refused command takes no quota
            await self._store.give_back(unused, quotas)

    async def _apply(
        self, admitted: list[Admitted], snapshot: Snapshot, ledger: QuotaLedger, now: datetime
    ) -> BatchDecision:
        """Decides the batch in memory, in record order: a later command on the same run sees
        what an earlier one did, and a repeat later in the batch is a replay."""
        remembered = dict(snapshot.outcomes)
        decision = BatchDecision([], Workspace.of(snapshot.runs))
        for done, item in enumerate(admitted):
            await take_turn(done)
            command = item.command
            key = (command.account_id, command.command_id)
            prior = remembered.get(key)
            if prior is not None:
                decision.emissions.append(replay(item, prior, now, self._run_states))
                continue
            retry_after = ledger.verdicts.get(item.record.origin)
            if retry_after is not None:
                decision.emissions.append(throttled(item, retry_after, now))
                continue
            verdict = decide_command(item, decision.workspace, now, with_states=self._run_states)
            if not verdict.remembered:
                decision.emissions.append([_result(item, verdict.result, verdict.status)])
                continue
            outcome = RememberedOutcome(
                account_id=command.account_id,
                command_id=command.command_id,
                fingerprint=command.fingerprint(),
                status=verdict.status,
                result=verdict.result,
                events=verdict.events,
                origin=item.record.origin,
                states=verdict.states,
            )
            remembered[key] = outcome
            decision.outcomes.append(outcome)
            decision.emissions.append(
                _emit(item, outcome, with_events=True, with_states=self._run_states)
            )
        return decision
