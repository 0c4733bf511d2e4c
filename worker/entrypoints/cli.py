"""The `fielding-worker` command line. It only parses arguments and wires things together."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import click
from pydantic import ValidationError

from fielding_statemachine.status import RunStatus
from worker.entrypoints.send import OPERATIONS
from worker.settings import Settings


def _settings() -> Settings:
    """The settings from the environment; a bad value stops here, named."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise click.UsageError(f"invalid settings: {problems}") from None


@click.group()
def main() -> None:
    """Completes fielding runs from Kafka commands (documentation: docs/index.md, served by
    `make docs`)."""


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema; safe to run twice."""
    from worker.adapters.postgres.migrate import upgrade

    upgrade(_settings().database_url)
    click.echo("schema is current")


@main.command("create-topics")
def create_topics() -> None:
    """Create the contract's topics where missing."""
    from worker.bootstrap import create_topics as create

    created = asyncio.run(create(_settings()))
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


def tune_garbage_collection() -> None:
    """The worker's objects are short-lived and mostly acyclic, so reference counting frees
    them and the cycle collector need not walk every live object often: start-up's objects are
    frozen out of its reach, and it runs less often (docs/decisions/garbage-collection.md)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _until_signalled(
    entry: Callable[..., Awaitable[None]],
    command: Literal["run", "serve"],
    service_name: str,
    tune: bool = False,
) -> None:
    """Runs `entry(settings, stop, tracing=...)` until SIGTERM or SIGINT sets its stop event;
    tracing as the OTEL_* variables say (off by default), flushed at the end. Settings that
    `command` must not start with (a public secret, no system key) stop it first."""
    from worker.adapters.kafka.request_reply import RepliesTopicMissing
    from worker.adapters.postgres.pool import DatabaseMisconfigured
    from worker.observability.logs import configure_logging
    from worker.observability.tracing import TracingConfigurationError, configure_tracing

    settings = _settings()
    refusal = settings.startup_refusal(command)
    if refusal is not None:
        raise click.UsageError(f"{command} refuses to start: {refusal}")
    configure_logging(settings.log_level)
    try:
        tracing = configure_tracing(service_name)
    except TracingConfigurationError as error:
        raise click.UsageError(str(error)) from None
    if tune:
        tune_garbage_collection()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await entry(settings, stop, tracing=tracing)

    try:
        asyncio.run(_main())
    except (RepliesTopicMissing, DatabaseMisconfigured) as error:
        raise click.ClickException(str(error)) from None
    finally:
        if tracing is not None:
            tracing.shutdown()


@main.command()
def run() -> None:
    """Run the worker until SIGTERM or SIGINT, then drain and commit."""
    from worker.bootstrap import run_worker

    _until_signalled(run_worker, "run", "fielding-worker", tune=True)


@main.command()
def serve() -> None:
    """Serve the public API's fielding operations over HTTP on API_HOST:API_PORT (see
    docs/concepts/http-api.md)."""
    from worker.bootstrap import run_api

    _until_signalled(run_api, "serve", "fielding-worker-serve")


@main.command()
@click.option("--account-id", "account_ids", type=int, multiple=True, required=True)
def token(account_ids: tuple[int, ...]) -> None:
    """Print a token for these accounts, signed with FIELDING_JWT_SECRET (to try the API)."""
    from worker.entrypoints.send import demo_token

    click.echo(demo_token(_settings(), *account_ids))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--max-lag", type=int, default=None, help="Exit 1 when the total lag is above N.")
def lag(as_json: bool, max_lag: int | None) -> None:
    """Print the consumer group's lag per partition of the commands topic."""
    from worker.adapters.kafka.lag import group_lag

    s = _settings()
    partitions = asyncio.run(
        group_lag(s.kafka_bootstrap_servers, s.consumer_group, s.commands_topic)
    )
    total = sum(p.lag for p in partitions)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "group": s.consumer_group,
                    "topic": s.commands_topic,
                    "total_lag": total,
                    "partitions": [p.as_json() for p in partitions],
                }
            )
        )
    else:
        click.echo(f"group {s.consumer_group}, topic {s.commands_topic}")
        click.echo(f"{'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
        for p in partitions:
            committed = "-" if p.committed is None else str(p.committed)
            click.echo(f"{p.partition:>9} {committed:>10} {p.end:>10} {p.lag:>8}")
        click.echo(f"{'total':>9} {'':>10} {'':>10} {total:>8}")
    if max_lag is not None and total > max_lag:
        click.echo(f"lag {total} is above --max-lag {max_lag}", err=True)
        sys.exit(1)


@main.group()
def runs() -> None:
    """Create, replace and read fielding runs (for setup and demos)."""


async def _with_pool(work: Any) -> Any:
    from worker.adapters.postgres.pool import close_pool, create_pool

    settings = _settings()
    pool = await create_pool(
        settings.database_url, max_size=1, statement_timeout=settings.statement_timeout_seconds
    )
    try:
        return await work(pool)
    finally:
        await close_pool(pool)


@runs.command("put")
@click.option("--account-id", type=int, required=True)
@click.option("--project-id", required=True)
@click.option("--target-group-id", required=True)
@click.option("--fielding-run-id", "--id", "fielding_run_id", required=True)
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), required=True)
@click.option("--version", type=int, default=None, help="Default: 1 for a new run, +1 on replace.")
@click.option(
    "--start-fielding-at",
    type=click.DateTime(),
    default=None,
    help="UTC. Default: the end minus 30 days if an end is given, else now (a day from now "
    "for a scheduled run).",
)
@click.option(
    "--end-fielding-at", type=click.DateTime(), default=None, help="UTC. Default: start + 30 days."
)
@click.option(
    "--changed-by", type=click.UUID, default=None, help="Default: the system actor (no user)."
)
def runs_put(
    account_id: int,
    project_id: str,
    target_group_id: str,
    fielding_run_id: str,
    status: str,
    version: int | None,
    start_fielding_at: datetime | None,
    end_fielding_at: datetime | None,
    changed_by: UUID | None,
) -> None:
    """Create or replace a fielding run; print it as JSON. A run always has both times: those
    not given are derived."""
    from worker.adapters.postgres.runs import put_run
    from worker.service.auth import SYSTEM_ACTOR
    from worker.service.runs_by_hand import run_times

    start, end = run_times(
        RunStatus(status),
        datetime.now(UTC),
        start_fielding_at and start_fielding_at.replace(tzinfo=UTC),
        end_fielding_at and end_fielding_at.replace(tzinfo=UTC),
    )
    if end <= start:
        raise click.BadParameter(
            f"the end ({end.isoformat()}) must be after the start ({start.isoformat()})",
            param_hint="--end-fielding-at",
        )
    run = asyncio.run(
        _with_pool(
            lambda pool: put_run(
                pool,
                account_id=account_id,
                project_id=project_id,
                target_group_id=target_group_id,
                fielding_run_id=fielding_run_id,
                status=RunStatus(status),
                version=version,
                start_fielding_at=start,
                end_fielding_at=end,
                changed_by=changed_by or SYSTEM_ACTOR,
            )
        )
    )
    click.echo(json.dumps(run.as_json()))


