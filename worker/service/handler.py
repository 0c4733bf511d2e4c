"""Decides a batch of command records: one read and one atomic write, outputs in record order.

The order of checks is the public API's: 401, 400, 403 happen in `intake`; here come replays
of remembered commands, then 429, and then the domain's 404, 412, 422 or 204.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fielding_statemachine.decisions import Completed, Refusal, RunKey, decide_complete
from schemas.errors import InvalidParam
from schemas.event import TargetGroupClosed
from schemas.types import etag_of
from worker.service.auth import TokenVerifier
from worker.service.cooperative import take_turn
from worker.service.intake import Admitted, CommandRecord, Rejected, Unreadable, triage
from worker.service.outputs import Channel, Emission, new_id, result_json, result_key
from worker.service.ports import (
    CommandStore,
    Quota,
    RememberedOutcome,
    RunChange,
    Snapshot,
)

log = logging.getLogger(__name__)

REFUSAL_DETAILS = {
    Refusal.NOT_FOUND: "no such fielding run under this account, project and target group",
    Refusal.VERSION_MISMATCH: "the If-Match version is not the fielding run's current version",
    Refusal.INVALID_STATE: "only a live or scheduled fielding run can be completed",
}
IDEMPOTENCY_CONFLICT = InvalidParam(
    name="command_id", reason="this command_id was already used for a different command"
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def dlq_emission(record: CommandRecord, reason: str) -> Emission:
    origin = record.origin
    headers = [
        *record.headers,
        ("dlq.reason", reason.encode()),
        ("dlq.original.topic", origin.topic.encode()),
        ("dlq.original.partition", str(origin.partition).encode()),
        ("dlq.original.offset", str(origin.offset).encode()),
    ]
    return Emission(Channel.DLQ, record.key, record.value or b"", headers)


def rejected_emission(rejected: Rejected, processed_at: datetime) -> Emission:
    value = result_json(
        rejected.echo,
        rejected.status,
        processed_at,
        detail=rejected.detail,
        invalid_params=rejected.invalid_params,
    )
    return Emission(
        Channel.RESULT,
        result_key(rejected.echo, rejected.record.key),
        value,
        rejected.trace_headers,
        rejected.status,
        rejected.echo.type,
    )


class CommandHandler:
    def __init__(
        self,
        store: CommandStore,
        verifier: TokenVerifier,
        rate_limit_per_account: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._verifier = verifier
        self._rate_limited = rate_limit_per_account > 0
        self._clock = clock

    @property
    def verifier(self) -> TokenVerifier:
        return self._verifier

    async def handle(self, records: Sequence[CommandRecord]) -> list[Emission]:
        triaged = []
        for done, record in enumerate(records):
            await take_turn(done)
            triaged.append(triage(record, self._verifier))
        admitted = [t for t in triaged if isinstance(t, Admitted)]
        decided = await self._decide(admitted) if admitted else {}
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
                emissions.append(dlq_emission(item.record, item.reason))
                continue
            if debug:
                log.debug(
                    "command answered",
                    extra={
                        "command_id": item.echo.command_id,
                        "fielding_run_id": item.echo.fielding_run_id,
                        "trace_id": item.trace_id,
                        "status": getattr(item, "status", None),
                    },
                )
            if isinstance(item, Rejected):
                emissions.append(rejected_emission(item, processed_at))
            else:
                emissions.extend(decided[id(item)])
        return emissions

    async def _decide(self, admitted: list[Admitted]) -> dict[int, list[Emission]]:
        now = self._clock()
        commands = [a.command for a in admitted]
        snapshot = await self._store.load(
            list({c.fielding_run_id for c in commands}),
            list({(c.account_id, c.command_id) for c in commands}),
        )
        fresh = [
            a
            for a in admitted
            if (a.command.account_id, a.command.command_id) not in snapshot.outcomes
        ]
        quotas = await self._quotas(fresh)
        decided, changes, new_outcomes = await self._apply(admitted, snapshot, quotas, now)
        await self._store.save(changes, new_outcomes)
        return decided

    async def _quotas(self, fresh: list[Admitted]) -> dict[int, Quota]:
        if not self._rate_limited or not fresh:
            return {}
        return await self._store.take_quota(Counter(a.command.account_id for a in fresh))

    async def _apply(
        self,
        admitted: list[Admitted],
        snapshot: Snapshot,
        quotas: dict[int, Quota],
        now: datetime,
    ) -> tuple[dict[int, list[Emission]], list[RunChange], list[RememberedOutcome]]:
        """Decides the batch in memory, in record order: a later command on the same run sees
        what an earlier one did. Returns the outputs per command and what to save."""
        allowance = {account: quota.allowed for account, quota in quotas.items()}
        runs = dict(snapshot.runs)
        remembered = dict(snapshot.outcomes)
        changes: dict[str, RunChange] = {}
        new_outcomes: list[RememberedOutcome] = []
        decided: dict[int, list[Emission]] = {}

        for done, item in enumerate(admitted):
            await take_turn(done)
            command = item.command
            key = (command.account_id, command.command_id)
            prior = remembered.get(key)
            if prior is not None:
                decided[id(item)] = self._replay(item, prior, now)
                continue
            if command.account_id in allowance:
                if allowance[command.account_id] <= 0:
                    decided[id(item)] = [self._too_many(item, quotas[command.account_id], now)]
                    continue
                allowance[command.account_id] -= 1

            run_key = RunKey(
                command.account_id,
                command.project_id,
                command.target_group_id,
                command.fielding_run_id,
            )
            decision = decide_complete(
                runs.get(command.fielding_run_id), run_key, command.expected_version
            )
            event: bytes | None = None
            if isinstance(decision, Completed):
                runs[command.fielding_run_id] = decision.run
                changes[command.fielding_run_id] = RunChange(
                    run=decision.run,
                    expected_version=snapshot.runs[command.fielding_run_id].version,
                    changed_at=now,
                    changed_by=item.principal.user_id,
                )
                event = self._closed_event(item, decision, now)
                result = result_json(item.echo, 204, now, etag=etag_of(decision.run.version))
                status = 204
            else:
                status = decision.value
                result = result_json(item.echo, status, now, detail=REFUSAL_DETAILS[decision])
            outcome = RememberedOutcome(
                account_id=command.account_id,
                command_id=command.command_id,
                fingerprint=command.fingerprint(),
                status=status,
                result=result,
                event=event,
                origin=item.record.origin,
            )
            remembered[key] = outcome  # a repeat later in this batch is a replay
            new_outcomes.append(outcome)
            decided[id(item)] = self._emit(item, outcome, with_event=True)

        return decided, list(changes.values()), new_outcomes

    def _replay(self, item: Admitted, prior: RememberedOutcome, now: datetime) -> list[Emission]:
        if prior.fingerprint != item.command.fingerprint():
            value = result_json(
                item.echo,
                400,
                now,
                detail=IDEMPOTENCY_CONFLICT.reason,
                invalid_params=(IDEMPOTENCY_CONFLICT,),
            )
            return [
                Emission(
                    Channel.RESULT,
                    result_key(item.echo, item.record.key),
                    value,
                    item.trace_headers,
                    400,
                    item.command.type,
                )
            ]
        # The same record again (a redelivery after a crash) re-emits its event too; the
        # earlier attempt's output was never committed. A new record with the same command
        # only gets the result again.
        return self._emit(item, prior, with_event=prior.origin == item.record.origin)

    def _emit(self, item: Admitted, outcome: RememberedOutcome, with_event: bool) -> list[Emission]:
        command = item.command
        emissions = [
            Emission(
                Channel.RESULT,
                command.fielding_run_id.encode(),
                outcome.result,
                item.trace_headers,
                outcome.status,
                command.type,
            )
        ]
        if with_event and outcome.event is not None:
            emissions.append(
                Emission(
                    Channel.EVENT,
                    command.target_group_id.encode(),
                    outcome.event,
                    item.trace_headers,
                )
            )
        return emissions

    def _too_many(self, item: Admitted, quota: Quota, now: datetime) -> Emission:
        detail = (
            f"account {item.command.account_id} sent more commands than its limit; "
            f"retry after {quota.retry_after_seconds} s"
        )
        value = result_json(
            item.echo, 429, now, detail=detail, retry_after_seconds=quota.retry_after_seconds
        )
        return Emission(
            Channel.RESULT,
            item.command.fielding_run_id.encode(),
            value,
            item.trace_headers,
            429,
            item.command.type,
        )

    @staticmethod
    def _closed_event(item: Admitted, decision: Completed, now: datetime) -> bytes:
        command = item.command
        previous = decision.previous_status.value
        assert previous in ("live", "scheduled")  # the machine completes only these
        return (
            TargetGroupClosed(
                event_id=new_id(),
                account_id=command.account_id,
                project_id=command.project_id,
                target_group_id=command.target_group_id,
                fielding_run_id=command.fielding_run_id,
                previous_status=previous,
                fielding_run_version=decision.run.version,
                closed_at=now,
                command_id=command.command_id,
            )
            .model_dump_json()
            .encode()
        )
