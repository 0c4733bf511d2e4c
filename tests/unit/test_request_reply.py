"""Request-reply's two ends, without a broker: which headers name a reply address (any others
get no reply, and never fail the command), and that a waiting request takes only a reply that
answers its own command and account."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from schemas.command import new_command
from schemas.types import new_ulid
from worker.adapters.kafka.request_reply import RequestReply
from worker.service.outputs import REPLY_ID, REPLY_TO, reply_address

REPLY = b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("headers", "address"),
    [
        ([(REPLY_TO, b"3"), (REPLY_ID, REPLY)], (3, REPLY)),
        ([(REPLY_ID, REPLY), (REPLY_TO, b"65535")], (65535, REPLY)),
        ([(REPLY_TO, b"3")], None),  # no reply id: nobody could be told apart
        ([(REPLY_ID, REPLY)], None),
        ([(REPLY_TO, b"65536"), (REPLY_ID, REPLY)], None),
        ([(REPLY_TO, b"-1"), (REPLY_ID, REPLY)], None),
        ([(REPLY_TO, b"+1"), (REPLY_ID, REPLY)], None),
        ([(REPLY_TO, b" 1"), (REPLY_ID, REPLY)], None),
        ([(REPLY_TO, "٣".encode()), (REPLY_ID, REPLY)], None),
        ([(REPLY_TO, None), (REPLY_ID, REPLY)], None),
        ([(REPLY_TO, b"1"), (REPLY_ID, REPLY.upper())], None),
        ([(REPLY_TO, b"1"), (REPLY_ID, REPLY + b"0")], None),
        ([(REPLY_TO, b"1"), (REPLY_ID, b"\xff" * 32)], None),
    ],
)
def test_a_reply_address_is_both_headers_well_formed(
    headers: list[tuple[str, bytes | None]], address: tuple[int, bytes] | None
) -> None:
    assert reply_address(headers) == address


@dataclass
class Record:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class Producer:
    """Delivers, as the replies topic would, first `impostors` and then the true reply."""

    def __init__(self, replies: RequestReply, impostors: list[dict[str, Any]]) -> None:
        self._replies, self._impostors = replies, impostors
        self.headers: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes, headers: Any) -> None:
        self.headers = headers
        reply_id = dict(headers)[REPLY_ID]
        sent = json.loads(value)
        answer = {"command_id": sent["command_id"], "account_id": sent["account_id"], "status": 204}
        for impostor in [*self._impostors, answer]:
            self._replies._deliver(Record(reply_id, json.dumps(impostor).encode()))


async def test_a_request_takes_only_the_reply_to_its_own_command_and_account() -> None:
    replies = RequestReply("unused:9092", "commands", "replies", partition=2)
    replies._partition = 2
    command = new_command(
        "complete_fielding_run",
        command_id="same-key",
        account_id=101,
        project_id=new_ulid(),
        target_group_id=new_ulid(),
        fielding_run_id=new_ulid(),
        if_match='W/"1"',
    )
    impostors = [
        {"command_id": "same-key", "account_id": 202, "status": 401},  # another account's
        {"command_id": "other", "account_id": 101, "status": 400},
        {"status": 500},
    ]
    producer = Producer(replies, impostors)
    replies._producer = producer  # type: ignore[assignment]
    reply = await asyncio.wait_for(replies.send(command, [], deadline=5), 10)
    assert reply is not None and json.loads(reply.value)["status"] == 204
    assert dict(producer.headers)[REPLY_TO] == b"2"
    assert replies._waiting == {}, "nothing left waiting"
