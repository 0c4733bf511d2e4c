"""The request-reply header protocol between `fielding-worker serve` and the worker.

A command sent by `serve` names the partition of the replies topic its HTTP process reads
(`fielding-reply-to`) and the request's own random id (`fielding-reply-id`); the worker copies
the command's result to that partition, keyed by that id, adding where the command sat
(`fielding-reply-origin`). A reply id can be copied into another record by anyone who reads the
commands topic; the record's place cannot, so `serve` takes only the reply to the record it
produced itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # outputs imports the envelope, which imports this module
    from worker.service.outputs import Emission

REPLY_TO = "fielding-reply-to"
REPLY_ID = "fielding-reply-id"
REPLY_ID_PATTERN = re.compile(rb"[0-9a-f]{32}")
MOST_REPLY_PARTITIONS = 1 << 16
# On a reply only: where the command it answers sits ("partition:offset" of the commands topic).
REPLY_ORIGIN = "fielding-reply-origin"


def origin_text(partition: int, offset: int) -> bytes:
    return f"{partition}:{offset}".encode()


def reply_address(headers: Sequence[tuple[str, bytes | None]]) -> tuple[int, bytes] | None:
    """Where `serve` waits for this command's result, when both its headers say so and are
    well formed: the replies partition `fielding-reply-to` names (decimal digits), and the key
    `fielding-reply-id` gives (32 lowercase hex digits, random per request: a reply reaches
    the request that asked, not another with the same command_id)."""
    partition = reply_id = None
    for key, value in headers:
        if key == REPLY_TO and value and len(value) <= 5 and value.isdigit():
            partition = int(value)
        elif key == REPLY_ID and value and REPLY_ID_PATTERN.fullmatch(value):
            reply_id = value
    if partition is None or reply_id is None or partition >= MOST_REPLY_PARTITIONS:
        return None
    return partition, reply_id


def reply_headers(emission: Emission) -> list[tuple[str, bytes | None]]:
    """A result's headers on its copy for `serve`: its own, and where its command sits. A
    list: aiokafka's record batch builder takes no other sequence."""
    headers = list(emission.headers)
    if emission.origin is not None:
        origin = emission.origin
        headers.append((REPLY_ORIGIN, origin_text(origin.partition, origin.offset)))
    return headers
