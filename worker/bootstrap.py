"""Wires the worker together: adapters in, service in the middle. No logic of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg
from aiokafka import TopicPartition

from worker.adapters.kafka.command_sink import KafkaCommandSink
from worker.adapters.kafka.consumer import CommandConsumer, ConsumerConfig
from worker.adapters.kafka.lag import committed_offsets
from worker.adapters.kafka.pipeline import AssignmentPipeline, Limits, Positions
from worker.adapters.kafka.publisher import TransactionalPublisher
from worker.adapters.kafka.topics import commands_topic_warnings, ensure_topics
from worker.adapters.kafka.transactions import TransactionWatch
from worker.adapters.postgres.claims import PostgresPartitionClaims
from worker.adapters.postgres.command_store import PostgresCommandStore
from worker.adapters.postgres.housekeeping import (
    database_reachable,
    forget_expired,
    forget_jobs,
)
from worker.adapters.postgres.overdue import overdue_counts
from worker.adapters.postgres.pool import close_pool, create_pool, first_contact
from worker.adapters.postgres.timers import PostgresDueRuns
from worker.observability import http, metrics
from worker.observability.health import Health, ServeHealth
from worker.observability.tracing import BatchTracer, TracedStore, Tracing
from worker.service.auth import SystemKey, TokenVerifier
from worker.service.handler import CommandHandler
from worker.service.outputs import Channel
from worker.service.ports import CommandStore
from worker.service.processor import BatchProcessor
from worker.service.scheduler import TimerScheduler
from worker.settings import Settings

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0
DATABASE_CHECK_SECONDS = 5.0
OVERDUE_SECONDS = 30.0  # how often overdue runs are counted


async def create_topics(settings: Settings) -> list[str]:
    """The contract's topics, created where missing; returns the names created."""
    partitions = {
        settings.commands_topic: settings.commands_partitions,
        settings.results_topic: settings.output_partitions,
        settings.events_topic: settings.output_partitions,
        settings.dlq_topic: settings.commands_partitions,  # copies keep their key's partition
        settings.replies_topic: settings.reply_partitions,
    }
    if settings.states_topic:  # partitioned as the events: one run's changes in one partition
        partitions[settings.states_topic] = settings.output_partitions
    return await ensure_topics(
        settings.kafka_bootstrap_servers,
        partitions,
        commands_topic=settings.commands_topic,
        dlq_topic=settings.dlq_topic,
        replies_topic=settings.replies_topic,
        states_topic=settings.states_topic or None,
        replication_factor=settings.replication_factor,
    )


def build_verifier(settings: Settings, *, system: bool = True) -> TokenVerifier:
    """The worker's verifier; with `system=False` (serve's), one that holds no system key and
    so refuses the system actor whatever it is shown."""
    return TokenVerifier(
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        settings.jwt_public_key,
        system_secret=settings.system_secret if system else None,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway_seconds=settings.jwt_leeway_seconds,
    )


def build_processor(settings: Settings, store: CommandStore) -> BatchProcessor:
    verifier = build_verifier(settings)
    handler = CommandHandler(
        store,
        verifier,
        settings.rate_limit_per_account,
        run_states=bool(settings.states_topic),
    )
    return BatchProcessor(
        handler,
        settings.unexpected_error_attempts,
        on_retry=lambda kind: metrics.RETRIES.labels(kind).inc(),
    )


