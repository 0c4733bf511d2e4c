"""Field types shared by the messages: identifiers, ETags, timestamps."""

from __future__ import annotations

import functools
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer, StringConstraints

INT32_MAX = 2**31 - 1

# A run's status as messages write it; a unit test holds it to the domain's `RunStatus`.
RunStatusName = Literal["scheduled", "live", "paused", "completed"]

ULID_PATTERN = r"^[0-9A-Z]{26}$"
Ulid = Annotated[str, StringConstraints(pattern=ULID_PATTERN)]
AccountId = Annotated[int, Field(gt=0, le=INT32_MAX)]
# No NUL: Postgres text cannot hold one, and the id is stored for idempotency.
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]

ETAG_PATTERN = r'^(W/)?"(0|[1-9][0-9]{0,9})"$'
_ETAG = re.compile(ETAG_PATTERN)
ETag = Annotated[str, StringConstraints(pattern=ETAG_PATTERN)]


def etag_of(version: int) -> str:
    """The weak ETag the public API shows for a run's version."""
    return f'W/"{version}"'


def version_of(etag: str) -> int:
    """The version an If-Match value names; `W/"5"` and `"5"` both name 5."""
    match = _ETAG.match(etag)
    if match is None:
        raise ValueError(f"not an ETag: {etag!r}")
    return int(match.group(2))


@functools.lru_cache(maxsize=1024)  # a batch's results and events share one processing time
def format_timestamp(moment: datetime) -> str:
    """RFC 3339, UTC, milliseconds: 2026-11-29T10:00:00.012Z (the year always four digits)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def in_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a ValueError (so a 400) for one that UTC's calendar cannot
    hold, such as 0001-01-01T00:00:00+01:00."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is out of range once in UTC") from None


def representable(moment: datetime) -> datetime:
    in_utc(moment)
    return moment


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(representable),
    PlainSerializer(format_timestamp, return_type=str),
]


def utc_milliseconds(moment: datetime) -> datetime:
    """The same instant in UTC, to the millisecond: as it will be published and compared."""
    utc = in_utc(moment)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


# A run's start or end as a command gives it: kept as it will be published, so that
# `...T11:00:00.000+01:00` and `...T10:00:00.000Z` are one time, stored and compared alike.
RunTime = Annotated[
    AwareDatetime,
    AfterValidator(utc_milliseconds),
    PlainSerializer(format_timestamp, return_type=str),
]


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, in Crockford's base 32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
