"""Committed offsets while the group coordinator cannot answer yet (after a broker restart):
aiokafka must wait and ask again, never report "nothing committed" (a new owner would then
start the partition from its log start and answer every command there a second time)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetFetchResponse_v3

from worker.adapters.kafka import strict_offset_fetch

TP = TopicPartition("commands", 0)
LOADING = 14  # COORDINATOR_LOAD_IN_PROGRESS
NOT_COORDINATOR = 16


def answer(error_code: int = 0, offset: int | None = None) -> OffsetFetchResponse_v3:
    """An OffsetFetch v3 response as the broker builds it: a group-level error comes with no
    partitions at all."""
    topics = [] if offset is None else [(TP.topic, [(TP.partition, offset, "", 0)])]
    return OffsetFetchResponse_v3(throttle_time_ms=0, topics=topics, error_code=error_code)


class Client:
    def __init__(self, *responses: OffsetFetchResponse_v3) -> None:
        self.responses = list(responses)

    async def send(self, node_id: int, request: Any, group: Any = None) -> OffsetFetchResponse_v3:
        return self.responses.pop(0)


def coordinator(client: Client) -> GroupCoordinator:
    """A group coordinator with only what reading committed offsets uses (its constructor
    starts background tasks against a broker)."""
    made: Any = GroupCoordinator.__new__(GroupCoordinator)
    made.group_id = "group"
    made.coordinator_id = 1
    made._client = client
    made._retry_backoff_ms = 1
    made.dead = 0

    async def known() -> None:
        made.coordinator_id = 1

    def dead() -> None:
        made.dead += 1

    made.ensure_coordinator_known = known
    made.coordinator_dead = dead
    return made  # type: ignore[no-any-return]


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GroupCoordinator, "_send_req", GroupCoordinator._send_req)
    strict_offset_fetch.install()


async def test_aiokafka_alone_reads_a_loading_coordinator_as_nothing_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reason for the patch; should aiokafka learn to read the top-level error, this fails
    # and the patch can go.
    monkeypatch.setattr(GroupCoordinator, "_send_req", inspect.unwrap(GroupCoordinator._send_req))
    client = Client(answer(LOADING), answer(offset=1234))
    assert await coordinator(client).fetch_committed_offsets({TP}) == {}


@pytest.mark.usefixtures("strict")
async def test_a_loading_coordinator_is_waited_for_and_asked_again() -> None:
    client = Client(answer(LOADING), answer(LOADING), answer(offset=1234))
    committed = await coordinator(client).fetch_committed_offsets({TP})
    assert committed[TP].offset == 1234
    assert client.responses == []


@pytest.mark.usefixtures("strict")
async def test_a_coordinator_that_moved_is_looked_up_again() -> None:
    client = Client(answer(NOT_COORDINATOR), answer(offset=7))
    group = coordinator(client)
    committed = await group.fetch_committed_offsets({TP})
    assert committed[TP].offset == 7
    assert group.dead == 1  # type: ignore[attr-defined]


@pytest.mark.usefixtures("strict")
async def test_installing_twice_wraps_once() -> None:
    once = GroupCoordinator._send_req
    strict_offset_fetch.install()
    assert GroupCoordinator._send_req is once
