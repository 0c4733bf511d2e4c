"""MkDocs hook: the reference pages' tables, generated at build time from where each fact lives.

A page asks for a table with a line `<!-- generated: NAME -->`; the build replaces it. An unknown
name, or a table whose source no longer matches the prose kept beside it, fails the build, so a
stale reference page cannot be published.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The package of this checkout, not whichever one the interpreter has installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def settings() -> str:
    """Every field of `worker.settings.Settings`: its variable, default and description."""
    from pydantic import SecretStr
    from pydantic_core import PydanticUndefined

    from worker.settings import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", [])
        env = next(c for c in choices if isinstance(c, str) and c.isupper())
        default = field.get_default() if field.default is not PydanticUndefined else None
        if default is None:
            shown = "unset"
        elif field.annotation is not None and SecretStr in getattr(
            field.annotation, "__args__", ()
        ):
            shown = "(secret)"
        else:
            shown = f"`{default}`"
        rows.append([f"`{env}`", f"`{name}`", shown, field.description or ""])
    return _table(["variable", "field", "default", "what"], rows)


def cli() -> str:
    """Every command of the `fielding-worker` Click group, with its options."""
    import click

    from worker.entrypoints.cli import main

    sections: list[str] = []

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in sorted(group.commands.items()):
            path = f"{prefix} {name}"
            if isinstance(command, click.Group):
                walk(command, path)
                continue
            ctx = click.Context(command, info_name=path)
            sections.append(f"### `{path}`\n\n{_cell(command.help or '')}\n")
            usage = command.get_usage(ctx).removeprefix("Usage: ")
            sections.append(f"```\n{usage}\n```\n")
            rows = []
            for param in command.params:
                if isinstance(param, click.Argument):
                    rows.append([f"`{param.human_readable_name}`", "argument"])
                elif (record := param.get_help_record(ctx)) is not None:
                    rows.append([f"`{record[0]}`", record[1]])
            if rows:
                sections.append(_table(["option", "what"], rows) + "\n")

    walk(main, "fielding-worker")
    return "\n".join(sections)


# What each status means to a sender, and what to do. The statuses themselves and their error
# objects come from the code; the build fails when this prose and the code disagree.
STATUS_PROSE: dict[int, tuple[str, str]] = {
    200: (
        "`launch_now_fielding_run`: the run is live; `etag` is the new version, `body` its new times",
        "done",
    ),
    201: ("a job command: `body.job` is the job (`Completed` or `Failed`)", "read the job"),
    202: (
        "`update_fielding_run`: the times changed; `etag` is the new version, `body.id` the run",
        "done",
    ),
    204: (
        "complete, pause, resume, relaunch, and the timers; `etag` is the new version",
        "done",
    ),
    400: (
        "the command breaks its schema; `invalid_params` names each field; or a reused "
        '`command_id` with other content (`invalid_params[0].name == "command_id"`)',
        "fix the command",
    ),
    401: ("token missing, malformed, badly signed or expired", "get a new token, retry"),
    403: ("a valid token without this `account_id`; or a timer command with a user's token", "—"),
    404: ("no run with these account, project, target group and run ids", "—"),
    412: (
        "`if_match` is not the current version (even when the state is also wrong)",
        "read the run again",
    ),
    422: (
        "the machine has no such transition from the run's status (the detail names both), "
        "resume or relaunch after the end time, or a timer before its time",
        "—",
    ),
    429: (
        "the account sent more than `FIELDING_RATE_LIMIT` commands in "
        "`FIELDING_RATE_LIMIT_WINDOW_SECONDS`, counted across all replicas",
        "retry after `retry_after_seconds`",
    ),
    500: (
        "the command failed unexpectedly on every try, alone in its batch; a copy is in the DLQ",
        "report it",
    ),
}
TOO_MANY_REQUESTS_OBJECT = "too_many_requests_problem_details"


def statuses() -> str:
    """`schemas.result.Status`, each with its error object (`ERROR_OBJECTS`) and the prose above."""
    from typing import get_args

    from schemas.errors import ErrorObjectName
    from schemas.result import Status
    from worker.service.outputs import ERROR_OBJECTS

    codes = {int(s) for s in Status}
    if codes != set(STATUS_PROSE):
        raise ValueError(
            f"docs_hooks/reference.py STATUS_PROSE has {sorted(STATUS_PROSE)}, "
            f"schemas.result.Status has {sorted(codes)}"
        )
    objects = {int(s): name for s, name in ERROR_OBJECTS.items()}
    objects[int(Status.TOO_MANY_REQUESTS)] = TOO_MANY_REQUESTS_OBJECT
    unused = set(get_args(ErrorObjectName)) - set(objects.values())
    if unused:
        raise ValueError(f"error objects no status carries: {sorted(unused)}")
    rows = [
        [
            f"{s.value}",
            s.name.lower(),
            f"`{objects[s.value]}`" if s.value in objects else "—",
            *STATUS_PROSE[s.value],
        ]
        for s in Status
    ]
    return _table(["status", "name", "`error.object`", "when", "what to do"], rows)


def _openapi() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "docs" / "openapi.json").read_text())
    return loaded


def http_api() -> str:
    """Every operation of docs/openapi.json: method, path, operation id and statuses."""
    document = _openapi()
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            rows.append(
                [
                    f"`{method.upper()}`",
                    f"`{path}`",
                    f"`{operation['operationId']}`",
                    ", ".join(sorted(operation["responses"])),
                ]
            )
    return _table(["method", "path", "operation id", "statuses"], rows)


def _asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    return loaded


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def topics() -> str:
    """Every channel of docs/asyncapi.json, then each one's messages with key and summary."""
    document = _asyncapi()
    setting_of = _topic_settings()
    channels = document["channels"]
    rows = [
        [
            f"`{channel['address']}`",
            f"`{setting_of.get(channel['address'], '')}`",
            str(channel["bindings"]["kafka"].get("partitions", "")),
            channel.get("description", ""),
        ]
        for channel in channels.values()
    ]
    out = [_table(["topic (default)", "setting", "partitions", "what"], rows)]
    for channel in channels.values():
        messages = []
        for message_ref in channel["messages"].values():
            message = _resolve(document, message_ref["$ref"])
            key = message.get("bindings", {}).get("kafka", {}).get("key", {})
            messages.append(
                [f"`{message['name']}`", key.get("description", "—"), message.get("summary", "")]
            )
        out.append(f"### `{channel['address']}`\n\n" + _table(["message", "key", "what"], messages))
    return "\n\n".join(out)


