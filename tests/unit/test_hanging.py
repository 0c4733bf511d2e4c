"""The rules for hanging transactions: when an open transaction is hanging, and what its abort
must publish again so that every command keeps exactly one visible result, every change
exactly one visible event, and every run its latest state last."""

from __future__ import annotations

import json

from worker.service.hanging import (
    COMMAND_ORIGIN,
    HangingWatch,
    LogRecord,
    OpenTransaction,
    ended,
    to_publish_again,
)

HANGING_PID = 7
OTHER_PID = 8
OPEN = OpenTransaction("results", 1, HANGING_PID, 0, 3, start_offset=10)


def test_a_transaction_that_is_merely_long_is_not_hanging() -> None:
    watch = HangingWatch(after_seconds=70)
    assert watch.observe(0, [OPEN], set()) == []
    assert watch.observe(69, [OPEN], set()) == []


def test_a_transaction_open_at_its_coordinator_is_not_hanging_however_long() -> None:
    watch = HangingWatch(after_seconds=70)
    ours = {(HANGING_PID, "results", 1)}
    watch.observe(0, [OPEN], ours)
    assert watch.observe(1000, [OPEN], ours) == []


def test_open_past_the_bound_and_not_at_its_coordinator_is_hanging() -> None:
    watch = HangingWatch(after_seconds=70)
    watch.observe(0, [OPEN], set())
    assert watch.observe(70, [OPEN], set()) == [OPEN]


def test_open_at_the_coordinator_on_another_partition_does_not_count() -> None:
    watch = HangingWatch(after_seconds=70)
    elsewhere = {(HANGING_PID, "results", 2), (HANGING_PID, "events", 1)}
    watch.observe(0, [OPEN], elsewhere)
    assert watch.observe(70, [OPEN], elsewhere) == [OPEN]


def test_a_transaction_that_closed_and_opened_again_starts_its_clock_again() -> None:
    watch = HangingWatch(after_seconds=70)
    watch.observe(0, [OPEN], set())
    watch.observe(50, [], set())  # closed: forgotten
    assert watch.observe(100, [OPEN], set()) == []
    assert watch.observe(170, [OPEN], set()) == [OPEN]


def result(
    offset: int, pid: int, command_id: str, origin: str, transactional: bool = True
) -> LogRecord:
    value = json.dumps({"command_id": command_id, "status": 204}).encode()
    headers = ((COMMAND_ORIGIN, origin.encode()),)
    return LogRecord(offset, pid, transactional, b"run", value, headers)


def event(offset: int, pid: int, event_id: str) -> LogRecord:
    value = json.dumps({"event_id": event_id}).encode()
    return LogRecord(offset, pid, True, b"tg", value, ((COMMAND_ORIGIN, b"0:1"),))


def state(offset: int, pid: int, run_id: str, version: int, origin: str = "0:1") -> LogRecord:
    """A run state as the worker writes it: the run (`id`) at `version`, the command's origin."""
    value = json.dumps({"id": run_id, "version": version, "status": "live"}).encode()
    return LogRecord(
        offset, pid, True, run_id.encode(), value, ((COMMAND_ORIGIN, origin.encode()),)
    )


def marker(offset: int, pid: int, commit: bool) -> LogRecord:
    return LogRecord(offset, pid, True, None, None, (), control=commit)


