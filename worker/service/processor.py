"""The one place that classifies failures: wait, retry, isolate, or answer 500.

- A TransientFailure (database or broker unreachable, read-only during a failover, a lost
  race) is retried with backoff for as long as it lasts; nothing is published or committed
  meanwhile, so nothing is lost. A statement timeout is retried too, but a batch that keeps
  meeting one is split in halves (a smaller batch may fit in the time), and a single command
  that keeps meeting one (a row locked elsewhere) is answered 500 rather than hold up every
  partition behind it.
- Any other exception is retried a few times; then the batch is split in halves, each tried
  on its own, so one poison command costs its neighbours a few attempts (a logarithmic
  number of splits), not the partition. A command that still fails alone gets a 500 result
  and a copy in the DLQ; if even that cannot be built, a DLQ stub with the record's
  coordinates stands for it. `process` always returns: every record ends in an output.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas.result import Status
from worker.service import outputs
from worker.service.handler import CommandHandler, QuotaLedger, utc_now
from worker.service.intake import CommandRecord, Unreadable, triage
from worker.service.outputs import Emission
from worker.service.ports import StatementTimeout, TransientFailure

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
        """The outputs of `records`, in their order; one result or DLQ record at least each."""
        return await self._process(records, QuotaLedger())

    async def _process(
        self, records: Sequence[CommandRecord], ledger: QuotaLedger
    ) -> list[Emission]:
        transient = timeouts = unexpected = 0
        while True:
            try:
                return await self._handler.handle(records, ledger)
            except StatementTimeout as failure:
                timeouts += 1
                if timeouts >= self._attempts and len(records) > 1:
                    log.warning(
                        "statements keep timing out; splitting the batch of %d", len(records)
                    )
                    return await self._halves(records, ledger)
                if timeouts >= self._attempts:  # one command's statement: it holds up the rest
                    return self._last_resort(records[0], failure, timeouts)
                self._on_retry("transient")
                log.warning(
                    "statement timed out, retrying",
                    extra={"error": str(failure), "attempt": timeouts},
                )
                await asyncio.sleep(self._backoff.delay(timeouts))
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
                    log.error("batch of %d keeps failing; splitting it", len(records))
                    return await self._halves(records, ledger)
                return self._last_resort(records[0], error, unexpected)

    async def _halves(
        self, records: Sequence[CommandRecord], ledger: QuotaLedger
    ) -> list[Emission]:
        middle = len(records) // 2
        first = await self._process(records[:middle], ledger)
        return first + await self._process(records[middle:], ledger)

    def _last_resort(
        self, record: CommandRecord, error: Exception, attempts: int
    ) -> list[Emission]:
        reason = f"unexpected_internal_error: {type(error).__name__}: {error}"
        origin = record.origin
        where = {"topic": origin.topic, "partition": origin.partition, "offset": origin.offset}
        try:
            return self._internal_error(record, reason, error, attempts, where)
        except Exception:  # the record itself may be what breaks things
            log.exception("could not answer a failed record; a DLQ stub stands for it", extra=where)
            return [outputs.dlq_stub(origin, record.key, record.value, reason)]

    def _internal_error(
        self,
        record: CommandRecord,
        reason: str,
        error: Exception,
        attempts: int,
        where: dict[str, object],
    ) -> list[Emission]:
        copy = outputs.dlq_copy(record.origin, record.key, record.value, record.headers, reason)
        triaged = triage(record, self._handler.verifier)
        if isinstance(triaged, Unreadable):
            log.error(
                "record failed %d times; copied to the DLQ", attempts, exc_info=error, extra=where
            )
            return [copy]
        echo = triaged.echo
        log.error(
            "command failed %d times; answered 500 and copied to the DLQ",
            attempts,
            exc_info=error,
            extra={
                **where,
                "command_id": echo.command_id,
                "fielding_run_id": echo.fielding_run_id,
                "trace_id": triaged.envelope.trace_id,
            },
        )
        value = outputs.result_value(
            echo,
            Status.INTERNAL_ERROR,
            utc_now(),
            detail="an unexpected error occurred; the command is kept in the DLQ",
        )
        result = outputs.result(echo, value, Status.INTERNAL_ERROR, triaged.envelope, record.origin)
        return [result, copy]
