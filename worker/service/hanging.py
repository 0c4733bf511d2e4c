"""Hanging transactions on the worker's output partitions, and what their abort must give back.

A transaction is *hanging* on a partition when the partition leader still holds it open (its
first offset pins the last stable offset, so every `read_committed` reader of the partition
waits there) while its coordinator no longer has it open on that partition: no marker will
come. Kafka's remedy is an abort marker written by an administrator. An abort hides the
transaction's records; where the coordinator had in fact committed the transaction, those are
results and events of commands whose offsets are committed, and nothing would ever publish
them again. So before the abort, every hidden record that no visible record stands for is
published again (`to_publish_again`); a run state only where no later state of its run follows.

Pure rules, no I/O: the adapter (`worker.adapters.kafka.transactions`) feeds them what the
brokers say.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

# Every result and event carries the partition:offset of the command record it answers: a
# redelivered command's output carries the same, a repeated command's does not.
COMMAND_ORIGIN = "fielding-command-origin"
# A DLQ copy names the record it copies (worker.service.outputs._coordinates).
DLQ_ORIGIN = ("dlq.original.topic", "dlq.original.partition", "dlq.original.offset")


@dataclass(frozen=True, slots=True)
class OpenTransaction:
    """A transaction a partition leader holds open: DescribeProducers' view of it."""

    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    start_offset: int
    last_write_ms: int = -1  # the producer's last batch on the partition, by its own clock

    @property
    def where(self) -> tuple[str, int, int, int]:
        return (self.topic, self.partition, self.producer_id, self.start_offset)

    def describe(self) -> str:
        return (
            f"{self.topic}[{self.partition}] producer {self.producer_id} epoch "
            f"{self.producer_epoch} open since offset {self.start_offset}"
        )


@dataclass
class HangingWatch:
    """Tells a hanging transaction from one that is merely open. Open on a partition for
    `after_seconds` of this watch's own clock (longer than any transaction of a worker may
    last before its coordinator aborts it), and not open on that partition at its coordinator:
    hanging. A coordinator that still has it open will end it itself."""

    after_seconds: float
    _first_seen: dict[tuple[str, int, int, int], float] = field(default_factory=dict)

    def observe(
        self,
        now: float,
        open_at_leaders: Iterable[OpenTransaction],
        open_at_coordinator: set[tuple[int, str, int]],
    ) -> list[OpenTransaction]:
        """The hanging ones among `open_at_leaders`, seen at `now` (seconds, monotonic).
        `open_at_coordinator` holds (producer id, topic, partition) of every transaction its
        coordinator has open (ongoing or being completed)."""
        seen: dict[tuple[str, int, int, int], float] = {}
        hanging = []
        for transaction in open_at_leaders:
            first = seen[transaction.where] = self._first_seen.get(transaction.where, now)
            at_coordinator = (transaction.producer_id, transaction.topic, transaction.partition)
            if now - first >= self.after_seconds and at_coordinator not in open_at_coordinator:
                hanging.append(transaction)
        self._first_seen = seen  # what is no longer open is forgotten
        return hanging

    def open_for(self, transaction: OpenTransaction, now: float) -> float:
        return now - self._first_seen.get(transaction.where, now)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A record as the partition's log holds it, with what read_committed readers decide by:
    its producer, and for a control record whether it commits (True) or aborts (False)."""

    offset: int
    producer_id: int
    transactional: bool
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    control: bool | None = None  # None: a data record


def visible_after_abort(records: Sequence[LogRecord], hanging: OpenTransaction) -> list[LogRecord]:
    """The data records a read_committed reader sees once `hanging` is aborted: plain records,
    and those of other producers' transactions that a commit marker closes (in offset order, a
    producer's data belongs to the next marker of that producer)."""
    pending: dict[int, list[LogRecord]] = {}
    visible: list[LogRecord] = []
    for record in records:
        if record.producer_id == hanging.producer_id and record.offset >= hanging.start_offset:
            continue
        if record.control is not None:
            if record.control:
                visible.extend(pending.pop(record.producer_id, []))
            else:
                pending.pop(record.producer_id, None)
        elif record.transactional:
            pending.setdefault(record.producer_id, []).append(record)
        else:
            visible.append(record)
    return sorted(visible, key=lambda record: record.offset)


