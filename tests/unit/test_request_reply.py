"""Request-reply's two ends, without a broker: which headers name a reply address (any others
get no reply, and never fail the command), and that a waiting request takes only a reply that
answers its own command and account."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from schemas.command import Command, new_command
from schemas.types import new_ulid
from worker.adapters.kafka.request_reply import RequestReply
from worker.service.replies import REPLY_ID, REPLY_ORIGIN, REPLY_TO, reply_address

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


@dataclass
class Sent:
    partition: int
    offset: int


OURS = Sent(partition=1, offset=41)  # where the broker puts the request's command


def reply(reply_id: bytes, result: dict[str, Any], origin: Sent = OURS) -> Record:
    origin_header = (REPLY_ORIGIN, f"{origin.partition}:{origin.offset}".encode())
    return Record(reply_id, json.dumps(result).encode(), (origin_header,))


class Producer:
    """Delivers, as the replies topic would, first `impostors` and then the true reply; before
    the broker's acknowledgement of the command (`early`) or after it."""

    def __init__(self, replies: RequestReply, impostors: list[Record], early: bool) -> None:
        self._replies, self._impostors, self._early = replies, impostors, early
        self.headers: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes, headers: Any) -> Sent:
        self.headers = headers
        reply_id = dict(headers)[REPLY_ID]
        sent = json.loads(value)
        answer = {"command_id": sent["command_id"], "account_id": sent["account_id"], "status": 204}
        records = [
            Record(reply_id, impostor.value, impostor.headers) for impostor in self._impostors
        ]
        records.append(reply(reply_id, answer))
        if self._early:
            for record in records:
                self._replies._deliver(record)
        else:
            asyncio.get_running_loop().call_soon(
                lambda: [self._replies._deliver(record) for record in records]
            )
        return OURS


def waiting_on(partition: int, command_id: str, account_id: int) -> tuple[RequestReply, Command]:
    """A serve process's request-reply reading `partition` (no broker), and a command to send."""
    replies = RequestReply("unused:9092", "commands", "replies", partition=partition)
    replies._partition = partition
    command = new_command(
        "complete_fielding_run",
        command_id=command_id,
        account_id=account_id,
        project_id=new_ulid(),
        target_group_id=new_ulid(),
        fielding_run_id=new_ulid(),
        if_match='W/"1"',
    )
    return replies, command


@pytest.mark.parametrize("early", [True, False], ids=["before the ack", "after the ack"])
async def test_a_request_takes_only_the_reply_to_its_own_command_record(early: bool) -> None:
    replies, command = waiting_on(partition=2, command_id="same-key", account_id=101)
    unused = b"-" * 32  # the Producer puts each impostor under the request's own reply id
    impostors = [
        reply(unused, {"command_id": "same-key", "account_id": 202, "status": 401}),
        reply(unused, {"command_id": "other", "account_id": 101, "status": 400}),
        reply(unused, {"status": 500}),
        # a forged command carrying a copied reply id: its reply names the forgery's place
        reply(unused, {"command_id": "same-key", "account_id": 101, "status": 401}, Sent(1, 42)),
        Record(unused, json.dumps({"command_id": "same-key"}).encode()),  # no account
    ]
    producer = Producer(replies, impostors, early)
    replies._producer = producer  # type: ignore[assignment]
    answer = await asyncio.wait_for(replies.send(command, [], deadline=5), 10)
    assert answer is not None and json.loads(answer.value)["status"] == 204
    assert dict(producer.headers)[REPLY_TO] == b"2"
    assert replies._waiting == {}, "nothing left waiting"


async def test_a_reply_from_a_worker_older_than_the_origin_header_is_still_taken() -> None:
    # serve and workers upgrade in any order; a worker with the header always sets it
    replies, command = waiting_on(partition=0, command_id="k", account_id=7)

    class OldWorker(Producer):
        async def send_and_wait(self, topic: str, value: bytes, key: bytes, headers: Any) -> Sent:
            reply_id = dict(headers)[REPLY_ID]
            answer = {"command_id": "k", "account_id": 7, "status": 204}
            loop = asyncio.get_running_loop()
            loop.call_soon(replies._deliver, Record(reply_id, json.dumps(answer).encode()))
            return OURS

    replies._producer = OldWorker(replies, [], early=False)  # type: ignore[assignment]
    answer = await asyncio.wait_for(replies.send(command, [], deadline=5), 10)
    assert answer is not None and json.loads(answer.value)["status"] == 204
