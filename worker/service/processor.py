"""The one place that classifies failures: retry, isolate, or answer 500.

- A TransientFailure (database or broker unreachable, a lost race) is retried with backoff
  for as long as it lasts; nothing is published or committed meanwhile, so nothing is lost.
- Any other exception is retried a few times; then the batch is split and each command tried
  alone, so one poison command cannot hold back the others. A command that still fails alone
  gets a 500 result and a copy in the DLQ, and the partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.service.handler import CommandHandler, dlq_emission, utc_now
from worker.service.intake import CommandRecord, Unreadable, triage
from worker.service.outputs import Channel, Emission, result_json, result_key
from worker.service.ports import TransientFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.05
    most: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.most, self.first * 2.0 ** max(0, attempt - 1))


class BatchProcessor:
    def __init__(
        self,
        handler: CommandHandler,
        unexpected_error_attempts: int,
        backoff: Backoff = Backoff(),
        on_retry: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self._handler = handler
        self._attempts = max(1, unexpected_error_attempts)
        self._backoff = backoff
        self._on_retry = on_retry

    async def process(self, records: Sequence[CommandRecord]) -> list[Emission]:
        transient = unexpected = 0
        while True:
            try:
                return await self._handler.handle(records)
            except TransientFailure as failure:
                transient += 1
                self._on_retry("transient")
                log.warning(
                    "transient failure, retrying",
                    extra={"error": str(failure), "attempt": transient},
                )
                await asyncio.sleep(self._backoff.delay(transient))
            except Exception as error:
                unexpected += 1
                if unexpected < self._attempts:
                    self._on_retry("unexpected")
                    log.warning("unexpected failure, retrying", exc_info=True)
                    await asyncio.sleep(self._backoff.delay(unexpected))
                    continue
                if len(records) > 1:
                    log.error(
                        "batch keeps failing; trying its %d commands one by one", len(records)
                    )
                    return [e for record in records for e in await self.process([record])]
                return self._internal_error(records[0], error, unexpected)

    def _internal_error(
        self, record: CommandRecord, error: Exception, attempts: int
    ) -> list[Emission]:
        reason = f"unexpected_internal_error: {type(error).__name__}: {error}"
        copy = dlq_emission(record, reason)
        origin = record.origin
        where = {"topic": origin.topic, "partition": origin.partition, "offset": origin.offset}
        try:
            triaged = triage(record, self._handler.verifier)
        except Exception:  # the record itself may be what breaks things
            triaged = None
        if triaged is None or isinstance(triaged, Unreadable):
            log.error(
                "record failed %d times; copied to the DLQ", attempts, exc_info=error, extra=where
            )
            return [copy]
        echo, trace_headers = triaged.echo, triaged.trace_headers
        log.error(
            "command failed %d times; answered 500 and copied to the DLQ",
            attempts,
            exc_info=error,
            extra={
                **where,
                "command_id": echo.command_id,
                "fielding_run_id": echo.fielding_run_id,
                "trace_id": triaged.trace_id,
            },
        )
        value = result_json(
            echo,
            500,
            utc_now(),
            detail="an unexpected error occurred; the command is kept in the DLQ",
        )
        result = Emission(
            Channel.RESULT, result_key(echo, record.key), value, trace_headers, 500, echo.type
        )
        return [result, copy]
