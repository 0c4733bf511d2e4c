"""Every setting of the worker, read from the environment: the one place they are defined.

Values are checked when the settings are read (a window of 0 seconds, a batch of 0 commands,
a port out of range): `fielding-worker` stops at start with the setting's name and what is
wrong, rather than failing later in a way that names neither.
"""

from __future__ import annotations

import ipaddress
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The secret the Makefile and docker-compose.yml give a local run: public, so `run` and `serve`
# take it only in development (or `serve` bound to loopback).
DEVELOPMENT_SECRET = "local-development-secret-change-me-0123456789"


def _env(name: str) -> AliasChoices:
    # Accept both the environment name and the field name, so tests can pass keywords.
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", min_length=1, validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str = Field(
        "postgresql://fielding:fielding@localhost:5432/fielding",
        pattern=r"^postgres(ql)?://",
        validation_alias=_env("DATABASE_URL"),
    )
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("FIELDING_JWT_SECRET"))
    jwt_public_key: str | None = Field(
        None,
        validation_alias=_env("FIELDING_JWT_PUBLIC_KEY"),
        description="PEM public key; when set, RS256 tokens are accepted besides HS256.",
    )
    system_jwt_secret: SecretStr | None = Field(
        None,
        validation_alias=_env("FIELDING_SYSTEM_JWT_SECRET"),
        description="The system key: derives the ids of the scheduler's timer commands and "
        "signs each of them (and verifies the tokens older schedulers sent). `run` needs it, "
        "different from FIELDING_JWT_SECRET; only in development does it default to "
        "FIELDING_JWT_SECRET. `serve` never uses it.",
    )
    jwt_leeway_seconds: float = Field(
        30,
        ge=0,
        le=300,
        validation_alias=_env("FIELDING_JWT_LEEWAY_SECONDS"),
        description="Clock skew allowed between token issuers and the worker: a token is taken "
        "this long after its `exp`, and this long before its `nbf` or `iat`.",
    )
    environment: Literal["production", "development"] = Field(
        "production",
        validation_alias=_env("FIELDING_ENVIRONMENT"),
        description="`development` (set by `make run` and docker-compose.yml) lets `run` and "
        "`serve` take the development secret, and the system key default to "
        "FIELDING_JWT_SECRET; in `production`, `run` and `serve` refuse to start with either.",
    )
    jwt_audience: str | None = Field(
        None,
        validation_alias=_env("FIELDING_JWT_AUDIENCE"),
        description="When set, a token must carry this `aud`.",
    )
    jwt_issuer: str | None = Field(
        None,
        validation_alias=_env("FIELDING_JWT_ISSUER"),
        description="When set, a token must carry this `iss`.",
    )

    commands_topic: str = Field(
        "fielding-run-commands", min_length=1, validation_alias=_env("FIELDING_COMMANDS_TOPIC")
    )
    results_topic: str = Field(
        "fielding-run-command-results",
        min_length=1,
        validation_alias=_env("FIELDING_RESULTS_TOPIC"),
    )
    events_topic: str = Field(
        "target-group-events", min_length=1, validation_alias=_env("FIELDING_EVENTS_TOPIC")
    )
    dlq_topic: str = Field(
        "fielding-run-commands-dlq", min_length=1, validation_alias=_env("FIELDING_DLQ_TOPIC")
    )
    replies_topic: str = Field(
        "fielding-run-command-replies",
        min_length=1,
        validation_alias=_env("FIELDING_REPLIES_TOPIC"),
        description="Where results of commands sent by `serve` are copied for the HTTP process "
        "that waits for them (the partition its command names).",
    )
    states_topic: str = Field(
        "fielding-run-states",
        validation_alias=_env("FIELDING_STATES_TOPIC"),
        description="The compacted topic of run states, keyed by fielding_run_id: after each "
        "change, the run as it then is, in the change's transaction. Empty: no states are "
        "built, kept or published (changes decided meanwhile never get theirs).",
    )
    reply_partitions: int = Field(12, ge=1, validation_alias=_env("FIELDING_REPLY_PARTITIONS"))
    consumer_group: str = Field(
        "fielding-worker", min_length=1, validation_alias=_env("FIELDING_CONSUMER_GROUP")
    )
    commands_partitions: int = Field(
        12, ge=1, validation_alias=_env("FIELDING_COMMANDS_PARTITIONS")
    )
    output_partitions: int = Field(12, ge=1, validation_alias=_env("FIELDING_OUTPUT_PARTITIONS"))
    replication_factor: int = Field(1, ge=1, validation_alias=_env("FIELDING_REPLICATION_FACTOR"))

    metrics_port: int = Field(9464, ge=0, le=65535, validation_alias=_env("METRICS_PORT"))
    api_port: int = Field(
        8080, ge=0, le=65535, validation_alias=_env("API_PORT"), description="`serve`'s port."
    )
    api_host: str = Field(
        "0.0.0.0",
        min_length=1,
        validation_alias=_env("API_HOST"),
        description="The address `serve` binds; a loopback one (127.0.0.1, ::1, localhost) "
        "lets it take the development secret outside development.",
    )
    http_deadline_seconds: float = Field(
        10,
        gt=0,
        validation_alias=_env("FIELDING_HTTP_DEADLINE_SECONDS"),
        description="How long `serve` waits for a command's result before answering 504 (the "
        "command is applied all the same).",
    )
    reply_partition: int | None = Field(
        None,
        ge=0,
        validation_alias=_env("FIELDING_REPLY_PARTITION"),
        description="The replies partition this `serve` process reads (default: one at random).",
    )
    log_level: str = Field(
        "INFO",
        pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        validation_alias=_env("LOG_LEVEL"),
    )

    max_batch: int = Field(
        2000,
        ge=1,
        validation_alias=_env("FIELDING_MAX_BATCH"),
        description="Most commands handled in one database transaction and one Kafka transaction.",
    )
    max_batch_bytes: int = Field(
        2 << 20,
        ge=1,
        validation_alias=_env("FIELDING_MAX_BATCH_BYTES"),
        description="Most bytes of command records in one batch (a larger record goes alone); "
        "it also bounds a batch of bulk jobs (1,000 target groups are about 30 KB).",
    )
    batch_gather_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        validation_alias=_env("FIELDING_BATCH_GATHER_MS"),
        description="How long a batch that is not full waits for more commands after its "
        "oldest arrived, so that at low rates one transaction carries several; 0 takes what is "
        "waiting at once. A command waits at most this long for it "
        "(docs/decisions/batch-gathering.md).",
    )
    max_buffered_bytes: int = Field(
        32 << 20,
        ge=1,
        validation_alias=_env("FIELDING_MAX_BUFFERED_BYTES"),
        description="Fetching pauses while this many bytes of records wait to be decided.",
    )
    rate_limit_per_account: int = Field(
        100,
        ge=0,
        validation_alias=_env("FIELDING_RATE_LIMIT"),
        description="Units of work an account may ask for per window, across all replicas (a "
        "bulk job costs one per target group, any other command one); 0 is no limit.",
    )
    read_rate_limit_per_account: int = Field(
        100,
        ge=0,
        validation_alias=_env("FIELDING_READ_RATE_LIMIT"),
        description="Reads (GET) an account may make per window in each serve process (429 "
        "with retry-after over it); 0 is no limit.",
    )
    rate_limit_window_seconds: int = Field(
        1, ge=1, validation_alias=_env("FIELDING_RATE_LIMIT_WINDOW_SECONDS")
    )
    outcome_retention_hours: float = Field(
        168,
        gt=0,
        validation_alias=_env("FIELDING_OUTCOME_RETENTION_HOURS"),
        description="How long a decided command is remembered for idempotent replays.",
    )
    job_retention_hours: float = Field(
        168,
        gt=0,
        validation_alias=_env("FIELDING_JOB_RETENTION_HOURS"),
        description="How long the jobs that draft and bulk commands create are kept (then "
        "GET answers 404 for them).",
    )
    dlq_max_redrives: int = Field(
        3,
        ge=1,
        validation_alias=_env("FIELDING_DLQ_MAX_REDRIVES"),
        description="`dlq redrive` leaves a dead letter that was re-driven and dead-lettered "
        "again this many times (its fielding-redrives header) unless given --force.",
    )
    unexpected_error_attempts: int = Field(
        3,
        ge=1,
        validation_alias=_env("FIELDING_UNEXPECTED_ERROR_ATTEMPTS"),
        description="Tries of a command that fails unexpectedly before it is answered 500.",
    )
    statement_timeout_seconds: float = Field(
        30,
        gt=0,
        validation_alias=_env("FIELDING_STATEMENT_TIMEOUT_SECONDS"),
        description="Postgres gives up on a statement after this long; the batch is retried "
        "and, if it keeps timing out, split. A call with no answer 5 s after it (a connection "
        "gone silent) is given up by the client, its connection closed, and retried.",
    )
    scheduler_interval_seconds: float = Field(
        1.0,
        ge=0,
        validation_alias=_env("FIELDING_SCHEDULER_INTERVAL_SECONDS"),
        description="How often due runs are looked for; 0 turns this replica's scheduler off.",
    )
    stall_seconds: float = Field(
        60,
        gt=0,
        validation_alias=_env("FIELDING_STALL_SECONDS"),
        description="/healthz fails when there is lag and no progress for this long.",
    )
    shutdown_timeout_seconds: float = Field(
        20, gt=0, validation_alias=_env("FIELDING_SHUTDOWN_TIMEOUT_SECONDS")
    )
    session_timeout_ms: int = Field(
        10_000, ge=1000, validation_alias=_env("FIELDING_SESSION_TIMEOUT_MS")
    )
    max_poll_interval_ms: int = Field(
        60_000, ge=1000, validation_alias=_env("FIELDING_MAX_POLL_INTERVAL_MS")
    )
    transaction_timeout_ms: int = Field(
        60_000,
        ge=10_000,
        le=900_000,
        validation_alias=_env("FIELDING_TRANSACTION_TIMEOUT_MS"),
        description="The broker aborts a batch's Kafka transaction left open this long (a frozen "
        "worker's); at most the broker's transaction.max.timeout.ms (15 min by default). A "
        "publish slower than this loses the partitions, which are fetched again.",
    )
    http_header_timeout_seconds: float = Field(
        5,
        gt=0,
        validation_alias=_env("FIELDING_HTTP_HEADER_TIMEOUT_SECONDS"),
        description="serve closes a connection whose request's headers have not all arrived "
        "this long after its first byte (or after its previous response).",
    )
    http_body_timeout_seconds: float = Field(
        10,
        gt=0,
        validation_alias=_env("FIELDING_HTTP_BODY_TIMEOUT_SECONDS"),
        description="serve answers 408 to a request whose body has not all arrived this long "
        "after its headers.",
    )
    http_keep_alive_seconds: float = Field(
        5,
        gt=0,
        validation_alias=_env("FIELDING_HTTP_KEEP_ALIVE_SECONDS"),
        description="serve closes a kept-alive connection idle this long.",
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        validation_alias=_env("FIELDING_HTTP_MAX_CONNECTIONS"),
        description="Open connections per serve process (fewer where the open-file limit "
        "demands it); at the cap, the connection that has waited longest for its headers is "
        "closed for the new one, or the new one is answered 503 when all are busy.",
    )
    http_max_waiting: int = Field(
        500,
        ge=1,
        validation_alias=_env("FIELDING_HTTP_MAX_WAITING"),
        description="Change requests waiting for their replies per serve process; over it, 503 "
        "with retry-after.",
    )
    http_shutdown_seconds: float = Field(
        10,
        gt=0,
        validation_alias=_env("FIELDING_HTTP_SHUTDOWN_SECONDS"),
        description="On SIGTERM, serve waits this long for open requests before it closes them.",
    )
    hanging_check_seconds: float = Field(
        30,
        ge=0,
        validation_alias=_env("FIELDING_HANGING_CHECK_SECONDS"),
        description="How often the output partitions are looked at for a hanging transaction "
        "(one their leader holds open and its coordinator does not); 0 turns the check off.",
    )
    hanging_margin_seconds: float = Field(
        60,
        ge=0,
        validation_alias=_env("FIELDING_HANGING_MARGIN_SECONDS"),
        description="A transaction open on an output partition for the transaction timeout plus "
        "this long, and not open at its coordinator, is hanging.",
    )
    heal_hanging_transactions: bool = Field(
        True,
        validation_alias=_env("FIELDING_HEAL_HANGING_TRANSACTIONS"),
        description="Whether the worker aborts a hanging transaction itself, after publishing "
        "again whatever the abort hides that nothing visible stands for; off, it only reports it.",
    )

    @property
    def hanging_after_seconds(self) -> float:
        return self.transaction_timeout_ms / 1000 + self.hanging_margin_seconds

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        topics = [
            self.commands_topic,
            self.results_topic,
            self.events_topic,
            self.dlq_topic,
            self.replies_topic,
            *([self.states_topic] if self.states_topic else []),
        ]
        if len(set(topics)) != len(topics):
            raise ValueError(
                "the commands, results, events, DLQ, replies and states topics must all differ"
            )
        if self.session_timeout_ms > self.max_poll_interval_ms:
            raise ValueError(
                "FIELDING_SESSION_TIMEOUT_MS must not exceed FIELDING_MAX_POLL_INTERVAL_MS"
            )
        return self

    def as_environment(self) -> dict[str, str]:
        """These settings as the environment variables that would produce them (for child processes)."""
        env = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            choices = getattr(field.validation_alias, "choices", [])
            env_name = next(c for c in choices if isinstance(c, str) and c.isupper())
            env[env_name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env

    @property
    def transactional_id_prefix(self) -> str:
        return f"{self.consumer_group}.{self.commands_topic}"

    @property
    def system_secret(self) -> str | None:
        """The system key (see `system_jwt_secret`): FIELDING_JWT_SECRET stands in for it only
        in development."""
        secret = self.system_jwt_secret
        if secret is None and self.environment == "development":
            secret = self.jwt_secret
        return secret.get_secret_value() if secret else None

    def startup_refusal(self, command: Literal["run", "serve"]) -> str | None:
        """Why `command` must not start with these settings, if it must not: the development
        secret outside development (for `serve`, unless it binds loopback only); for `run`, no
        system key of its own."""
        if self.environment == "development":
            return None
        development = "FIELDING_ENVIRONMENT=development"
        given = {
            "FIELDING_JWT_SECRET": self.jwt_secret,
            "FIELDING_SYSTEM_JWT_SECRET": self.system_jwt_secret,
        }
        loopback = " or API_HOST=127.0.0.1" if command == "serve" else ""
        for name, secret in given.items():
            public = secret is not None and secret.get_secret_value() == DEVELOPMENT_SECRET
            if public and not (command == "serve" and _loopback(self.api_host)):
                return (
                    f"{name} is the development secret, which anyone can read: set a secret "
                    f"of your own (on a development machine: {development}{loopback})"
                )
        if command == "run":
            if self.system_jwt_secret is None:
                return (
                    "FIELDING_SYSTEM_JWT_SECRET is not set: the worker signs and checks its "
                    "timer commands with a key of its own, never FIELDING_JWT_SECRET (on a "
                    f"development machine, {development} lets it use FIELDING_JWT_SECRET)"
                )
            if self.system_jwt_secret == self.jwt_secret:
                return (
                    "FIELDING_SYSTEM_JWT_SECRET must differ from FIELDING_JWT_SECRET: whoever "
                    "issues user tokens could otherwise sign timer commands"
                )
        return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
