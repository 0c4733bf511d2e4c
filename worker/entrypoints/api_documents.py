"""Writes the service's API documents into docs/ (checked in), generated from the code that
serves them, so a reader (or a client generator) never needs a running service.

python -m worker.entrypoints.api_documents           # rewrite the files
python -m worker.entrypoints.api_documents --check   # exit 1 if a file is stale
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from worker.adapters.http.documents import openapi_document
from worker.adapters.kafka.asyncapi import asyncapi_document

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def _render(document: Callable[[], dict[str, object]]) -> Callable[[], str]:
    return lambda: json.dumps(document(), indent=2, sort_keys=True) + "\n"


DOCUMENTS: dict[str, Callable[[], str]] = {
    "openapi.json": _render(openapi_document),  # the HTTP API
    "asyncapi.json": _render(asyncapi_document),  # the Kafka topics
}


def stale_files() -> list[str]:
    return [
        name
        for name, render in DOCUMENTS.items()
        if not (DOCS_DIR / name).exists() or (DOCS_DIR / name).read_text() != render()
    ]


def main() -> int:
    if "--check" in sys.argv[1:]:
        stale = stale_files()
        for name in stale:
            print(f"stale: docs/{name} (run python -m worker.entrypoints.api_documents)")
        return 1 if stale else 0
    DOCS_DIR.mkdir(exist_ok=True)
    for name, render in DOCUMENTS.items():
        (DOCS_DIR / name).write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
