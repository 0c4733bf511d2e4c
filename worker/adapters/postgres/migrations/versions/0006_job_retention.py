"""Jobs expire: housekeeping deletes those older than FIELDING_JOB_RETENTION_HOURS, found through
an index on their creation time (a scan of the whole table per round otherwise).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX fielding_jobs_created_at ON fielding_jobs (created_at)")


def downgrade() -> None:
    op.execute("DROP INDEX fielding_jobs_created_at")