def _topic_settings() -> dict[str, str]:
    """The default topic names of `Settings`, mapped to their environment variables."""
    from worker.settings import Settings

    names = {}
    for name, field in Settings.model_fields.items():
        if name.endswith("_topic"):
            choices = getattr(field.validation_alias, "choices", [])
            names[str(field.default)] = next(c for c in choices if c.isupper())
    return names


def metrics() -> str:
    """Every metric `worker.observability.metrics` defines, with its type, labels and help."""
    from prometheus_client.metrics import MetricWrapperBase

    import worker.observability.metrics as module

    rows = []
    for metric in vars(module).values():
        if not isinstance(metric, MetricWrapperBase) or metric._labelvalues:
            continue  # a child (one label value) of a metric listed already
        suffix = "_total" if metric._type == "counter" else ""
        rows.append(
            [
                f"`{metric._name}{suffix}`",
                metric._type,
                ", ".join(f"`{label}`" for label in metric._labelnames),
                metric._documentation,
            ]
        )
    return _table(["metric", "type", "labels", "what"], sorted(rows))


def state_diagram() -> str:
    """The lifecycle, drawn from `fielding_statemachine.machine.FieldingRunMachine`."""
    from statemachine.contrib.diagram import MermaidGraphMachine

    from fielding_statemachine.machine import FieldingRunMachine

    return f"```mermaid\n{MermaidGraphMachine(FieldingRunMachine)().strip()}\n```"


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings,
    "cli": cli,
    "statuses": statuses,
    "http-api": http_api,
    "topics": topics,
    "metrics": metrics,
    "state-diagram": state_diagram,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: no generator named {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(generated, markdown)
