"""Structured JSON logs on stderr; the level comes from LOG_LEVEL."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; the worker reports what matters itself.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # kafka-python (the hanging-transaction watch's admin client) logs each connection at INFO,
    # a dozen lines every look.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    # OpenTelemetry warns about every invalid tracestate it is given: one line per hostile
    # record. An invalid trace context simply starts a fresh trace.
    logging.getLogger("opentelemetry").setLevel(max(logging.ERROR, root.level))
