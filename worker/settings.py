"""Every setting of the worker, read from the environment: the one place they are defined."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    # Accept both the environment name and the field name, so tests can pass keywords.
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str = Field(
        "postgresql://fielding:fielding@localhost:5432/fielding",
        validation_alias=_env("DATABASE_URL"),
    )
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("FIELDING_JWT_SECRET"))
    jwt_public_key: str | None = Field(
        None,
        validation_alias=_env("FIELDING_JWT_PUBLIC_KEY"),
        description="PEM public key; when set, RS256 tokens are accepted besides HS256.",
    )

    commands_topic: str = Field(
        "fielding-run-commands", validation_alias=_env("FIELDING_COMMANDS_TOPIC")
    )
    results_topic: str = Field(
        "fielding-run-command-results", validation_alias=_env("FIELDING_RESULTS_TOPIC")
    )
    events_topic: str = Field("target-group-events", validation_alias=_env("FIELDING_EVENTS_TOPIC"))
    dlq_topic: str = Field("fielding-run-commands-dlq", validation_alias=_env("FIELDING_DLQ_TOPIC"))
    consumer_group: str = Field("fielding-worker", validation_alias=_env("FIELDING_CONSUMER_GROUP"))
    commands_partitions: int = Field(12, validation_alias=_env("FIELDING_COMMANDS_PARTITIONS"))
    output_partitions: int = Field(12, validation_alias=_env("FIELDING_OUTPUT_PARTITIONS"))
    replication_factor: int = Field(1, validation_alias=_env("FIELDING_REPLICATION_FACTOR"))

    metrics_port: int = Field(9464, validation_alias=_env("METRICS_PORT"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))

    max_batch: int = Field(
        2000,
        validation_alias=_env("FIELDING_MAX_BATCH"),
        description="Most commands handled in one database transaction and one Kafka transaction.",
    )
    rate_limit_per_account: int = Field(
        100,
        validation_alias=_env("FIELDING_RATE_LIMIT"),
        description="Commands an account may send per window, across all replicas; 0 is no limit.",
    )
    rate_limit_window_seconds: int = Field(
        1, validation_alias=_env("FIELDING_RATE_LIMIT_WINDOW_SECONDS")
    )
    outcome_retention_hours: float = Field(
        168,
        validation_alias=_env("FIELDING_OUTCOME_RETENTION_HOURS"),
        description="How long a decided command is remembered for idempotent replays.",
    )
    unexpected_error_attempts: int = Field(
        3,
        validation_alias=_env("FIELDING_UNEXPECTED_ERROR_ATTEMPTS"),
        description="Tries of a command that fails unexpectedly before it is answered 500.",
    )
    stall_seconds: float = Field(
        60,
        validation_alias=_env("FIELDING_STALL_SECONDS"),
        description="/healthz fails when there is lag and no progress for this long.",
    )
    shutdown_timeout_seconds: float = Field(
        20, validation_alias=_env("FIELDING_SHUTDOWN_TIMEOUT_SECONDS")
    )
    session_timeout_ms: int = Field(10_000, validation_alias=_env("FIELDING_SESSION_TIMEOUT_MS"))
    max_poll_interval_ms: int = Field(
        60_000, validation_alias=_env("FIELDING_MAX_POLL_INTERVAL_MS")
    )

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
