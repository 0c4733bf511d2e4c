"""The public API's fielding operations over HTTP (`fielding-worker serve`), under `/v1`:
the app assembled from its parts, one job each: `params` (what a request carries), `routes`
(reads, and a route per command type of the catalogue), `answers` (results as HTTP
responses), `errors` (every refusal with the public API's body), `limits` (the body's size)
and `documents` (the OpenAPI document).

FastAPI, on uvicorn: it is Starlette (ASGI, small, well kept) plus what this API needs most,
an OpenAPI document generated from the routes and from the same pydantic models as everything
else, with the public API's operation ids.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from schemas.api import API_VERSION
from worker.adapters.http.answers import ApiContext
from worker.adapters.http.documents import DESCRIPTION, TITLE, openapi_document
from worker.adapters.http.errors import HANDLERS
from worker.adapters.http.limits import BodyLimit
from worker.adapters.http.read_limit import ReadLimit
from worker.adapters.http.request_metrics import RequestMetrics
from worker.adapters.http.routes import batch, router
from worker.adapters.http.waits import Waits
from worker.adapters.kafka.asyncapi import asyncapi_document


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title=TITLE,
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        redirect_slashes=False,  # a redirect would answer before the token is judged
    )
    app.add_middleware(BodyLimit, body_seconds=context.body_seconds)
    app.add_middleware(RequestMetrics)  # outermost: it sees every answer, 413 and 408 too
    app.state.context = context
    app.state.waits = Waits(context.max_waiting)
    app.state.read_limit = ReadLimit(context.reads_per_window, context.read_window_seconds)
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)
    app.include_router(router)
    app.include_router(batch)
    document = openapi_document()
    app.openapi = lambda: document  # type: ignore[method-assign]
    events = asyncapi_document()
    app.add_api_route(
        "/v1/asyncapi.json",
        lambda: JSONResponse(events),
        methods=["GET"],
        include_in_schema=False,
    )
    return app