def ended(records: Sequence[LogRecord], transaction: OpenTransaction) -> bool:
    """Whether a marker of the transaction's producer stands after its first offset: it ended
    after it was found hanging (its coordinator was slow, not gone), and needs no healing."""
    return any(
        record.producer_id == transaction.producer_id
        and record.offset >= transaction.start_offset
        and record.control is not None
        for record in records
    )


def hidden_by_abort(records: Sequence[LogRecord], hanging: OpenTransaction) -> list[LogRecord]:
    """The hanging transaction's own data records: everything its producer wrote to the
    partition from the transaction's first offset (a later transaction of that producer on
    this partition would have been closed by its marker, and closed this one with it)."""
    return [
        record
        for record in records
        if record.producer_id == hanging.producer_id
        and record.offset >= hanging.start_offset
        and record.control is None
    ]


def _body(record: LogRecord) -> object:
    try:
        return json.loads(record.value or b"")
    except ValueError:
        return None


def _run_version(body: object) -> tuple[str, int] | None:
    if not isinstance(body, dict) or "event_id" in body:
        return None
    run_id, version = body.get("id"), body.get("version")
    if isinstance(run_id, str) and isinstance(version, int):
        return run_id, version
    return None


def run_version(record: LogRecord) -> tuple[str, int] | None:
    """A run state's run id and version; None for any other record. A state is the one output
    with a top-level `id` and `version` (results and events name their run `fielding_run_id`)."""
    return _run_version(_body(record))


def identity(record: LogRecord) -> Hashable:
    """What makes two output records the same output: a DLQ copy by the record it copies; an
    event by its `event_id`; a run state by its run and version; a result by the command record
    it answers (a result written before that header existed, by its `command_id`); anything
    else by its bytes."""
    headers = dict(record.headers)
    if all(name in headers for name in DLQ_ORIGIN):
        return ("dlq", *(headers[name] for name in DLQ_ORIGIN))
    body = _body(record)
    if isinstance(body, dict) and isinstance(body.get("event_id"), str):
        return ("event", body["event_id"])
    state = _run_version(body)
    if state is not None:
        return ("state", *state)
    if COMMAND_ORIGIN in headers:
        return ("result", headers[COMMAND_ORIGIN])
    if isinstance(body, dict) and isinstance(body.get("command_id"), str):
        return ("result", body["command_id"])
    return ("bytes", record.key, record.value)


def to_publish_again(records: Sequence[LogRecord], hanging: OpenTransaction) -> list[LogRecord]:
    """The hanging transaction's records that nothing visible stands for once it is aborted,
    in their order. Where its coordinator had aborted it, its commands were delivered again and
    their outputs stand later in the log: nothing is due. Where the coordinator had committed
    it, no redelivery happened: every record is due. `records` is the partition's log from the
    transaction's first offset, read uncommitted.

    A run state is not due where the log holds a later state of its run, whatever its
    transaction's fate: its copy would land after that one and become the run's last record, an
    older state than the store's. The later one is visible, or will be (an open transaction
    commits, or aborts and its command is delivered again and republishes it; a hidden one of
    this transaction is due itself)."""
    standing = Counter(identity(record) for record in visible_after_abort(records, hanging))
    newest: dict[str, int] = {}
    for record in records:
        state = run_version(record) if record.control is None else None
        if state is not None:
            newest[state[0]] = max(state[1], newest.get(state[0], state[1]))
    due = []
    for record in hidden_by_abort(records, hanging):
        same = identity(record)
        state = run_version(record)
        if standing[same] > 0:
            standing[same] -= 1
        elif state is not None and newest.get(state[0], state[1]) > state[1]:
            continue  # superseded: compaction keeps the later state
        else:
            due.append(record)
    return due
