"""The commands the worker consumes from `fielding-run-commands`, one model per `type`.

Every command has the envelope (`type`, `command_id`, `account_id`, `project_id`,
`issued_at`); commands addressed to one run add its ids and `if_match`; jobs add what they
create or the target groups they change. Unknown extra fields are ignored, so producers can
add fields before the worker knows them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from schemas.types import (
    AccountId,
    CommandId,
    ETag,
    RunTime,
    Timestamp,
    Ulid,
    new_ulid,
    version_of,
)

MAX_TARGET_GROUPS = 1000


class Envelope(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    type: str  # each command narrows it to its own literal
    command_id: CommandId
    account_id: AccountId
    project_id: Ulid
    issued_at: Timestamp

    def _identity(self) -> tuple[str, ...]:
        """What makes two commands with one `command_id` the same command."""
        raise NotImplementedError

    @property
    def key(self) -> bytes:
        """The record key a producer gives the command: the run it addresses (so one run's
        commands keep their order), else its target group, else its project."""
        for name in ("fielding_run_id", "target_group_id"):
            value = getattr(self, name, None)
            if isinstance(value, str):
                return value.encode()
        return self.project_id.encode()

    def fingerprint(self) -> bytes:
        """What makes two commands with one `command_id` the same command: its type and
        fields, without `issued_at` (a retry of the same intent may carry a new timestamp)."""
        return hashlib.sha256("\x1f".join(self._identity()).encode()).digest()[:16]


class RunCommand(Envelope):
    """A command addressed to one run at one version (`if_match`)."""

    target_group_id: Ulid
    fielding_run_id: Ulid
    if_match: ETag

    @property
    def expected_version(self) -> int:
        return version_of(self.if_match)

    def _identity(self) -> tuple[str, ...]:
        # `W/"5"` and `"5"` are the same precondition.
        return (
            self.type,
            str(self.account_id),
            self.project_id,
            self.target_group_id,
            self.fielding_run_id,
            str(self.expected_version),
        )


class CompleteFieldingRun(RunCommand):
    """Complete a live or scheduled run now, closing its target group."""

    model_config = ConfigDict(title="complete_fielding_run")
    type: Literal["complete_fielding_run"]


class LaunchNowFieldingRun(RunCommand):
    """Launch a scheduled run now; its end moves as far as its start, keeping its duration."""

    model_config = ConfigDict(title="launch_now_fielding_run")
    type: Literal["launch_now_fielding_run"]


class PauseFieldingRun(RunCommand):
    """Pause a live run."""

    model_config = ConfigDict(title="pause_fielding_run")
    type: Literal["pause_fielding_run"]


class ResumeFieldingRun(RunCommand):
    """Resume a paused run, while its end time is in the future."""

    model_config = ConfigDict(title="resume_fielding_run")
    type: Literal["resume_fielding_run"]


class RelaunchFieldingRun(RunCommand):
    """Relaunch a completed run, while its end time is in the future."""

    model_config = ConfigDict(title="relaunch_fielding_run")
    type: Literal["relaunch_fielding_run"]


class StartScheduledFieldingRun(RunCommand):
    """Sent by the worker's own scheduler when a scheduled run's start time is reached."""

    model_config = ConfigDict(title="start_scheduled_fielding_run")
    type: Literal["start_scheduled_fielding_run"]


class EndFieldingRun(RunCommand):
    """Sent by the worker's own scheduler when a live or paused run's end time is reached."""

    model_config = ConfigDict(title="end_fielding_run")
    type: Literal["end_fielding_run"]


def _after_start(end: datetime, info: ValidationInfo) -> datetime:
    start = info.data.get("start_fielding_at")
    if start is not None and not start < end:
        raise ValueError("end_fielding_at must be after start_fielding_at")
    return end


class UpdateFieldingRun(RunCommand):
    """Change a run's times; its status stays (a completed run's times cannot change)."""

    model_config = ConfigDict(title="update_fielding_run")
    type: Literal["update_fielding_run"]
    start_fielding_at: RunTime
    end_fielding_at: RunTime
    _end_after_start = field_validator("end_fielding_at")(_after_start)

    def _identity(self) -> tuple[str, ...]:
        return (
            *super()._identity(),
            self.start_fielding_at.isoformat(timespec="milliseconds"),
            self.end_fielding_at.isoformat(timespec="milliseconds"),
        )


class DraftCommand(Envelope):
    """A job that creates the target group's run from its draft."""

    target_group_id: Ulid
    end_fielding_at: RunTime

    def _identity(self) -> tuple[str, ...]:
        start: datetime | None = getattr(self, "start_fielding_at", None)
        return (
            self.type,
            str(self.account_id),
            self.project_id,
            self.target_group_id,
            start.isoformat(timespec="milliseconds") if start else "",
            self.end_fielding_at.isoformat(timespec="milliseconds"),
        )


