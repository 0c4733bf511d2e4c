"""Requests that Schemathesis generates from an OpenAPI document, as the schema tests send them
to a real `serve`: part of them addressed to the test's own runs, each valid one with a key of
its own and its times in order. Kept apart from tests/support/http.py, which every test session
imports, so that only the schema tests load Schemathesis."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import hypothesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

# Small, as CI runs them: this many requests of each operation in each mode a test generates.
EXAMPLES_PER_OPERATION = 8

# The settings of each operation's @given: requests are generated only (none replayed from a
# database, none shrunk), with no deadline and no health check, since each goes to `serve`.
PER_OPERATION = hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.generate],
)


def fresh_key(case: Any) -> Any:
    """The generator reuses keys ("0") across operations, and a key reused for another command
    is a 400 by contract; each valid request gets a key of its own."""
    if case.headers and "idempotency-key" in case.headers:
        case.headers["idempotency-key"] = str(uuid.uuid4())
    return case


def times_in_order(case: Any) -> bool:
    """The one rule JSON Schema cannot say: a run ends after it starts (400 otherwise)."""
    body = case.body if isinstance(case.body, dict) else {}
    start, end = body.get("start_fielding_at"), body.get("end_fielding_at")
    if not (isinstance(start, str) and isinstance(end, str)):
        return True
    try:
        return datetime.fromisoformat(end) > datetime.fromisoformat(start)
    except ValueError:
        return True


def generated_cases(
    operation: Any, mode: GenerationMode, known: dict[str, Any]
) -> st.SearchStrategy[Any]:
    """Cases of `operation` in `mode`, either as generated or with those of its path
    parameters that `known` has pinned to them; valid ones (POSITIVE) only with their times in
    order, each with a fresh key."""
    names = {parameter.name for parameter in operation.path_parameters}
    pinned = {name: value for name, value in known.items() if name in names}
    strategy = st.one_of(
        operation.as_strategy(mode),
        operation.as_strategy(mode, path_parameters=pinned),
    )
    if mode is GenerationMode.POSITIVE:
        strategy = strategy.filter(times_in_order).map(fresh_key)
    return strategy
