"""What each command type does, decided in memory against the batch's workspace.

The catalogue says which machine event each command sends and what it answers when it
succeeds; the domain (`fielding_statemachine.decisions`) says whether it may; here a decision
becomes an outcome: the status the public API would answer, the result, the events and (when
they are published) the runs' states, and the changes to write. Jobs (runs from drafts, bulk changes) are decided in the same pass as everything
else: a bulk job of 1,000 target groups is 1,000 lookups in memory, not 1,000 round trips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from uuid import UUID

from fielding_statemachine.decisions import (
    Change,
    Refusal,
    RunKey,
    RunState,
    TimeFault,
    creation_time_faults,
    decide,
    decide_bulk_item,
    decide_creation,
)
from fielding_statemachine.transitions import TRANSITIONS, RunEvent
from schemas.command import (
    BulkCommand,
    DraftCommand,
    RunCommand,
    ScheduleFieldingRunFromDraft,
    UpdateFieldingRun,
)
from schemas.job import (
    BulkJob,
    FailedTargetGroup,
    FailedTargetGroups,
    FailureCode,
    FailureReason,
    FailureReasonDetail,
    FieldingRunJob,
    FieldingRunJobFailureReason,
    UpdatedTargetGroup,
    UpdatedTargetGroups,
)
from schemas.result import CreatedJob, Status
from schemas.types import CROCKFORD, etag_of, new_ulid
from worker.service import outputs
from worker.service.catalogue import CATALOGUE, CommandType
from worker.service.intake import Admitted
from worker.service.ports import JobRecord, Output, RunChange

# The statuses each event applies to, for the 422's detail (read from the machine's table).
_SOURCES = {
    event: sorted(s.value for (s, e) in TRANSITIONS if e is event and s is not None)
    for event in RunEvent
}
# Also what `serve` answers when a read finds no such run.
NOT_FOUND_DETAIL: Final = "no such fielding run under this account, project and target group"
REFUSED: Final = {
    Refusal.NOT_FOUND: (Status.NOT_FOUND, NOT_FOUND_DETAIL),
    Refusal.VERSION_MISMATCH: (
        Status.PRECONDITION_FAILED,
        "the If-Match version is not the fielding run's current version",
    ),
    Refusal.INVALID_STATE: (Status.INVALID_STATE, "the machine allows no such transition"),
    Refusal.END_TIME_PASSED: (Status.INVALID_STATE, "the fielding run's end time has passed"),
    Refusal.NOT_DUE: (Status.INVALID_STATE, "the fielding run's time is not reached yet"),
    Refusal.ALREADY_HAS_RUN: (Status.INVALID_STATE, "the target group has a fielding run"),
    Refusal.INVALID_TIMES: (Status.INVALID_STATE, "the fielding run's times cannot be"),
}
FAILURES: Final[dict[Refusal, tuple[FailureCode, str]]] = {
    Refusal.NOT_FOUND: ("TargetGroupNotFound", "Target group not found."),
    Refusal.INVALID_STATE: ("StatusTransitionNotAllowed", "Status transition is not allowed."),
    Refusal.END_TIME_PASSED: ("InvalidFieldingDates", "The fielding run's end time has passed."),
    Refusal.ALREADY_HAS_RUN: (
        "TargetGroupInvalidState",
        "The target group is not in a draft state: it has a fielding run.",
    ),
    Refusal.INVALID_TIMES: (
        "InvalidFieldingDates",
        "The start time is in the past, or the end time is not after it.",
    ),
    # Not met by jobs today (bulk items go at the current version, timers are not jobs):
    # named so that every refusal has a failure.
    Refusal.VERSION_MISMATCH: ("StatusTransitionNotAllowed", "The fielding run changed."),
    Refusal.NOT_DUE: ("StatusTransitionNotAllowed", "The fielding run's time is not reached."),
}


# The detail of each rule a draft job can break, as its failure's `reasons` name it.
DRAFT_REASONS: Final[dict[Refusal | TimeFault, FailureReasonDetail]] = {
    Refusal.NOT_FOUND: FailureReasonDetail(
        name="target_group_id",
        reason="target_group_not_found",
        detail="No such target group under this account and project.",
    ),
    Refusal.ALREADY_HAS_RUN: FailureReasonDetail(
        name="target_group_id",
        reason="fielding_run_exists",
        detail="The target group has a fielding run: it is no longer a draft.",
    ),
    TimeFault.START_IN_THE_PAST: FailureReasonDetail(
        name="start_fielding_at",
        reason="start_in_the_past",
        detail="The start time is in the past.",
    ),
    TimeFault.END_NOT_AFTER_START: FailureReasonDetail(
        name="end_fielding_at",
        reason="end_not_after_start",
        detail="The end time is not after the start time (now, for a launch).",
    ),
}


def refused(refusal: Refusal, run: RunState | None, event: RunEvent) -> tuple[Status, str]:
    if refusal is Refusal.INVALID_STATE:
        assert run is not None
        allowed = " or ".join(_SOURCES[event])
        return Status.INVALID_STATE, (
            f"the fielding run is {run.status.value}; {event.value} applies to a {allowed} one"
        )
    return REFUSED[refusal]


def job_id_of(account_id: int, command_id: str) -> str:
    """A job's id, derived from its command: a repeat of the command names the same job."""
    digest = int.from_bytes(hashlib.sha256(f"{account_id}:{command_id}".encode()).digest()[:17])
    return "".join(CROCKFORD[(digest >> shift) & 31] for shift in range(125, -1, -5))


