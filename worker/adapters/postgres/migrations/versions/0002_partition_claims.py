"""Who last claimed each command partition, so the next owner can fence it.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `unfenced`: earlier claimants not yet confirmed fenced (a claimant that died between
    # claiming and fencing leaves its predecessors here for the next one).
    op.execute("""
    CREATE TABLE partition_claims (
        topic            text NOT NULL,
        partition        integer NOT NULL CHECK (partition >= 0),
        transactional_id text NOT NULL,
        unfenced         text[] NOT NULL DEFAULT '{}',
        claimed_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (topic, partition)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE partition_claims")
