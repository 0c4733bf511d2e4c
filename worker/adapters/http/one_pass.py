"""Routes whose path and headers are checked in one pass, FastAPI's own handling kept for the
requests that fail it.

FastAPI solves a route's parameters one at a time, in Python, with its own bookkeeping around
each: about a fifth of serve's CPU per change request (`python -m bench.serve_cpu --profile`).
Here a dependency's parameters (all strings, from the path and the headers) are checked at
once, against the same annotated types, in one pydantic-core call. A request that passes is
answered from there; one that does not goes to FastAPI's handler, which checks again, one at a
time, and refuses it as it always has: a refusal (400, its invalid params, their order) is
FastAPI's, word for word. Both checks apply the same types to the same values, so what passes
one passes the other, and becomes the same fields.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NotRequired, get_args, get_type_hints

from fastapi import Request, Response
from fastapi.params import Header, Param, Path
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from worker.adapters.http.params import verified_caller
from worker.service.auth import Principal

Fields = Callable[..., Awaitable[dict[str, Any]]]
Act = Callable[[Request, Principal, dict[str, Any]], Awaitable[Response]]


class OnePass:
    """The parameters of `fields` (a FastAPI dependency taking path and header parameters
    only), checked together: the names they are read under, and one validator for all."""

    def __init__(self, fields: Fields) -> None:
        hints = get_type_hints(fields, include_extras=True)
        annotations: dict[str, Any] = {}
        self._path: list[str] = []
        self._headers: list[str] = []
        for name, parameter in inspect.signature(fields).parameters.items():
            declared = next(m for m in get_args(hints[name])[1:] if isinstance(m, Param))
            key = declared.alias or name
            if isinstance(declared, Path):
                self._path.append(key)
            else:
                assert isinstance(declared, Header), f"{name}: path and headers only"
                self._headers.append(key)
            # Keyed as the request names it (the alias); read back under the name.
            required = parameter.default is inspect.Parameter.empty
            annotations[name] = hints[name] if required else NotRequired[hints[name]]
        self._adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(
            TypedDict(f"{fields.__name__}_parameters", annotations)  # type: ignore[operator]
        )

    def check(self, request: Request) -> dict[str, Any] | None:
        """The parameters by name, or None when any is missing or invalid. A header is read as
        FastAPI reads it: its first occurrence, by any case."""
        given = {key: request.path_params[key] for key in self._path}
        for key in self._headers:
            if (value := request.headers.get(key)) is not None:
                given[key] = value
        try:
            return self._adapter.validate_python(given)
        except ValidationError:
            return None


def one_pass_route(fields: Fields, act: Act) -> type[APIRoute]:
    """A route class for an endpoint `(request, user: User, fields: <fields>)`: the caller is
    judged first (401), as the endpoint's first dependency is; then its fields, in one pass;
    then `act`. Failing the pass, the endpoint as FastAPI declares it answers."""
    parameters = OnePass(fields)

    class OnePassRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            declared = super().get_route_handler()

            async def handler(request: Request) -> Response:
                user = verified_caller(request)
                checked = parameters.check(request)
                if checked is None:
                    return await declared(request)
                return await act(request, user, await fields(**checked))

            return handler

    return OnePassRoute
