"""Wires the worker together: adapters in, service in the middle. No logic of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from worker.adapters.kafka.consumer import CommandConsumer
from worker.adapters.postgres.claims import PostgresPartitionClaims
from worker.adapters.postgres.command_store import PostgresCommandStore
from worker.adapters.postgres.housekeeping import database_reachable, forget_expired
from worker.adapters.postgres.pool import create_pool
from worker.observability import http, metrics
from worker.observability.health import Health
from worker.service.auth import TokenVerifier
from worker.service.handler import CommandHandler
from worker.service.processor import BatchProcessor
from worker.settings import Settings

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0
DATABASE_CHECK_SECONDS = 5.0


def build_processor(settings: Settings, store: PostgresCommandStore) -> BatchProcessor:
    verifier = TokenVerifier(
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        settings.jwt_public_key,
    )
    handler = CommandHandler(store, verifier, settings.rate_limit_per_account)
    return BatchProcessor(
        handler,
        settings.unexpected_error_attempts,
        on_retry=lambda kind: metrics.RETRIES.labels(kind).inc(),
    )


async def run_worker(settings: Settings, stop: asyncio.Event, serve_http: bool = True) -> None:
    """Runs until `stop` is set, then drains: in-flight batches finish and commit."""
    pool = await create_pool(settings.database_url, max_size=8)
    health = Health(stall_seconds=settings.stall_seconds)
    server = http.serve(health, settings.metrics_port) if serve_http else None
    store = PostgresCommandStore(
        pool, settings.rate_limit_window_seconds, settings.rate_limit_per_account
    )
    consumer = CommandConsumer(
        settings, build_processor(settings, store), PostgresPartitionClaims(pool), health
    )
    metrics.LAST_PROGRESS.set_to_current_time()
    chores = asyncio.create_task(_chores(pool, settings, health))
    try:
        health.database_ok = await database_reachable(pool)
        await consumer.run(stop)
    finally:
        health.running = False
        chores.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chores
        if server is not None:
            server.shutdown()
            server.server_close()
        await pool.close()


async def _chores(pool: asyncpg.Pool, settings: Settings, health: Health) -> None:
    loop = asyncio.get_running_loop()
    next_housekeeping = loop.time() + HOUSEKEEPING_SECONDS
    while True:
        health.database_ok = await database_reachable(pool)
        if loop.time() >= next_housekeeping and health.database_ok:
            try:
                forgotten = await forget_expired(pool, settings.outcome_retention_hours * 3600)
                if forgotten:
                    log.info("forgot expired command outcomes", extra={"count": forgotten})
            except Exception:
                log.warning("housekeeping failed", exc_info=True)
            next_housekeeping = loop.time() + HOUSEKEEPING_SECONDS
        await asyncio.sleep(DATABASE_CHECK_SECONDS)
