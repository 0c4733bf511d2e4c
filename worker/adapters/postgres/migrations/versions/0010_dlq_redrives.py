"""Each dead letter sent back to the commands topic, recorded before it is sent, so that
`fielding-worker dlq redrive` never sends one twice (docs/decisions/dlq-redrive.md).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `sent_partition`, `sent_offset`: where the broker put the record on the commands topic;
    # NULL while the send is not acknowledged (a re-drive stopped between claim and send).
    op.execute("""
    CREATE TABLE dlq_redrives (
        dlq_topic      text NOT NULL,
        dlq_partition  integer NOT NULL CHECK (dlq_partition >= 0),
        dlq_offset     bigint NOT NULL CHECK (dlq_offset >= 0),
        account_id     integer,
        command_id     text,
        began_at       timestamptz NOT NULL DEFAULT now(),
        sent_partition integer,
        sent_offset    bigint,
        PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE dlq_redrives")