def build_consumer(
    settings: Settings,
    pool: asyncpg.Pool,
    processor: BatchProcessor,
    health: Health,
    tracer: BatchTracer | None = None,
) -> CommandConsumer:
    claims = PostgresPartitionClaims(pool)
    topics = output_channels(settings)
    limits = Limits(
        settings.max_batch,
        settings.max_batch_bytes,
        renew_after_seconds=settings.transaction_timeout_ms / 3000,
        gather_seconds=settings.batch_gather_ms / 1000,
    )

    def make_pipeline(
        partitions: frozenset[TopicPartition], positions: Positions
    ) -> AssignmentPipeline:
        owner_id = AssignmentPipeline.new_owner_id(settings.transactional_id_prefix)
        publisher = TransactionalPublisher(
            settings.kafka_bootstrap_servers,
            owner_id,
            settings.consumer_group,
            topics,
            settings.replies_topic,
            settings.transaction_timeout_ms,
        )
        return AssignmentPipeline(
            partitions, owner_id, publisher, claims, processor, positions, limits, health, tracer
        )

    config = ConsumerConfig(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        topic=settings.commands_topic,
        session_timeout_ms=settings.session_timeout_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        max_buffered_records=settings.max_batch * 4,
        max_buffered_bytes=settings.max_buffered_bytes,
        shutdown_timeout_seconds=settings.shutdown_timeout_seconds,
    )
    return CommandConsumer(config, make_pipeline, health)


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    serve_http: bool = True,
    tracing: Tracing | None = None,
) -> None:
    """Runs until `stop` is set, then drains: in-flight batches finish and commit. With
    `tracing`, a span per command and per batch (see observability/tracing.py)."""
    pool = await create_pool(
        settings.database_url, max_size=8, statement_timeout=settings.statement_timeout_seconds
    )
    health = Health(stall_seconds=settings.stall_seconds)
    server = http.serve(health, settings.metrics_port) if serve_http else None
    store: CommandStore = PostgresCommandStore(
        pool, settings.rate_limit_window_seconds, settings.rate_limit_per_account
    )
    tracer = None
    if tracing is not None:
        store, tracer = TracedStore(store, tracing), BatchTracer(tracing)
    consumer = build_consumer(settings, pool, build_processor(settings, store), health, tracer)
    metrics.LAST_PROGRESS.set_to_current_time()
    chores = asyncio.create_task(_chores(pool, settings, health))
    timers = asyncio.create_task(_timers(settings, pool, stop))
    watch = asyncio.create_task(_watch_transactions(settings))
    try:
        await first_contact(pool)
        await consumer.run(stop)
    finally:
        health.running = False
        stop.set()  # the scheduler ends its round and stops its producer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(timers, 10)
        for chore in (chores, watch):
            chore.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chore
        if server is not None:
            server.shutdown()
            server.server_close()
        await close_pool(pool)


