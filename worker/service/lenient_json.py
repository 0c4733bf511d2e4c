"""Reading what can be read of a record the schema refused, so that its sender gets a 400
rather than silence: the top-level members of a JSON object, whatever else it holds.

`json.loads` handles almost every document; two kinds of valid JSON make it fail and get
special care here. Integers of thousands of digits (Python refuses to convert them) are read
as a marker instead. Nesting deeper than the parser's recursion limit is skimmed without
recursion: the top level is read token by token and nested values are skipped, so the
command's own fields (`command_id`, the ids) stay readable whatever a nested member holds.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final


class _Unreadable:
    """A member whose value could not be taken whole: too deep, or a number too long."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Final = _Unreadable()
LONGEST_INTEGER = 40  # digits; no field of a command is longer


def _integer(text: str) -> int | _Unreadable:
    return int(text) if len(text) <= LONGEST_INTEGER else UNREADABLE


class NotJson(ValueError):
    """The value is not a JSON document."""


class NotAnObject(ValueError):
    """The value is JSON, but not an object."""


def top_level_members(text: str, *, too_deep: bool = False) -> dict[str, Any]:
    """The members of the JSON object `text`, as `json.loads` would give them, except that a
    member whose value cannot be read (too deep, a number too long) maps to UNREADABLE.
    `too_deep`: another parser already found the nesting too deep, so `json.loads` is not
    tried (a RecursionError inside it is best not provoked: CPython 3.11 has been seen to
    misreport recursion depths afterwards).

    Raises NotJson or NotAnObject."""
    if too_deep:
        return _skim(text)
    try:
        document = json.loads(text, parse_int=_integer)
    except RecursionError:
        return _skim(text)
    except ValueError as error:
        raise NotJson(str(error)) from None
    if not isinstance(document, dict):
        raise NotAnObject(type(document).__name__)
    return document


# Strings (with escapes), the six structural characters, and runs of anything else (numbers,
# literals, or garbage that json.loads then refuses).
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+|\s+', re.DOTALL)


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return json.loads(token)
    return json.loads(token, parse_int=_integer)


def _skim(text: str) -> dict[str, Any]:
    """The top level of a document too deep for `json.loads`, read without recursion. Nested
    values are skipped by counting brackets; the document's overall shape is checked (every
    bracket closed, members well formed), not every nested value's grammar."""
    members: dict[str, Any] = {}
    depth = 0
    expect = "open"  # open -> key -> colon -> value -> comma_or_close -> key ... -> end
    key: str | None = None
    position = 0
    try:
        for match in _TOKENS.finditer(text):
            if match.start() != position:
                raise NotJson("unexpected character")
            position = match.end()
            token = match.group()
            if token.isspace():
                continue
            if depth > 1 or (depth == 1 and expect == "nested"):
                if token in "{[":
                    depth += 1
                elif token in "}]":
                    depth -= 1
                    if depth == 1:
                        expect = "comma_or_close"
                continue
            if expect == "open":
                if token == "[":
                    raise NotAnObject("list")
                if token != "{":
                    raise NotJson("not an object")
                depth, expect = 1, "key"
            elif expect == "key" and token.startswith('"'):
                key, expect = json.loads(token), "colon"
            elif expect == "key" and token == "}" and not members:
                depth, expect = 0, "end"
            elif expect == "colon" and token == ":":
                expect = "value"
            elif expect == "value":
                assert key is not None
                if token in "{[":
                    members[key] = UNREADABLE
                    depth, expect = 2, "nested"
                else:
                    members[key] = _scalar(token)
                    expect = "comma_or_close"
            elif expect == "comma_or_close" and token == ",":
                expect = "key"
            elif expect == "comma_or_close" and token == "}":
                depth, expect = 0, "end"
            else:
                raise NotJson(f"unexpected {token[:10]!r}")
    except ValueError as error:  # json.loads of a single token
        if isinstance(error, NotJson | NotAnObject):
            raise
        raise NotJson(str(error)) from None
    if position != len(text) or expect != "end":
        raise NotJson("the document is not complete")
    return members
