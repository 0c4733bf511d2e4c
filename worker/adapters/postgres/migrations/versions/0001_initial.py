"""Fielding runs, remembered command outcomes, and per-account rate counters.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE fielding_runs (
        id                text PRIMARY KEY CHECK (id ~ '^[0-9A-Z]{26}$'),
        account_id        integer NOT NULL CHECK (account_id > 0),
        project_id        text NOT NULL CHECK (project_id ~ '^[0-9A-Z]{26}$'),
        target_group_id   text NOT NULL UNIQUE CHECK (target_group_id ~ '^[0-9A-Z]{26}$'),
        status            text NOT NULL CHECK (status IN ('scheduled', 'live', 'paused', 'completed')),
        version           integer NOT NULL CHECK (version >= 1),
        start_fielding_at timestamptz,
        end_fielding_at   timestamptz,
        last_changed_at   timestamptz NOT NULL DEFAULT now(),
        last_changed_by   uuid
    )""")
    # One row per decided command (204, 404, 412, 422), for idempotent replays. `result` and
    # `event` are json, not jsonb, so a replay repeats the very bytes first published.
    op.execute("""
    CREATE TABLE command_outcomes (
        account_id       integer NOT NULL,
        command_id       text NOT NULL,
        fingerprint      bytea NOT NULL,
        status           smallint NOT NULL,
        result           json NOT NULL,
        event            json,
        source_topic     text NOT NULL,
        source_partition integer NOT NULL,
        source_offset    bigint NOT NULL,
        decided_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account_id, command_id)
    )""")
    op.execute("CREATE INDEX command_outcomes_decided_at ON command_outcomes (decided_at)")
    op.execute("""
    CREATE UNLOGGED TABLE account_command_rates (
        account_id   integer NOT NULL,
        window_start timestamptz NOT NULL,
        used         integer NOT NULL,
        PRIMARY KEY (account_id, window_start)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE account_command_rates")
    op.execute("DROP TABLE command_outcomes")
    op.execute("DROP TABLE fielding_runs")
