"""A batch's decisions are written by one function call: one round trip, one statement, so it
commits (one WAL flush) or rolls back as a whole without a BEGIN and a COMMIT of its own.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The compare-and-swap: a run is written only if its version is still the one the batch
    # read. Any run or outcome not written (a lost race) raises serialization_failure, which
    # rolls the whole call back; the worker then reads again and retries the batch.
    op.execute("""
    CREATE FUNCTION save_decisions(
        run_ids text[], statuses text[], versions integer[], expected_versions integer[],
        changed_at timestamptz[], changed_by uuid[],
        account_ids integer[], command_ids text[], fingerprints bytea[], outcome_statuses smallint[],
        results json[], events json[], source_topics text[], source_partitions integer[],
        source_offsets bigint[]
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        written bigint;
    BEGIN
        UPDATE fielding_runs AS r
           SET status = u.status, version = u.version, last_changed_at = u.changed_at,
               last_changed_by = u.changed_by
          FROM unnest(run_ids, statuses, versions, expected_versions, changed_at, changed_by)
               AS u(id, status, version, expected_version, changed_at, changed_by)
         WHERE r.id = u.id AND r.version = u.expected_version;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> coalesce(cardinality(run_ids), 0) THEN
            RAISE EXCEPTION 'a fielding run changed since the batch read it'
                  USING ERRCODE = 'serialization_failure';
        END IF;

        INSERT INTO command_outcomes (account_id, command_id, fingerprint, status, result, event,
                                      source_topic, source_partition, source_offset)
        SELECT * FROM unnest(account_ids, command_ids, fingerprints, outcome_statuses, results,
                             events, source_topics, source_partitions, source_offsets)
        ON CONFLICT (account_id, command_id) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> coalesce(cardinality(account_ids), 0) THEN
            -- The same command id decided meanwhile elsewhere (the same command on two
            -- partitions): the retry replays what was decided there.
            RAISE EXCEPTION 'a command was decided concurrently'
                  USING ERRCODE = 'serialization_failure';
        END IF;
    END
    $$""")


def downgrade() -> None:
    op.execute("DROP FUNCTION save_decisions")
