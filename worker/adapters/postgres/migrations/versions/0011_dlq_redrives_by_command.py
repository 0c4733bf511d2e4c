"""Re-drives by command: a claim of a dead letter reads the re-drives of its command, under
the command's advisory lock, to refuse one older than another dead letter's re-drive of it
(docs/decisions/dlq-redrive.md). Without this index each claim would read every re-drive
ever recorded for the DLQ topic while holding that lock.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The table grows by one row per dead letter re-driven, so it is small and the build is
    # short; only `fielding-worker dlq` writes to it.
    op.execute("CREATE INDEX dlq_redrives_by_command ON dlq_redrives (account_id, command_id)")


def downgrade() -> None:
    op.execute("DROP INDEX dlq_redrives_by_command")