@dataclass
class Workspace:
    """The runs a batch's decisions read and write, in memory: a later command sees what an
    earlier one in the batch did. `changes` and `jobs` are what to write."""

    runs: dict[str, RunState]
    loaded: dict[str, RunState] = field(default_factory=dict)  # as read: what the CAS expects
    by_target_group: dict[str, str] = field(default_factory=dict)
    changes: dict[str, RunChange] = field(default_factory=dict)
    jobs: list[JobRecord] = field(default_factory=list)

    @classmethod
    def of(cls, runs: dict[str, RunState]) -> Workspace:
        return cls(
            dict(runs), runs, {run.key.target_group_id: run_id for run_id, run in runs.items()}
        )

    def run_of_target_group(self, target_group_id: str) -> RunState | None:
        run_id = self.by_target_group.get(target_group_id)
        return self.runs[run_id] if run_id is not None else None

    def apply(self, change: Change, changed_at: datetime, changed_by: UUID) -> None:
        run = change.after
        run_id = run.key.fielding_run_id
        self.runs[run_id] = run
        if change.before is None:  # a run's target group never changes: only new ones
            self.by_target_group[run.key.target_group_id] = run_id
        # A run created in this batch is inserted as it ends up; others are written with a
        # compare-and-swap on the version they were read at, their times only if they changed.
        loaded = self.loaded.get(run_id)
        times_changed = loaded is None or (
            (loaded.start_fielding_at, loaded.end_fielding_at)
            != (run.start_fielding_at, run.end_fielding_at)
        )
        self.changes[run_id] = RunChange(
            run, loaded.version if loaded else None, changed_at, changed_by, times_changed
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What deciding one command came to (to remember and to publish)."""

    status: Status
    result: bytes
    events: tuple[Output, ...] = ()
    # A timer before its time is answered but not remembered: the same timer, sent again
    # once its time has come, must be decided afresh.
    remembered: bool = True
    states: tuple[Output, ...] = ()  # one per event, in the same order, when published


@dataclass
class Announcements:
    """What one command's changes publish: an event each and, with `with_states`, the run as
    the change leaves it (built here, at decision time, so that it is remembered with the
    outcome and a redelivery publishes it again unchanged)."""

    item: Admitted
    now: datetime
    with_states: bool
    events: list[Output] = field(default_factory=list)
    states: list[Output] = field(default_factory=list)

    def add(self, change: Change) -> None:
        key = change.after.key
        command_id = self.item.command.command_id
        self.events.append(
            Output(key.target_group_id.encode(), outputs.event_value(change, command_id, self.now))
        )
        if self.with_states:
            value = outputs.state_value(change, self.now, self.item.principal.user_id)
            self.states.append(Output(key.fielding_run_id.encode(), value))


def decide_command(
    item: Admitted, workspace: Workspace, now: datetime, *, with_states: bool = False
) -> Verdict:
    """`item` decided against `workspace` at `now`; with `with_states`, its changes' run states
    are built too."""
    command = item.command
    entry = CATALOGUE[command.type]
    announcements = Announcements(item, now, with_states)
    if isinstance(command, RunCommand):
        return _run_command(item, command, entry, workspace, announcements)
    if isinstance(command, BulkCommand):
        return _bulk_job(item, command, entry, workspace, announcements)
    assert isinstance(command, DraftCommand)
    return _draft_job(item, command, entry, workspace, announcements)


def _run_command(
    item: Admitted,
    command: RunCommand,
    entry: CommandType,
    workspace: Workspace,
    announcements: Announcements,
) -> Verdict:
    now = announcements.now
    key = RunKey(
        command.account_id, command.project_id, command.target_group_id, command.fielding_run_id
    )
    times = (
        (command.start_fielding_at, command.end_fielding_at)
        if isinstance(command, UpdateFieldingRun)
        else None
    )
    run = workspace.runs.get(command.fielding_run_id)
    decision = decide(run, key, command.expected_version, entry.event, now, times)
    if isinstance(decision, Refusal):
        status, detail = refused(decision, run, entry.event)
        result = outputs.result_value(item.echo, status, now, detail=detail)
        return Verdict(status, result, remembered=decision is not Refusal.NOT_DUE)
    workspace.apply(decision, now, item.principal.user_id)
    announcements.add(decision)
    after = decision.after
    body = entry.body.build(after) if entry.body is not None else None
    result = outputs.result_value(
        item.echo, entry.success, now, etag=etag_of(after.version), body=body
    )
    return Verdict(
        entry.success,
        result,
        tuple(announcements.events),
        states=tuple(announcements.states),
    )


def _failure(refusal: Refusal) -> FailureReason:
    code, description = FAILURES[refusal]
    return FailureReason(code=code, description=description)


def draft_failure(
    refusal: Refusal, now: datetime, begins: datetime, end: datetime
) -> FieldingRunJobFailureReason:
    """Why a draft job failed, with a detail for each rule broken (`begins`: the run's start,
    now for a launch)."""
    code, description = FAILURES[refusal]
    faults: list[Refusal | TimeFault] = [refusal]
    if refusal is Refusal.INVALID_TIMES:
        faults = [*creation_time_faults(begins, end, now)]
    return FieldingRunJobFailureReason(
        code=code, description=description, reasons=[DRAFT_REASONS[f] for f in faults]
    )


def _job_verdict(
    item: Admitted,
    entry: CommandType,
    job: FieldingRunJob | BulkJob,
    workspace: Workspace,
    announcements: Announcements,
) -> Verdict:
    command = item.command
    now = announcements.now
    body = CreatedJob(job=job)
    workspace.jobs.append(
        JobRecord(
            job.job_id,
            command.account_id,
            command.project_id,
            getattr(command, "target_group_id", None),
            command.type,
            job.model_dump_json().encode(),
        )
    )
    result = outputs.result_value(item.echo, entry.success, now, body=body)
    return Verdict(
        entry.success,
        result,
        tuple(announcements.events),
        states=tuple(announcements.states),
    )


def _draft_job(
    item: Admitted,
    command: DraftCommand,
    entry: CommandType,
    workspace: Workspace,
    announcements: Announcements,
) -> Verdict:
    now = announcements.now
    event = entry.event
    key = RunKey(command.account_id, command.project_id, command.target_group_id, new_ulid())
    start = command.start_fielding_at if isinstance(command, ScheduleFieldingRunFromDraft) else None
    decision = decide_creation(
        workspace.run_of_target_group(command.target_group_id),
        key,
        event,
        now,
        start,
        command.end_fielding_at,
    )
    if isinstance(decision, Change):
        workspace.apply(decision, now, item.principal.user_id)
        announcements.add(decision)
    job = FieldingRunJob(
        job_id=job_id_of(command.account_id, command.command_id),
        created_fielding_run_id=key.fielding_run_id if isinstance(decision, Change) else None,
        created_at=now,
        created_by=item.principal.user_id,
        status="Completed" if isinstance(decision, Change) else "Failed",
        failure_reason=(
            None
            if isinstance(decision, Change)
            else draft_failure(decision, now, start or now, command.end_fielding_at)
        ),
        job_trace_id=None if isinstance(decision, Change) else item.envelope.trace_id,
    )
    return _job_verdict(item, entry, job, workspace, announcements)


def _bulk_job(
    item: Admitted,
    command: BulkCommand,
    entry: CommandType,
    workspace: Workspace,
    announcements: Announcements,
) -> Verdict:
    now = announcements.now
    event = entry.event
    updated: list[UpdatedTargetGroup] = []
    failed: list[FailedTargetGroup] = []
    for target_group_id in dict.fromkeys(command.target_group_ids):  # each once, in order
        run = workspace.run_of_target_group(target_group_id)
        decision = decide_bulk_item(run, command.account_id, command.project_id, event, now)
        if isinstance(decision, Refusal):
            failed.append(
                FailedTargetGroup(
                    target_group_id=target_group_id, failure_reason=_failure(decision)
                )
            )
            continue
        if isinstance(decision, Change):
            workspace.apply(decision, now, item.principal.user_id)
            announcements.add(decision)
        updated.append(UpdatedTargetGroup(target_group_id=target_group_id))
    job = BulkJob(
        job_id=job_id_of(command.account_id, command.command_id),
        created_at=now,
        created_by=item.principal.user_id,
        status="Completed" if updated else "Failed",
        updated_target_groups=UpdatedTargetGroups(data=updated),
        failed_target_groups=FailedTargetGroups(data=failed),
    )
    return _job_verdict(item, entry, job, workspace, announcements)