@runs.command("get")
@click.argument("fielding_run_id")
def runs_get(fielding_run_id: str) -> None:
    """Print a fielding run as JSON, with its etag."""
    from worker.adapters.postgres.runs import get_run

    run = asyncio.run(_with_pool(lambda pool: get_run(pool, fielding_run_id)))
    if run is None:
        click.echo(f"no fielding run {fielding_run_id}", err=True)
        sys.exit(1)
    click.echo(json.dumps(run.as_json()))


@runs.command("list")
@click.option("--overdue", is_flag=True, required=True, help="Runs past their due time.")
@click.option("--late-seconds", type=float, default=60.0, show_default=True)
@click.option("--limit", type=int, default=1000, show_default=True)
def runs_list(overdue: bool, late_seconds: float, limit: int) -> None:
    """List the runs past their start or end time by more than --late-seconds that have not
    moved, most overdue first: one line each (run, account, status, start or end, due at, late
    by). Exits 1 when there is one."""
    from worker.adapters.postgres.overdue import overdue_runs

    found = asyncio.run(_with_pool(lambda pool: overdue_runs(pool, late_seconds, limit)))
    for run in found:
        click.echo(
            f"{run.fielding_run_id} account {run.account_id} {run.status}: {run.kind} was due "
            f"{run.due_at.isoformat()}, {run.late_seconds:.0f}s late"
        )
    sys.exit(1 if found else 0)


