"""Due runs are found account by account: each timer row carries what its timer command needs
(the run's account, project, target group and version; the trigger rewrites the row on every
change of the run). The index by time carries the account, so the accounts with due runs are
counted from the due entries alone; an index by (kind, account_id, due_at, run_id) gives each
account's earliest, without a join, so one account's burst cannot hold back another's
(docs/decisions/fair-timers.md). A timer row whose run is gone is deleted first.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SYNC_WITH_RUN = """
CREATE OR REPLACE FUNCTION sync_fielding_run_timers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fielding_run_timers AS t USING changed_runs AS c WHERE t.run_id = c.id;
    INSERT INTO fielding_run_timers (run_id, kind, due_at, account_id, project_id,
                                     target_group_id, version)
    SELECT id,
           CASE status WHEN 'scheduled' THEN 'start' ELSE 'end' END,
           CASE status WHEN 'scheduled' THEN start_fielding_at ELSE end_fielding_at END,
           account_id, project_id, target_group_id, version
      FROM changed_runs
     WHERE (status = 'scheduled' AND start_fielding_at IS NOT NULL)
        OR (status IN ('live', 'paused') AND end_fielding_at IS NOT NULL);
    RETURN NULL;
END
$$"""


def upgrade() -> None:
    op.execute("""
    DELETE FROM fielding_run_timers AS t
     WHERE NOT EXISTS (SELECT FROM fielding_runs AS r WHERE r.id = t.run_id)
    """)
    op.execute("""
    ALTER TABLE fielding_run_timers
        ADD COLUMN account_id integer, ADD COLUMN project_id text,
        ADD COLUMN target_group_id text, ADD COLUMN version integer
    """)
    op.execute("""
    UPDATE fielding_run_timers AS t
       SET account_id = r.account_id, project_id = r.project_id,
           target_group_id = r.target_group_id, version = r.version
      FROM fielding_runs AS r WHERE r.id = t.run_id
    """)
    op.execute("""
    ALTER TABLE fielding_run_timers
        ALTER COLUMN account_id SET NOT NULL, ALTER COLUMN project_id SET NOT NULL,
        ALTER COLUMN target_group_id SET NOT NULL, ALTER COLUMN version SET NOT NULL
    """)
    op.execute(SYNC_WITH_RUN)
    op.execute("""
    CREATE INDEX fielding_run_timers_due_by_account
        ON fielding_run_timers (kind, account_id, due_at, run_id)
    """)
    op.execute("DROP INDEX fielding_run_timers_due")
    op.execute("""
    CREATE INDEX fielding_run_timers_due
        ON fielding_run_timers (kind, due_at, run_id) INCLUDE (account_id)
    """)


def downgrade() -> None:
    raise NotImplementedError("timers by account are not taken back")
