"""Every run has its times and who last changed it, as the public API's run requires: the runs
written by hand without them get them as `runs put` now derives them (worker/service/
runs_by_hand.py, with the run's last change as "now"), and the system actor where no user is
named; then the columns are NOT NULL. The runs' versions do not move: nothing about a run
changes but what was missing, and no event is published for it.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# `auth.SYSTEM_ACTOR`, written out: a migration must not change when the code does.
SYSTEM_ACTOR = "00000000-0000-4000-8000-00000000f1e1"


def upgrade() -> None:
    op.execute("""
    UPDATE fielding_runs
       SET start_fielding_at = coalesce(
               end_fielding_at - interval '30 days',
               CASE WHEN status = 'scheduled' THEN last_changed_at + interval '1 day'
                    ELSE last_changed_at END)
     WHERE start_fielding_at IS NULL
    """)
    op.execute("""
    UPDATE fielding_runs SET end_fielding_at = start_fielding_at + interval '30 days'
     WHERE end_fielding_at IS NULL
    """)
    op.execute(
        f"UPDATE fielding_runs SET last_changed_by = '{SYSTEM_ACTOR}' WHERE last_changed_by IS NULL"
    )
    op.execute("""
    ALTER TABLE fielding_runs
        ALTER COLUMN start_fielding_at SET NOT NULL,
        ALTER COLUMN end_fielding_at SET NOT NULL,
        ALTER COLUMN last_changed_by SET NOT NULL
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE fielding_runs
        ALTER COLUMN start_fielding_at DROP NOT NULL,
        ALTER COLUMN end_fielding_at DROP NOT NULL,
        ALTER COLUMN last_changed_by DROP NOT NULL
    """)
