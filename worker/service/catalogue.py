"""Every command type, one entry each: its model, the machine event it sends, its success
status, how its result body is built, where `serve` takes it over HTTP, its `send` name, and
whether only the worker's scheduler may send it.

Everything else that depends on the command types is derived from `CATALOGUE`: the operations
(`operations.py`), the HTTP routes (built by the HTTP adapter from each `Route`), `send`'s
names and `SYSTEM_COMMAND_TYPES`. A schema type without an entry fails at import. Adding a
type is the machine (for a new transition), the schema and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final, Literal, get_args

from pydantic import BaseModel

from fielding_statemachine.decisions import RunState
from fielding_statemachine.transitions import RunEvent
from schemas.api import (
    BulkTargetGroupsRequest,
    LaunchFieldingRunFromDraftRequest,
    ScheduleFieldingRunFromDraftRequest,
    UpdateFieldingRunRequest,
)
from schemas.command import (
    COMMAND_TYPES,
    BulkCommand,
    CompleteFieldingRun,
    CompleteFieldingRunsByTargetGroupIds,
    DraftCommand,
    EndFieldingRun,
    Envelope,
    LaunchFieldingRunFromDraft,
    LaunchFieldingRunsByTargetGroupIds,
    LaunchNowFieldingRun,
    PauseFieldingRun,
    PauseFieldingRunsByTargetGroupIds,
    RelaunchFieldingRun,
    RelaunchFieldingRunsByTargetGroupIds,
    ResumeFieldingRun,
    ResumeFieldingRunsByTargetGroupIds,
    RunCommand,
    ScheduleFieldingRunFromDraft,
    StartScheduledFieldingRun,
    UpdateFieldingRun,
)
from schemas.result import LaunchedTimes, Status, UpdatedRun

# The public API's paths (served under `/v1`).
PROJECT: Final = "/v1/demand/accounts/{account_id}/projects/{project_id}"
GROUP: Final = PROJECT + "/target-groups/{target_group_id}"
RUN: Final = GROUP + "/fielding-runs/{fielding_run_id}"


class Family(Enum):
    """How a command is decided, from its model's base class."""

    RUN = "run"  # addressed to one run at one version
    DRAFT = "draft"  # a job creating the target group's run
    BULK = "bulk"  # a job applying one operation to the run of each target group


@dataclass(frozen=True, slots=True)
class Route:
    """Where `serve` takes a command: the public API's method, path and operation id, and the
    model of the request body (None: the path and headers say everything)."""

    method: Literal["POST", "PUT"]
    path: str
    operation_id: str
    request: type[BaseModel] | None = None


RunBody = LaunchedTimes | UpdatedRun


@dataclass(frozen=True, slots=True)
class ResultBody:
    """A run command's success body: its model (for the HTTP document) and how it is built
    from the run as the command left it."""

    model: type[RunBody]
    build: Callable[[RunState], RunBody]


@dataclass(frozen=True, slots=True)
class CommandType:
    """One command type's entry; its `name` and `family` are read from its model."""

    model: type[Envelope]
    event: RunEvent
    success: Status
    send: str | None  # the name `fielding-worker send` takes; None: not sent by hand
    route: Route | None = None  # None: not served over HTTP
    body: ResultBody | None = None  # run commands only; jobs answer with their job
    system_only: bool = False  # sent by the worker's scheduler alone, signed with the system key
    name: str = field(init=False)
    family: Family = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", type_name(self.model))
        object.__setattr__(self, "family", _family(self.model))


def type_name(model: type[Envelope]) -> str:
    """The `type` a model's commands carry (its literal)."""
    name: str = get_args(model.model_fields["type"].annotation)[0]
    return name


def _family(model: type[Envelope]) -> Family:
    if issubclass(model, RunCommand):
        return Family.RUN
    if issubclass(model, DraftCommand):
        return Family.DRAFT
    if issubclass(model, BulkCommand):
        return Family.BULK
    raise TypeError(f"{model.__name__} is neither a run command nor a job")


def _launched_times(run: RunState) -> LaunchedTimes:
    # Every stored run has both times (the columns are NOT NULL).
    assert run.start_fielding_at is not None and run.end_fielding_at is not None
    return LaunchedTimes(
        start_fielding_at=run.start_fielding_at, end_fielding_at=run.end_fielding_at
    )


def _updated_run(run: RunState) -> UpdatedRun:
    return UpdatedRun(id=run.key.fielding_run_id)


def _run_action(
    model: type[RunCommand],
    event: RunEvent,
    success: Status,
    action: str,
    body: ResultBody | None = None,
) -> CommandType:
    """A lifecycle operation of one run: `POST .../fielding-runs/{id}/<action>`."""
    route = Route("POST", f"{RUN}/{action}", type_name(model))
    return CommandType(model, event, success, action, route, body)


