"""The public API's own OpenAPI documents for the operations `serve` offers (tests/data/README.md
says where they come from), loaded for Schemathesis, and the checks that hold an answer to
them: its status, content type, headers and body, each as the public document says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
import yaml
from schemathesis import checks

DATA = Path(__file__).resolve().parents[1] / "data"
# The fielding operations and the bulk ("batch") ones: 12 and 10, the public API's 22.
PUBLIC_DOCUMENTS = (
    DATA / "cint-fielding-api-openapi.yml",
    DATA / "cint-fielding-batch-api-openapi.yml",
)

# Every check of an answer against the document, not only its status.
RESPONSE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def public_document(path: Path) -> dict[str, Any]:
    """A document as data (YAML makes its unquoted example `2025-12-18` a date: Schemathesis
    reads the files itself)."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def public_schemas() -> list[Any]:
    """Both documents, as Schemathesis schemas (their paths are relative to `/v1`)."""
    return [schemathesis.openapi.from_path(path) for path in PUBLIC_DOCUMENTS]


def public_operation(method: str, path: str) -> Any:
    """One operation of the public documents, by its method and path (without `/v1`)."""
    for file in PUBLIC_DOCUMENTS:
        if path in public_document(file)["paths"]:
            return schemathesis.openapi.from_path(file)[path][method]
    raise KeyError(f"{method} {path}")
