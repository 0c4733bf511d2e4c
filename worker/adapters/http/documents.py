"""The HTTP API's own description: the OpenAPI document generated from its routes (served at
/v1/openapi.json, checked in as docs/openapi.json), cleaned of what FastAPI adds that this API
does not do."""

from __future__ import annotations

from typing import Any

from fastapi.openapi.utils import get_openapi

from schemas.api import API_VERSION
from worker.adapters.http.routes import batch, router

TITLE = "fielding-worker"
DESCRIPTION = "The public API's fielding operations, served in front of the worker."


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document.

    FastAPI's, without the 422 "validation error" it adds to every operation: a request that
    breaks its parameters is answered 400 here (`errors.invalid`), as the public API does, and
    422 means an invalid state."""
    document = get_openapi(
        title=TITLE,
        version=API_VERSION,
        description=DESCRIPTION,
        routes=[*router.routes, *batch.routes],
    )
    for operation in (op for path in document["paths"].values() for op in path.values()):
        refused = operation["responses"].get("422", {})
        schema = refused.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref", "").endswith("/HTTPValidationError"):
            del operation["responses"]["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(unused, None)
    # Every operation takes the bearer token (judged in `params.principal`, not by a FastAPI
    # security scheme).
    document["components"]["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    document["security"] = [{"bearerAuth": []}]
    return document