def _draft_job(
    model: type[DraftCommand], event: RunEvent, action: str, request: type[BaseModel]
) -> CommandType:
    """`POST .../target-groups/{id}/fielding-run-jobs/<action>`."""
    path = f"{GROUP}/fielding-run-jobs/{action}"
    verb = action.split("-", 1)[0]
    operation_id = f"create_{verb}_fielding_run_from_draft_job"
    return CommandType(
        model, event, Status.CREATED, action, Route("POST", path, operation_id, request)
    )


def _bulk_job(model: type[BulkCommand], event: RunEvent, action: str) -> CommandType:
    """`POST .../batch-jobs/<action>-fielding-runs-by-target-group-id`."""
    path = f"{PROJECT}/batch-jobs/{action}-fielding-runs-by-target-group-id"
    route = Route("POST", path, f"create_bulk_{action}_target_groups_job", BulkTargetGroupsRequest)
    return CommandType(model, event, Status.CREATED, f"{action}-target-groups", route)


_ENTRIES = (
    _run_action(CompleteFieldingRun, RunEvent.COMPLETE, Status.NO_CONTENT, "complete"),
    _run_action(
        LaunchNowFieldingRun,
        RunEvent.LAUNCH_NOW,
        Status.OK,
        "launch-now",
        ResultBody(LaunchedTimes, _launched_times),
    ),
    _run_action(PauseFieldingRun, RunEvent.PAUSE, Status.NO_CONTENT, "pause"),
    _run_action(ResumeFieldingRun, RunEvent.RESUME, Status.NO_CONTENT, "resume"),
    _run_action(RelaunchFieldingRun, RunEvent.RELAUNCH, Status.NO_CONTENT, "relaunch"),
    CommandType(
        UpdateFieldingRun,
        RunEvent.UPDATE_TIMES,
        Status.ACCEPTED,
        "update",
        Route("PUT", RUN, "update_fielding_run", UpdateFieldingRunRequest),
        ResultBody(UpdatedRun, _updated_run),
    ),
    CommandType(
        StartScheduledFieldingRun,
        RunEvent.START_TIME_REACHED,
        Status.NO_CONTENT,
        None,
        system_only=True,
    ),
    CommandType(
        EndFieldingRun, RunEvent.END_TIME_REACHED, Status.NO_CONTENT, None, system_only=True
    ),
    _draft_job(
        LaunchFieldingRunFromDraft,
        RunEvent.LAUNCH_FROM_DRAFT,
        "launch-from-draft",
        LaunchFieldingRunFromDraftRequest,
    ),
    _draft_job(
        ScheduleFieldingRunFromDraft,
        RunEvent.SCHEDULE_FROM_DRAFT,
        "schedule-from-draft",
        ScheduleFieldingRunFromDraftRequest,
    ),
    _bulk_job(CompleteFieldingRunsByTargetGroupIds, RunEvent.COMPLETE, "complete"),
    _bulk_job(LaunchFieldingRunsByTargetGroupIds, RunEvent.LAUNCH_NOW, "launch"),
    _bulk_job(PauseFieldingRunsByTargetGroupIds, RunEvent.PAUSE, "pause"),
    _bulk_job(ResumeFieldingRunsByTargetGroupIds, RunEvent.RESUME, "resume"),
    _bulk_job(RelaunchFieldingRunsByTargetGroupIds, RunEvent.RELAUNCH, "relaunch"),
)

# Looked up once per command: a plain dict built at import (read-only by its type).
CATALOGUE: Final[Mapping[str, CommandType]] = {e.name: e for e in _ENTRIES}


def _missing() -> str | None:
    missing = sorted(COMMAND_TYPES - CATALOGUE.keys())
    extra = sorted(CATALOGUE.keys() - COMMAND_TYPES)
    if len(CATALOGUE) != len(_ENTRIES):
        return "a command type has two entries"
    if missing or extra:
        return f"command types without an entry: {missing}; entries without a schema: {extra}"
    return None


# A type the worker parses but cannot decide would fail on every such command: refuse to start.
if (_problem := _missing()) is not None:
    raise ImportError(f"worker.service.catalogue: {_problem}")

# Sent by the worker's own scheduler only, with a token of the system actor.
SYSTEM_COMMAND_TYPES: Final = frozenset(e.name for e in _ENTRIES if e.system_only)
# The short names `fielding-worker send` takes, and the command types they stand for.
SEND_NAMES: Final = MappingProxyType({e.send: e.name for e in _ENTRIES if e.send is not None})


def system_command_for(event: RunEvent) -> str:
    """The scheduler's command type for a time-driven event."""
    (name,) = (e.name for e in _ENTRIES if e.system_only and e.event is event)
    return name