class LaunchFieldingRunFromDraft(DraftCommand):
    """Create the target group's run, live from now until `end_fielding_at`."""

    model_config = ConfigDict(title="launch_fielding_run_from_draft")
    type: Literal["launch_fielding_run_from_draft"]


class ScheduleFieldingRunFromDraft(DraftCommand):
    """Create the target group's run, scheduled from `start_fielding_at`."""

    model_config = ConfigDict(title="schedule_fielding_run_from_draft")
    type: Literal["schedule_fielding_run_from_draft"]
    start_fielding_at: RunTime
    end_fielding_at: RunTime
    _end_after_start = field_validator("end_fielding_at")(_after_start)


class BulkCommand(Envelope):
    """An operation applied to the run of each target group, at its current version."""

    target_group_ids: Annotated[list[Ulid], Field(min_length=1, max_length=MAX_TARGET_GROUPS)]

    def _identity(self) -> tuple[str, ...]:
        return (self.type, str(self.account_id), self.project_id, *self.target_group_ids)


class CompleteFieldingRunsByTargetGroupIds(BulkCommand):
    model_config = ConfigDict(title="complete_fielding_runs_by_target_group_ids")
    type: Literal["complete_fielding_runs_by_target_group_ids"]


class LaunchFieldingRunsByTargetGroupIds(BulkCommand):
    model_config = ConfigDict(title="launch_fielding_runs_by_target_group_ids")
    type: Literal["launch_fielding_runs_by_target_group_ids"]


class PauseFieldingRunsByTargetGroupIds(BulkCommand):
    model_config = ConfigDict(title="pause_fielding_runs_by_target_group_ids")
    type: Literal["pause_fielding_runs_by_target_group_ids"]


class ResumeFieldingRunsByTargetGroupIds(BulkCommand):
    model_config = ConfigDict(title="resume_fielding_runs_by_target_group_ids")
    type: Literal["resume_fielding_runs_by_target_group_ids"]


class RelaunchFieldingRunsByTargetGroupIds(BulkCommand):
    model_config = ConfigDict(title="relaunch_fielding_runs_by_target_group_ids")
    type: Literal["relaunch_fielding_runs_by_target_group_ids"]


Command = (
    CompleteFieldingRun
    | LaunchNowFieldingRun
    | PauseFieldingRun
    | ResumeFieldingRun
    | RelaunchFieldingRun
    | UpdateFieldingRun
    | StartScheduledFieldingRun
    | EndFieldingRun
    | LaunchFieldingRunFromDraft
    | ScheduleFieldingRunFromDraft
    | CompleteFieldingRunsByTargetGroupIds
    | LaunchFieldingRunsByTargetGroupIds
    | PauseFieldingRunsByTargetGroupIds
    | ResumeFieldingRunsByTargetGroupIds
    | RelaunchFieldingRunsByTargetGroupIds
)
COMMAND_MODELS: tuple[type[Envelope], ...] = get_args(Command)
MODELS: dict[str, type[Envelope]] = {
    get_args(model.model_fields["type"].annotation)[0]: model for model in COMMAND_MODELS
}
COMMAND_TYPES: frozenset[str] = frozenset(MODELS)
COMPLETE_FIELDING_RUN = "complete_fielding_run"

_COMMANDS: TypeAdapter[Command] = TypeAdapter(Annotated[Command, Field(discriminator="type")])


def parse_command(value: bytes) -> Command:
    """The command in a record's value; raises pydantic's ValidationError."""
    return _COMMANDS.validate_json(value)


def new_command(type: str, /, **fields: Any) -> Command:
    """A valid command of `type`, with a new `command_id` and `issued_at` now unless given:
    what `send`, the bench and the tests produce."""
    values = {"issued_at": datetime.now(UTC), **fields, "type": type}
    if "command_id" not in values:  # drawn only when none is given (random bits, base 32)
        values["command_id"] = new_ulid()
    return MODELS[type].model_validate(values)  # type: ignore[return-value]