@main.command("send")
@click.argument(
    "operation", type=click.Choice(sorted(OPERATIONS)), required=False, default="complete"
)
@click.option("--account-id", type=int, required=True)
@click.option("--project-id", required=True)
@click.option("--target-group-id", default=None)
@click.option("--fielding-run-id", "--id", "fielding_run_id", default=None)
@click.option("--if-match", default=None, help='The run\'s ETag, e.g. W/"1".')
@click.option("--start-fielding-at", type=click.DateTime(), default=None, help="UTC.")
@click.option("--end-fielding-at", type=click.DateTime(), default=None, help="UTC.")
@click.option(
    "--target-group-ids", default=None, help="Comma-separated, for the *-target-groups jobs."
)
@click.option(
    "--command-id", default=None, help="Default: a new ULID. Repeat one to see its result replayed."
)
@click.option(
    "--token", default=None, help="Bearer token; default: one signed with FIELDING_JWT_SECRET."
)
@click.option("--wait/--no-wait", default=True, help="Wait for the result and print it.")
def send(
    operation: str,
    account_id: int,
    project_id: str,
    target_group_id: str | None,
    fielding_run_id: str | None,
    if_match: str | None,
    start_fielding_at: datetime | None,
    end_fielding_at: datetime | None,
    target_group_ids: str | None,
    command_id: str | None,
    token: str | None,
    wait: bool,
) -> None:
    """Send a command by hand (a demo helper) and print its result.

    OPERATION is one of the command types, by a short name (default: complete)."""
    from pydantic import ValidationError

    from schemas.command import MODELS, new_command
    from worker.entrypoints.send import send_command

    given: dict[str, Any] = {
        "account_id": account_id,
        "project_id": project_id,
        "target_group_id": target_group_id,
        "fielding_run_id": fielding_run_id,
        "if_match": if_match,
        "start_fielding_at": start_fielding_at and start_fielding_at.replace(tzinfo=UTC),
        "end_fielding_at": end_fielding_at and end_fielding_at.replace(tzinfo=UTC),
        "target_group_ids": target_group_ids.split(",") if target_group_ids else None,
        "command_id": command_id,
    }
    command_type = OPERATIONS[operation]
    fields = {
        k: v for k, v in given.items() if v is not None and k in MODELS[command_type].model_fields
    }
    try:
        command = new_command(command_type, **fields)
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc'][-1:]).replace('_', '-')}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise click.UsageError(f"{operation}: {problems}") from None
    result = asyncio.run(send_command(_settings(), command, token=token, wait=wait))
    click.echo(json.dumps(result))


@main.group()
def jobs() -> None:
    """Read the jobs that draft and bulk commands created."""


@jobs.command("get")
@click.argument("job_id")
def jobs_get(job_id: str) -> None:
    """Print a job as JSON, as its result carried it."""
    from worker.adapters.postgres.jobs import get_job

    job = asyncio.run(_with_pool(lambda pool: get_job(pool, job_id)))
    if job is None:
        click.echo(f"no job {job_id}", err=True)
        sys.exit(1)
    click.echo(job.body.decode())


@main.group()
def results() -> None:
    """Read remembered command results."""


@results.command("get")
@click.option("--account-id", type=int, required=True)
@click.argument("command_id")
def results_get(account_id: int, command_id: str) -> None:
    """Print a command's result as it was published on the results topic (exit 1 when it is
    not remembered: unknown, expired, or a status that is not kept)."""
    from worker.adapters.postgres.outcomes import get_result

    result = asyncio.run(_with_pool(lambda pool: get_result(pool, account_id, command_id)))
    if result is None:
        click.echo(
            f"no remembered result for command {command_id} of account {account_id}", err=True
        )
        sys.exit(1)
    click.echo(result.decode())


