"""A claim names the owner (one id per group assignment), whose producers' transactional ids
derive from it: an owner publishes under more than one.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE partition_claims RENAME COLUMN transactional_id TO owner_id")


def downgrade() -> None:
    op.execute("ALTER TABLE partition_claims RENAME COLUMN owner_id TO transactional_id")