async def _timers(settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """Runs this replica's scheduler of time-driven transitions (see `scheduler.py`)."""
    secret = settings.system_secret
    if settings.scheduler_interval_seconds <= 0:
        return
    if secret is None:  # `fielding-worker run` refuses to start so (`startup_refusal`)
        log.warning("no FIELDING_SYSTEM_JWT_SECRET: timers are off")
        return
    sink = KafkaCommandSink(settings.kafka_bootstrap_servers, settings.commands_topic)
    scheduler = TimerScheduler(
        PostgresDueRuns(pool),
        sink,
        SystemKey(secret),
        holder=f"{settings.consumer_group}-{uuid.uuid4().hex[:12]}",
        interval_seconds=settings.scheduler_interval_seconds,
    )
    try:
        await scheduler.run(stop)
    finally:
        await sink.stop()


async def _watch_transactions(settings: Settings) -> None:
    """Looks for hanging transactions on the output partitions (see `transactions.py`)."""
    if settings.hanging_check_seconds <= 0:
        return
    await transaction_watch(settings).run(settings.hanging_check_seconds)


def output_channels(settings: Settings) -> dict[Channel, str]:
    """The topic of each kind of output a batch publishes (states only when their topic is set)."""
    topics = {
        Channel.RESULT: settings.results_topic,
        Channel.EVENT: settings.events_topic,
        Channel.DLQ: settings.dlq_topic,
    }
    if settings.states_topic:
        topics[Channel.STATE] = settings.states_topic
    return topics


def output_topics(settings: Settings) -> list[str]:
    """Every topic the workers write in their transactions."""
    return [*output_channels(settings).values(), settings.replies_topic]


def transaction_watch(settings: Settings) -> TransactionWatch:
    return TransactionWatch(
        settings.kafka_bootstrap_servers,
        output_topics(settings),
        after_seconds=settings.hanging_after_seconds,
        heal=settings.heal_hanging_transactions,
        copies_only=[settings.replies_topic],
    )


async def _warn_about_topics(settings: Settings) -> None:
    try:
        warnings = await commands_topic_warnings(
            settings.kafka_bootstrap_servers, settings.commands_topic
        )
    except Exception:  # the broker may not be up yet; the worker waits for it elsewhere
        log.debug("could not read the commands topic's config", exc_info=True)
        return
    for warning in warnings:
        log.warning(warning)


async def housekeeping(pool: asyncpg.Pool, settings: Settings) -> int:
    """Forgets expired outcomes whose records the group has committed; returns how many."""
    committed = await committed_offsets(
        settings.kafka_bootstrap_servers, settings.consumer_group, settings.commands_topic
    )
    forgotten = await forget_expired(
        pool, settings.outcome_retention_hours * 3600, settings.commands_topic, committed
    )
    jobs = await forget_jobs(pool, settings.job_retention_hours * 3600)
    if jobs:
        log.info("forgot expired jobs", extra={"count": jobs})
    return forgotten


async def _chores(pool: asyncpg.Pool, settings: Settings, health: Health) -> None:
    warning = asyncio.create_task(_warn_about_topics(settings))  # never holds the checks back
    try:
        await _check_and_keep_house(pool, settings, health)
    finally:
        warning.cancel()


async def _check_and_keep_house(pool: asyncpg.Pool, settings: Settings, health: Health) -> None:
    loop = asyncio.get_running_loop()
    next_housekeeping = loop.time() + HOUSEKEEPING_SECONDS
    next_overdue = loop.time()
    while True:
        health.database_ok = await database_reachable(pool)
        if loop.time() >= next_overdue and health.database_ok:
            next_overdue = loop.time() + OVERDUE_SECONDS
            try:
                for (kind, late), count in (await overdue_counts(pool)).items():
                    metrics.OVERDUE_RUNS.labels(kind, late).set(count)
            except Exception:
                log.warning("could not count overdue runs", exc_info=True)
        if loop.time() >= next_housekeeping and health.database_ok:
            try:
                forgotten = await housekeeping(pool, settings)
                if forgotten:
                    log.info("forgot expired command outcomes", extra={"count": forgotten})
            except Exception:
                log.warning("housekeeping failed", exc_info=True)
            next_housekeeping = loop.time() + HOUSEKEEPING_SECONDS
        await asyncio.sleep(DATABASE_CHECK_SECONDS)


async def run_api(settings: Settings, stop: asyncio.Event, tracing: Tracing | None = None) -> None:
    """`fielding-worker serve`: the HTTP API until `stop` is set."""
    from worker.adapters.http.answers import ApiContext
    from worker.adapters.http.app import create_app
    from worker.adapters.http.server import EdgeLimits, connection_cap
    from worker.adapters.http.server import server as http_server
    from worker.adapters.kafka.request_reply import RequestReply

    pool = await create_pool(
        settings.database_url, max_size=4, statement_timeout=settings.statement_timeout_seconds
    )
    gateway = RequestReply(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        settings.replies_topic,
        settings.reply_partition,
    )
    try:
        await first_contact(pool)
        await gateway.start()
    except BaseException:
        await close_pool(pool)
        raise
    verifier = build_verifier(settings, system=False)
    app = create_app(
        ApiContext(
            verifier,
            gateway,
            pool,
            settings.http_deadline_seconds,
            settings.http_max_waiting,
            settings.http_body_timeout_seconds,
            settings.read_rate_limit_per_account,
            settings.rate_limit_window_seconds,
        )
    )
    if tracing is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # A span per request, in the caller's trace; the command it sends continues it.
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracing.provider, exclude_spans=["receive", "send"]
        )
    server = http_server(
        app,
        settings.api_host,
        settings.api_port,
        EdgeLimits(
            header_seconds=settings.http_header_timeout_seconds,
            keep_alive_seconds=settings.http_keep_alive_seconds,
            max_connections=connection_cap(settings.http_max_connections),
            shutdown_seconds=settings.http_shutdown_seconds,
        ),
    )
    health = ServeHealth(gateway.problem)
    probes = http.serve(health, settings.metrics_port)
    checks = asyncio.create_task(_check_database(pool, health))
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when="FIRST_COMPLETED")
    finally:
        health.running = False
        stopping.cancel()
        checks.cancel()
        server.should_exit = True
        await serving
        await gateway.stop()
        await close_pool(pool)
        probes.shutdown()
        probes.server_close()


async def _check_database(pool: asyncpg.Pool, health: ServeHealth) -> None:
    while True:
        health.database_ok = await database_reachable(pool)
        await asyncio.sleep(DATABASE_CHECK_SECONDS)