@main.group()
def dlq() -> None:
    """List, show and re-drive the dead letters of the DLQ topic (see the operations docs)."""


class Coordinates(click.ParamType[tuple[int, int], Any]):
    """A record's place in a topic, PARTITION:OFFSET."""

    name = "PARTITION:OFFSET"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        partition, colon, offset = str(value).partition(":")
        if colon and partition.isdigit() and offset.isdigit():
            return int(partition), int(offset)
        self.fail(f"{value!r} is not PARTITION:OFFSET (two whole numbers)", param, ctx)


def _selection(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options that choose dead letters, for `list` and `redrive`."""
    options = [
        click.option(
            "--partition",
            "partitions",
            type=click.IntRange(min=0),
            multiple=True,
            help="A DLQ partition (repeatable); default: all.",
        ),
        click.option("--from-offset", type=click.IntRange(min=0), help="First offset, inclusive."),
        click.option("--to-offset", type=click.IntRange(min=0), help="Last offset, inclusive."),
        click.option("--reason", default=None, help="Only reasons containing this (any case)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _selected(
    partitions: tuple[int, ...], from_offset: int | None, to_offset: int | None, reason: str | None
) -> Any:
    from worker.service.dead_letters import Selection

    if from_offset is not None and to_offset is not None and from_offset > to_offset:
        raise click.UsageError("--from-offset is after --to-offset")
    return Selection(frozenset(partitions), from_offset, to_offset, reason)


def _letter_line(letter: Any, refused: Any) -> str:
    """One dead letter on one line: where, when, size, re-drives, command, verdict, reason."""
    at = letter.dead_lettered_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    verdict = "re-drivable" if refused is None else f"NOT re-drivable ({refused.why})"
    return (
        f"{letter.partition}:{letter.offset}  {at}  {letter.size} B  "
        f"re-driven {letter.redrives}x  command {letter.command_id or '-'}  {verdict}  "
        f"reason: {letter.reason or '-'}"
    )


def _run_dlq(work: Coroutine[Any, Any, Any]) -> Any:
    """Runs one of the `dlq` commands' coroutines; a store without the re-drives table, a DLQ
    that cannot be read to its end, or the broker or the database away stops it with a message
    rather than a traceback (nothing is sent before the plan is made)."""
    from worker.adapters.kafka.dead_letters import DlqReadStuck
    from worker.adapters.postgres.redrives import RedrivesTableMissing
    from worker.entrypoints.dlq import STOPPING, failure_text

    try:
        return asyncio.run(work)
    except (RedrivesTableMissing, DlqReadStuck) as error:
        raise click.ClickException(str(error)) from None
    except STOPPING as error:
        raise click.ClickException(failure_text(error)) from None


@dlq.command("list")
@_selection
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
def dlq_list(
    partitions: tuple[int, ...],
    from_offset: int | None,
    to_offset: int | None,
    reason: str | None,
    as_json: bool,
) -> None:
    """Print one line per dead letter: partition:offset, when it was dead-lettered, the
    original value's size, how often it was re-driven, its command_id when readable, whether
    it can be re-driven (and why not), and the reason."""
    from worker.entrypoints.dlq import make_plan, verdict
    from worker.service.dead_letters import describe

    settings = _settings()
    selection = _selected(partitions, from_offset, to_offset, reason)
    found = _run_dlq(make_plan(settings, selection))
    for planned in found.planned:
        if as_json:
            click.echo(json.dumps({**describe(planned.letter), **verdict(planned.refused)}))
        else:
            click.echo(_letter_line(planned.letter, planned.refused))
    if not as_json:
        click.echo(
            f"{len(found.planned)} dead letters in {settings.dlq_topic}, "
            f"{len(found.going)} re-drivable"
        )


@dlq.command("show")
@click.argument("coordinates", type=Coordinates())
def dlq_show(coordinates: tuple[int, int]) -> None:
    """Print one dead letter whole, as JSON: what `list` says, its key, headers and value (as
    text when UTF-8, else base64). Exits 1 when the DLQ holds no record there."""
    from worker.entrypoints.dlq import show

    partition, offset = coordinates
    settings = _settings()
    letter = _run_dlq(show(settings, partition, offset))
    if letter is None:
        click.echo(f"no record at {partition}:{offset} of {settings.dlq_topic}", err=True)
        sys.exit(1)
    click.echo(json.dumps(letter, indent=2))


# Fewer dead letters than this are sent without a progress bar.
PROGRESS_FROM = 50


@dlq.command("redrive")
@_selection
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
@click.option("--yes", is_flag=True, help="Send without asking.")
@click.option(
    "--force",
    is_flag=True,
    help="Also send dead letters over FIELDING_DLQ_MAX_REDRIVES, and those whose earlier "
    "re-drive was never confirmed.",
)
def dlq_redrive(
    partitions: tuple[int, ...],
    from_offset: int | None,
    to_offset: int | None,
    reason: str | None,
    dry_run: bool,
    yes: bool,
    force: bool,
) -> None:
    """Send the selected dead letters back to the commands topic with their original key,
    value and headers, without the dlq.* headers and with fielding-redrives counting the
    re-drives. A dead letter is sent at most once, and never when the worker remembers its
    command's outcome, so no command is answered twice. Stubs are not re-drivable. Asks before
    sending unless given --yes; exits 1 when none of the selected dead letters can go, or when
    the broker or the database stops the re-drive (what was sent is reported first)."""
    from worker.entrypoints.dlq import make_plan, redrive

    settings = _settings()
    selection = _selected(partitions, from_offset, to_offset, reason)
    found = _run_dlq(make_plan(settings, selection, force=force))
    if not found.planned:
        click.echo("no dead letter selected")
        return
    for planned in found.planned:
        if planned.refused is not None:
            letter = planned.letter
            click.echo(f"{letter.partition}:{letter.offset} stays: {planned.refused.why}")
    going = found.going
    if not going:
        click.echo("nothing to re-drive")
        sys.exit(1)
    if dry_run:
        for planned in going:
            letter = planned.letter
            click.echo(
                f"would re-drive {letter.partition}:{letter.offset} "
                f"(command {letter.command_id or '-'}, re-drive {letter.redrives + 1})"
            )
        click.echo(f"{len(going)} dead letters would go to {settings.commands_topic} (dry run)")
        return
    if not yes:
        click.confirm(
            f"Send {len(going)} dead letters back to {settings.commands_topic}?", abort=True
        )
    if sys.stdout.isatty() and len(going) >= PROGRESS_FROM:
        with click.progressbar(length=len(going), label="re-driving") as bar:
            report = _run_dlq(redrive(settings, going, lambda _: bar.update(1), force=force))
    else:
        report = _run_dlq(redrive(settings, going, force=force))
    for letter, (partition, offset) in report.sent:
        click.echo(
            f"{letter.partition}:{letter.offset} re-driven to {settings.commands_topic} "
            f"{partition}:{offset}"
        )
    for letter, why in report.skipped:
        click.echo(f"{letter.partition}:{letter.offset} skipped: {why}")
    summary = f"{len(report.sent)} re-driven, {len(report.skipped)} skipped"
    if (stopped := report.stopped) is None:
        click.echo(summary)
        return
    if stopped.letter is None:
        click.echo("stopped with no dead letter being sent")
    else:
        click.echo(f"{stopped.letter.partition}:{stopped.letter.offset} {stopped.state}")
    click.echo(f"{summary}; stopped by {stopped.error}", err=True)
    sys.exit(1)


@main.group()
def transactions() -> None:
    """Find and heal hanging transactions on the output topics (see the operations docs)."""


def _open_transactions(settings: Settings) -> list[tuple[Any, bool, float]]:
    """Every transaction open on an output partition: whether its coordinator has it open
    too, and how long ago its producer last wrote there (seconds)."""
    import time

    from worker.adapters.kafka.transactions import open_at_coordinator, open_at_leaders
    from worker.bootstrap import output_topics

    async def look() -> list[tuple[Any, bool, float]]:
        server = settings.kafka_bootstrap_servers
        opened = await open_at_leaders(server, output_topics(settings))
        at_coordinator = await open_at_coordinator(server, (t.producer_id for t in opened))
        now = time.time()
        return [
            (
                t,
                (t.producer_id, t.topic, t.partition) in at_coordinator,
                now - t.last_write_ms / 1000,
            )
            for t in opened
        ]

    return asyncio.run(look())


@transactions.command("find-hanging")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
def transactions_find_hanging(as_json: bool) -> None:
    """List the transactions open on output partitions and say which hang: not open at their
    coordinator, and last written to longer ago than the transaction timeout plus the margin.
    Exits 1 when one hangs."""
    settings = _settings()
    found = False
    opened = _open_transactions(settings)
    if not opened and not as_json:
        click.echo("no transaction is open on the output partitions")
    for transaction, at_coordinator, idle in opened:
        hanging = not at_coordinator and idle >= settings.hanging_after_seconds
        found |= hanging
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "topic": transaction.topic,
                        "partition": transaction.partition,
                        "producer_id": transaction.producer_id,
                        "producer_epoch": transaction.producer_epoch,
                        "start_offset": transaction.start_offset,
                        "open_at_coordinator": at_coordinator,
                        "idle_seconds": round(idle, 1),
                        "hanging": hanging,
                    }
                )
            )
        else:
            verdict = (
                "HANGING"
                if hanging
                else "open at its coordinator"
                if at_coordinator
                else ("not open at its coordinator")
            )
            click.echo(f"{transaction.describe()}, idle {idle:.0f}s: {verdict}")
    sys.exit(1 if found else 0)


@transactions.command("abort")
@click.option("--topic", required=True)
@click.option("--partition", type=int, required=True)
@click.option("--producer-id", type=int, default=None, help="Default: the one open there.")
@click.option("--execute", is_flag=True, help="Do it; without it, only say what it would do.")
@click.option(
    "--publish-again/--no-publish-again",
    default=True,
    help="First publish again what the abort would hide and nothing visible stands for.",
)
def transactions_abort(
    topic: str, partition: int, producer_id: int | None, execute: bool, publish_again: bool
) -> None:
    """Abort the transaction open on an output partition, as the worker does by itself when
    FIELDING_HEAL_HANGING_TRANSACTIONS is on. A dry run unless given --execute."""
    from aiokafka import TopicPartition

    from worker.adapters.kafka.transactions import heal, read_log
    from worker.service.hanging import to_publish_again

    settings = _settings()
    candidates = [
        (t, at_coordinator)
        for t, at_coordinator, _ in _open_transactions(settings)
        if t.topic == topic
        and t.partition == partition
        and (producer_id is None or t.producer_id == producer_id)
    ]
    if len(candidates) != 1:
        click.echo(f"{len(candidates)} transactions open there; name one with --producer-id")
        sys.exit(1)
    (transaction, at_coordinator), server = candidates[0], settings.kafka_bootstrap_servers
    if at_coordinator:
        click.echo(f"{transaction.describe()} is open at its coordinator: it will end it itself")
        sys.exit(1)
    if not execute:
        due = (
            to_publish_again(
                asyncio.run(
                    read_log(server, TopicPartition(topic, partition), transaction.start_offset)
                ),
                transaction,
            )
            if publish_again
            else []
        )
        click.echo(
            f"would publish again {len(due)} records, then abort {transaction.describe()} "
            "(dry run: add --execute)"
        )
        return
    healed = asyncio.run(heal(server, transaction, publish_again=publish_again))
    outcome = "aborted" if healed.aborted else "found ended meanwhile, not aborted:"
    click.echo(
        f"published again {healed.published_again} records; {outcome} {transaction.describe()}"
    )


if __name__ == "__main__":
    main()