def test_a_transaction_its_coordinator_committed_is_published_again_whole() -> None:
    log = [
        result(10, HANGING_PID, "a", "0:1"),
        result(11, HANGING_PID, "b", "0:2"),
        result(12, OTHER_PID, "c", "0:3"),
        marker(13, OTHER_PID, commit=True),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [10, 11]


def test_a_transaction_its_coordinator_aborted_has_its_redelivered_outputs_later() -> None:
    log = [
        result(10, HANGING_PID, "a", "0:1"),
        event(11, HANGING_PID, "e1"),
        result(12, OTHER_PID, "a", "0:1"),  # the same command record, delivered again
        event(13, OTHER_PID, "e1"),
        marker(14, OTHER_PID, commit=True),
    ]
    assert to_publish_again(log, OPEN) == []


def test_a_repeated_command_is_not_taken_for_a_redelivery() -> None:
    log = [
        result(10, HANGING_PID, "a", "0:1"),
        result(11, OTHER_PID, "a", "0:9"),  # the same command id sent again: another record
        marker(12, OTHER_PID, commit=True),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [10]


def test_records_of_an_aborted_transaction_stand_for_nothing() -> None:
    log = [
        result(10, HANGING_PID, "a", "0:1"),
        result(11, OTHER_PID, "a", "0:1"),
        marker(12, OTHER_PID, commit=False),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [10]


def test_records_of_a_transaction_still_open_stand_for_nothing_yet() -> None:
    log = [result(10, HANGING_PID, "a", "0:1"), result(11, OTHER_PID, "a", "0:1")]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [10]


def test_copies_an_earlier_healer_committed_are_not_published_a_second_time() -> None:
    healer = 99
    log = [
        result(10, HANGING_PID, "a", "0:1"),
        event(11, HANGING_PID, "e1"),
        result(12, healer, "a", "0:1"),
        event(13, healer, "e1"),
        marker(14, healer, commit=True),
    ]
    assert to_publish_again(log, OPEN) == []


def test_what_the_producer_wrote_before_the_transaction_is_not_its() -> None:
    log = [
        result(8, HANGING_PID, "old", "0:0"),
        marker(9, HANGING_PID, commit=True),
        result(10, HANGING_PID, "a", "0:1"),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [10]


def test_dlq_copies_are_told_apart_by_the_record_they_copy() -> None:
    def copy(offset: int, pid: int, source_offset: str) -> LogRecord:
        headers = (
            ("dlq.original.topic", b"commands"),
            ("dlq.original.partition", b"0"),
            ("dlq.original.offset", source_offset.encode()),
        )
        return LogRecord(offset, pid, True, None, b"not json", headers)

    log = [
        copy(10, HANGING_PID, "5"),
        copy(11, HANGING_PID, "6"),
        copy(12, OTHER_PID, "5"),
        marker(13, OTHER_PID, commit=True),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [11]


def test_a_transaction_whose_marker_came_meanwhile_has_ended() -> None:
    assert ended([result(10, HANGING_PID, "a", "0:1"), marker(11, HANGING_PID, commit=True)], OPEN)
    assert not ended([result(10, HANGING_PID, "a", "0:1"), marker(11, OTHER_PID, True)], OPEN)
    assert not ended(
        [marker(9, HANGING_PID, commit=True), result(10, HANGING_PID, "a", "0:1")], OPEN
    )


def test_states_of_one_bulk_command_are_told_apart_by_run_and_version() -> None:
    """They share the command's origin header; one of them standing stands for no other."""
    log = [
        state(10, HANGING_PID, "R1", 4),
        state(11, HANGING_PID, "R2", 4),
        state(12, OTHER_PID, "R1", 4),  # R1's state delivered again; R2's not
        marker(13, OTHER_PID, commit=True),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [11]


def test_a_transaction_its_coordinator_committed_has_its_states_published_again() -> None:
    log = [
        result(10, HANGING_PID, "a", "0:1"),
        state(11, HANGING_PID, "R1", 4),
        state(12, OTHER_PID, "R2", 9, origin="0:2"),
        marker(13, OTHER_PID, commit=True),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [10, 11]


def test_a_state_a_later_state_of_its_run_stands_for_is_not_published_again() -> None:
    """Its copy would land after the later state and become the run's last record."""
    log = [
        state(10, HANGING_PID, "R1", 4),
        state(11, HANGING_PID, "R2", 7),
        state(12, OTHER_PID, "R1", 5, origin="0:2"),  # R1 changed again since
        state(13, OTHER_PID, "R2", 6, origin="0:3"),  # an older state of R2 stands
        marker(14, OTHER_PID, commit=True),
    ]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [11]


def test_a_later_state_of_its_run_supersedes_it_whatever_that_transactions_fate() -> None:
    """An open one commits, or aborts and its command's redelivery publishes it again; either
    way it ends up after the copy, which would then be the run's last record."""
    for fate in (True, False, None):
        log = [
            state(10, HANGING_PID, "R1", 4),
            state(11, HANGING_PID, "R2", 2),
            state(12, OTHER_PID, "R1", 5, origin="0:2"),
        ]
        if fate is not None:
            log.append(marker(13, OTHER_PID, commit=fate))
        assert [r.offset for r in to_publish_again(log, OPEN)] == [11], fate


def test_of_two_states_of_a_run_in_the_hanging_transaction_only_the_later_is_due() -> None:
    log = [state(10, HANGING_PID, "R1", 4), state(11, HANGING_PID, "R1", 5, origin="0:2")]
    assert [r.offset for r in to_publish_again(log, OPEN)] == [11]
