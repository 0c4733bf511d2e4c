"""Committed offsets read strictly: a group-level error is an error, not "nothing committed".

A group coordinator answers OffsetFetch (v2 and later) for the whole group at once when it
cannot answer it yet (its partition of __consumer_offsets still loading after a broker
restart, or moved away): the error is in the response's top-level `error_code`, and there are
no partitions. aiokafka 0.14 reads only the partitions' error codes, so it returns no
committed offset at all. A new owner taking its partitions at that moment would start them
from their log start and answer every command there again (replayed from the store, but
published twice). Raising the group-level error instead lets aiokafka do what it does for the
same error on a partition: find the coordinator again if need be, wait, and ask again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetFetchRequest

SendRequest = Callable[[Any, Any], Awaitable[Any]]

# The coordinator is elsewhere or gone: look it up again before asking again.
_COORDINATOR_MOVED = (errors.NotCoordinatorForGroupError, errors.GroupCoordinatorNotAvailableError)


def strict(send_request: SendRequest) -> SendRequest:
    """`GroupCoordinator._send_req`, raising the top-level error of an OffsetFetch response."""

    @functools.wraps(send_request)
    async def send_strictly(coordinator: Any, request: Any) -> Any:
        response = await send_request(coordinator, request)
        if isinstance(request, OffsetFetchRequest):
            error_code = getattr(response, "error_code", 0)  # absent before v2
            if error_code:
                error = errors.for_code(error_code)
                if issubclass(error, _COORDINATOR_MOVED):
                    coordinator.coordinator_dead()
                raise error()
        return response

    send_strictly.strict_offset_fetch = True  # type: ignore[attr-defined]
    return send_strictly


def install() -> None:
    """Makes every group coordinator of this process read committed offsets strictly."""
    current = GroupCoordinator._send_req
    if not getattr(current, "strict_offset_fetch", False):
        GroupCoordinator._send_req = strict(current)
