"""Writes the JSON Schema of every message into schemas/json/ (checked in).

python -m schemas.generate           # rewrite the files
python -m schemas.generate --check   # exit 1 if a file is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from schemas.command import COMMAND_MODELS
from schemas.dead_letter import DeadLetterStub
from schemas.event import (
    FieldingRunUpdated,
    TargetGroupClosed,
    TargetGroupOpened,
    TargetGroupPaused,
)
from schemas.job import BulkJob, FieldingRunJob
from schemas.result import CommandResult
from schemas.run_state import FieldingRunState

JSON_DIR = Path(__file__).parent / "json"

Mode = Literal["validation", "serialization"]
# Commands are read (validation); results and events are written (serialization).
MESSAGES: dict[str, tuple[type[BaseModel], Mode]] = {
    **{
        f"{model.model_config['title']}.command.schema.json": (model, "validation")
        for model in COMMAND_MODELS
    },
    "command_result.schema.json": (CommandResult, "serialization"),
    **{
        f"{model.model_config['title']}.event.schema.json": (model, "serialization")
        for model in (TargetGroupOpened, TargetGroupPaused, TargetGroupClosed, FieldingRunUpdated)
    },
    # The job resources, as `jobs get` and the HTTP API show them (and results carry them).
    "fielding_run_job.schema.json": (FieldingRunJob, "serialization"),
    "bulk_job.schema.json": (BulkJob, "serialization"),
    "dead_letter_stub.schema.json": (DeadLetterStub, "serialization"),
    "fielding_run_state.schema.json": (FieldingRunState, "serialization"),
}


def render(model: type[BaseModel], mode: Mode) -> str:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(mode=mode),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale_files() -> list[str]:
    return [
        name
        for name, (model, mode) in MESSAGES.items()
        if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text() != render(model, mode)
    ]


def main() -> int:
    if "--check" in sys.argv[1:]:
        stale = stale_files()
        for name in stale:
            print(f"stale: schemas/json/{name} (run python -m schemas.generate)")
        return 1 if stale else 0
    JSON_DIR.mkdir(exist_ok=True)
    for name, (model, mode) in MESSAGES.items():
        (JSON_DIR / name).write_text(render(model, mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
