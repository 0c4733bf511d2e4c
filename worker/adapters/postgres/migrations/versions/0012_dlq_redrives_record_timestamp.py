"""The record timestamp of each re-driven dead letter: with its place, what tells it from a
record at the same place of a DLQ topic deleted and made again, whose offsets start over
(docs/decisions/dlq-redrive.md). Rows recorded before it have none and stand for any record at
their place, as before.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: no table rewrite.
    op.execute("ALTER TABLE dlq_redrives ADD COLUMN dlq_timestamp_ms bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE dlq_redrives DROP COLUMN dlq_timestamp_ms")
