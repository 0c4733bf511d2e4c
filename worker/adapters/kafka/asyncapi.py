"""The worker's Kafka interface as an AsyncAPI 3.1 document: every topic with its key, headers
and messages, and what the worker receives and sends on each.

Generated, never written by hand: the payloads are the JSON Schema of the same pydantic models
the worker reads and writes (`schemas/`), the topic names and partitions are the settings'
defaults, the header names are the ones the code uses. Checked in as docs/asyncapi.json (a test
fails when it is stale, another validates it against AsyncAPI's own JSON Schema) and served by
`fielding-worker serve` at /v1/asyncapi.json.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.api import API_VERSION
from schemas.command import COMMAND_MODELS
from schemas.dead_letter import DeadLetterStub
from schemas.event import (
    FieldingRunUpdated,
    TargetGroupClosed,
    TargetGroupOpened,
    TargetGroupPaused,
)
from schemas.result import CommandResult
from schemas.run_state import FieldingRunState
from schemas.types import ULID_PATTERN
from worker.service import outputs
from worker.service.auth import TIMER_SIGNATURE
from worker.service.catalogue import SYSTEM_COMMAND_TYPES
from worker.service.dead_letters import REDRIVES
from worker.service.hanging import COMMAND_ORIGIN
from worker.service.replies import REPLY_ID, REPLY_ORIGIN, REPLY_TO
from worker.settings import Settings

ASYNCAPI_VERSION = "3.1.0"
EVENT_MODELS: tuple[type[BaseModel], ...] = (
    TargetGroupOpened,
    TargetGroupPaused,
    TargetGroupClosed,
    FieldingRunUpdated,
)
TRACEPARENT = {
    "type": "string",
    "description": "W3C Trace Context. On outputs: the command's trace, with the worker's span "
    "for the command (a fresh trace when the command had none or an invalid one).",
    "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
}
TRACESTATE = {"type": "string", "description": "W3C Trace Context, passed through."}
REDRIVES_HEADER = {
    "type": "string",
    "pattern": "^[0-9]+$",
    "description": "Set by `fielding-worker dlq redrive`: how many times the record was sent "
    "back from the DLQ. The worker ignores it, and copies it into the DLQ with the rest.",
}
DLQ_HEADERS = {
    outputs.DLQ_REASON: "why the record could not be answered",
    outputs.DLQ_TOPIC: "where it was",
    outputs.DLQ_PARTITION: "where it was",
    outputs.DLQ_OFFSET: "where it was",
    outputs.DLQ_STUB: '"true" on a stub (the record could not be copied)',
    outputs.DLQ_VALUE_SHA256: "on a stub whose value was read: the value's SHA-256, hex",
}


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _key(description: str, pattern: str | None = ULID_PATTERN) -> dict[str, Any]:
    key: dict[str, Any] = {"type": "string", "description": description}
    if pattern:
        key["pattern"] = pattern
    return {"kafka": {"key": key, "bindingVersion": "0.5.0"}}


def _message(
    name: str, title: str, summary: str, payload: str, headers: str, key: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "headers": _ref("schemas", headers),
        "payload": _ref("schemas", payload),
        "bindings": key,
    }


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def asyncapi_document() -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in COMMAND_MODELS),
        (CommandResult, "serialization"),
        *((model, "serialization") for model in EVENT_MODELS),
        (DeadLetterStub, "serialization"),
        (FieldingRunState, "serialization"),
    ]
    refs, definitions = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(definitions["$defs"])
    payload_of = {model: refs[(model, mode)]["$ref"].rsplit("/", 1)[1] for model, mode in pairs}
    schemas["CommandHeaders"] = {
        "type": "object",
        "required": ["authorization"],
        "properties": {
            "authorization": {
                "type": "string",
                "description": "Bearer <JWT>: HS256 (or RS256), claims sub, account_ids, exp.",
            },
            "traceparent": {**TRACEPARENT, "description": "W3C Trace Context (optional)."},
            "tracestate": TRACESTATE,
            REDRIVES: REDRIVES_HEADER,
            REPLY_TO: {
                "type": "string",
                "pattern": "^[0-9]{1,5}$",
                "description": "Set by `fielding-worker serve`: the partition of the replies "
                "topic its process reads; the result is copied there.",
            },
            REPLY_ID: {
                "type": "string",
                "pattern": "^[0-9a-f]{32}$",
                "description": "Set by `fielding-worker serve`, with fielding-reply-to: the "
                "request's own id, the key of the result's copy.",
            },
        },
    }
    trace = {k: v for k, v in schemas["CommandHeaders"]["properties"].items() if "trace" in k}
    schemas["TimerCommandHeaders"] = {
        "type": "object",
        "required": [TIMER_SIGNATURE],
        "properties": {
            TIMER_SIGNATURE: {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "The scheduler's proof of this one command, in place of a token: "
                "the hex HMAC-SHA256, with the system key, of its type, ids, version and "
                "command_id. Good for no other command.",
            },
            **trace,
            REDRIVES: REDRIVES_HEADER,
        },
    }
    schemas["OutputHeaders"] = {
        "type": "object",
        "properties": {
            "traceparent": TRACEPARENT,
            "tracestate": TRACESTATE,
            COMMAND_ORIGIN: {
                "type": "string",
                "pattern": "^[0-9]+:[0-9]+$",
                "description": "partition:offset of the command record this answers, on the "
                "commands topic (a redelivered command's output carries the same; a repeated "
                "command's does not). Absent on outputs written before it was added.",
            },
        },
    }
    schemas["ReplyHeaders"] = {
        "type": "object",
        "required": [REPLY_ORIGIN],
        "properties": {
            "traceparent": TRACEPARENT,
            "tracestate": TRACESTATE,
            REPLY_ORIGIN: {
                "type": "string",
                "pattern": "^[0-9]+:[0-9]+$",
                "description": "partition:offset of the command record answered, on the "
                "commands topic: `serve` takes only the reply to the record it produced.",
            },
        },
    }
    schemas["DeadLetterHeaders"] = {
        "type": "object",
        "description": "A copy keeps the record's own headers and adds these.",
        "required": [outputs.DLQ_REASON, outputs.DLQ_TOPIC],
        "properties": {
            name: {"type": "string", "description": d} for name, d in DLQ_HEADERS.items()
        },
    }
    schemas["AnyBytes"] = {"description": "The record's value, byte for byte (any bytes)."}

    messages: dict[str, Any] = {}
    for model in COMMAND_MODELS:
        kind = str(model.model_config["title"])
        keyed_by = (
            "fielding_run_id"
            if "fielding_run_id" in model.model_fields
            else "target_group_id"
            if "target_group_id" in model.model_fields
            else "project_id"
        )
        summary = _doc(model)
        headers = "CommandHeaders"
        if kind in SYSTEM_COMMAND_TYPES:
            summary += f" It carries no token: {TIMER_SIGNATURE} proves it."
            headers = "TimerCommandHeaders"
        messages[kind] = _message(
            kind,
            kind,
            summary,
            payload_of[model],
            headers,
            _key(f"{keyed_by}: one run's commands keep their order"),
        )
    messages["command_result"] = _message(
        "command_result",
        "command_result",
        _doc(CommandResult) + " Exactly one per command record with a readable command_id.",
        payload_of[CommandResult],
        "OutputHeaders",
        _key("fielding_run_id, or the command's own key when that is unreadable", None),
    )
    messages["command_reply"] = _message(
        "command_reply",
        "command_reply",
        "A copy of a command_result, for the `serve` process that sent the command.",
        payload_of[CommandResult],
        "ReplyHeaders",
        _key("the command's fielding-reply-id", "^[0-9a-f]{32}$"),
    )
    for event in EVENT_MODELS:
        kind = str(event.model_config["title"])
        messages[kind] = _message(
            kind,
            kind,
            _doc(event) + " Exactly once per change for a read_committed reader.",
            payload_of[event],
            "OutputHeaders",
            _key("target_group_id"),
        )
    messages["fielding_run_state"] = _message(
        "fielding_run_state",
        "fielding_run_state",
        _doc(FieldingRunState)
        + " One per change, in the change's transaction; the last one of a key is the run's "
        "current state.",
        payload_of[FieldingRunState],
        "OutputHeaders",
        _key("fielding_run_id: compaction keeps the last state of each run"),
    )
    messages["dead_letter_copy"] = {
        **_message(
            "dead_letter_copy",
            "dead_letter_copy",
            "A record that could not be answered, byte for byte, with its key and headers.",
            "AnyBytes",
            "DeadLetterHeaders",
            _key("the original record's key", None),
        ),
        "contentType": "application/octet-stream",
    }
    messages["dead_letter_stub"] = _message(
        "dead_letter_stub",
        "dead_letter_stub",
        _doc(DeadLetterStub),
        payload_of[DeadLetterStub],
        "DeadLetterHeaders",
        _key("the original key when under 1 KB, else none", None),
    )

    def channel(
        setting: str,
        partitions: str,
        description: str,
        names: list[str],
        configuration: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        kafka: dict[str, Any] = {"topic": _default(setting), "partitions": _default(partitions)}
        if configuration:
            kafka["topicConfiguration"] = configuration
        return {
            "address": _default(setting),
            "description": description,
            "messages": {name: _ref("messages", name) for name in names},
            "bindings": {"kafka": {**kafka, "bindingVersion": "0.5.0"}},
        }

    command_names = [str(m.model_config["title"]) for m in COMMAND_MODELS]
    event_names = [str(m.model_config["title"]) for m in EVENT_MODELS]
    channels = {
        "commands": channel("commands_topic", "commands_partitions", "Commands in.", command_names),
        "results": channel(
            "results_topic",
            "output_partitions",
            "One result per command record, in the command's trace.",
            ["command_result"],
        ),
        "events": channel(
            "events_topic",
            "output_partitions",
            "One event per change of a run, in the order of one run's changes.",
            event_names,
        ),
        "runStates": channel(
            "states_topic",
            "output_partitions",
            "Compacted: after each change of a run, the run as it then is. Read from the "
            "beginning (read_committed), the last record of each key is every run's current "
            "state.",
            ["fielding_run_state"],
            {"cleanup.policy": ["compact"]},
        ),
        "deadLetters": channel(
            "dlq_topic",
            "output_partitions",
            "Records that could not be answered (no readable command_id, or a 500).",
            ["dead_letter_copy", "dead_letter_stub"],
        ),
        "replies": channel(
            "replies_topic",
            "reply_partitions",
            "Copies of the results of commands sent by `fielding-worker serve`, keyed by "
            "their fielding-reply-id, on the partition their fielding-reply-to header names.",
            ["command_reply"],
        ),
    }

    def operation(
        action: str, name: str, summary: str, names: list[str], reply: bool = False
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "action": action,
            "summary": summary,
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{m}"} for m in names],
        }
        if reply:
            op["reply"] = {
                "channel": {"$ref": "#/channels/results"},
                "messages": [{"$ref": "#/channels/results/messages/command_result"}],
            }
        return op

    operations = {
        "receiveCommands": operation(
            "receive",
            "commands",
            "The worker consumes every command type; each gets exactly one result.",
            command_names,
            reply=True,
        ),
        "sendResults": operation(
            "send", "results", "A result per command record.", ["command_result"]
        ),
        "sendEvents": operation("send", "events", "An event per change of a run.", event_names),
        "sendRunStates": operation(
            "send",
            "runStates",
            "A run's state per change, in the transaction of the change's event.",
            ["fielding_run_state"],
        ),
        "sendDeadLetters": operation(
            "send",
            "deadLetters",
            "A copy (or a stub) of each record that could not be answered.",
            ["dead_letter_copy", "dead_letter_stub"],
        ),
        "sendReplies": operation(
            "send", "replies", "For `serve`: a copy of its commands' results.", ["command_reply"]
        ),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "fielding-worker",
            "version": API_VERSION,
            "description": "Fielding runs' lifecycle as Kafka commands, results and events. "
            "Outputs are written in Kafka transactions: read them with "
            "isolation.level=read_committed.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": _default("kafka_bootstrap_servers"),
                "protocol": "kafka",
                "description": "`make run`'s broker (Apache Kafka 4, KRaft).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
