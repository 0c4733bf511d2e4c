"""A decided command remembers its runs' states beside its events: a redelivered command
publishes on the states topic the very records first decided, never the run as it is by then.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Migration 0005's function, as it was; 0008 adds the states to it.
SIGNATURE_0005 = """save_decisions(
    text[], text[], integer[], integer[], timestamptz[], timestamptz[], timestamptz[], uuid[],
    text[], integer[], text[], text[], text[], timestamptz[], timestamptz[], timestamptz[], uuid[],
    integer[], text[], bytea[], smallint[], json[], text[], integer[], bigint[],
    integer[], text[], json[],
    text[], integer[], text[], text[], text[], json[])"""


def upgrade() -> None:
    # States are kept as published (json keeps the text), with their keys, in order; an outcome
    # decided while states were off, or before this migration, has none.
    op.execute("""
    ALTER TABLE command_outcomes
        ADD COLUMN states json[] NOT NULL DEFAULT '{}',
        ADD COLUMN state_keys text[] NOT NULL DEFAULT '{}'
    """)
    op.execute(f"DROP FUNCTION {SIGNATURE_0005}")
    # As 0005's, with the outcomes' states (state_outcomes, state_keys, state_values) written
    # the way their events are.
    op.execute("""
    CREATE FUNCTION save_decisions(
        run_ids text[], statuses text[], versions integer[], expected_versions integer[],
        starts timestamptz[], ends timestamptz[], changed_at timestamptz[], changed_by uuid[],
        new_ids text[], new_accounts integer[], new_projects text[], new_target_groups text[],
        new_statuses text[], new_starts timestamptz[], new_ends timestamptz[],
        new_changed_at timestamptz[], new_changed_by uuid[],
        account_ids integer[], command_ids text[], fingerprints bytea[], outcome_statuses smallint[],
        results json[], source_topics text[], source_partitions integer[], source_offsets bigint[],
        event_outcomes integer[], event_keys text[], event_values json[],
        job_ids text[], job_accounts integer[], job_projects text[], job_target_groups text[],
        job_types text[], job_bodies json[],
        state_outcomes integer[], state_keys text[], state_values json[]
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        written bigint;
    BEGIN
        -- Changed runs; a time left null is unchanged (no change sets a time to null).
        UPDATE fielding_runs AS r
           SET status = u.status, version = u.version,
               start_fielding_at = coalesce(u.start_at, r.start_fielding_at),
               end_fielding_at = coalesce(u.end_at, r.end_fielding_at),
               last_changed_at = u.changed_at, last_changed_by = u.changed_by
          FROM unnest(run_ids, statuses, versions, expected_versions, starts, ends, changed_at,
                      changed_by)
               AS u(id, status, version, expected_version, start_at, end_at, changed_at, changed_by)
         WHERE r.id = u.id AND r.version = u.expected_version;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> coalesce(cardinality(run_ids), 0) THEN
            RAISE EXCEPTION 'a fielding run changed since the batch read it'
                  USING ERRCODE = 'serialization_failure';
        END IF;

        -- Runs created from drafts, at version 1.
        INSERT INTO fielding_runs (id, account_id, project_id, target_group_id, status, version,
                                   start_fielding_at, end_fielding_at, last_changed_at,
                                   last_changed_by)
        SELECT u.id, u.account_id, u.project_id, u.target_group_id, u.status, 1,
               u.start_at, u.end_at, u.changed_at, u.changed_by
          FROM unnest(new_ids, new_accounts, new_projects, new_target_groups, new_statuses,
                      new_starts, new_ends, new_changed_at, new_changed_by)
               AS u(id, account_id, project_id, target_group_id, status, start_at, end_at,
                    changed_at, changed_by)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> coalesce(cardinality(new_ids), 0) THEN
            -- The target group got a run meanwhile, from another worker's batch.
            RAISE EXCEPTION 'a fielding run was created concurrently'
                  USING ERRCODE = 'serialization_failure';
        END IF;

        INSERT INTO command_outcomes (account_id, command_id, fingerprint, status, result,
                                      source_topic, source_partition, source_offset, events,
                                      event_keys, states, state_keys)
        SELECT o.account_id, o.command_id, o.fingerprint, o.status, o.result, o.source_topic,
               o.source_partition, o.source_offset, coalesce(e.values_, '{}'),
               coalesce(e.keys, '{}'), coalesce(s.values_, '{}'), coalesce(s.keys, '{}')
          FROM unnest(account_ids, command_ids, fingerprints, outcome_statuses, results,
                      source_topics, source_partitions, source_offsets) WITH ORDINALITY
               AS o(account_id, command_id, fingerprint, status, result, source_topic,
                    source_partition, source_offset, n)
          LEFT JOIN (
              SELECT outcome, array_agg(value_ ORDER BY n) AS values_, array_agg(key ORDER BY n) AS keys
                FROM unnest(event_outcomes, event_keys, event_values) WITH ORDINALITY
                     AS ev(outcome, key, value_, n)
               GROUP BY outcome
          ) AS e ON e.outcome = o.n
          LEFT JOIN (
              SELECT outcome, array_agg(value_ ORDER BY n) AS values_, array_agg(key ORDER BY n) AS keys
                FROM unnest(state_outcomes, state_keys, state_values) WITH ORDINALITY
                     AS st(outcome, key, value_, n)
               GROUP BY outcome
          ) AS s ON s.outcome = o.n
        ON CONFLICT (account_id, command_id) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> coalesce(cardinality(account_ids), 0) THEN
            -- The same command id decided meanwhile elsewhere (the same command on two
            -- partitions): the retry replays what was decided there.
            RAISE EXCEPTION 'a command was decided concurrently'
                  USING ERRCODE = 'serialization_failure';
        END IF;

        -- A job decided again (its command came back after its outcome expired) shows its
        -- new result.
        INSERT INTO fielding_jobs (job_id, account_id, project_id, target_group_id, command_type,
                                   body)
        SELECT * FROM unnest(job_ids, job_accounts, job_projects, job_target_groups, job_types,
                             job_bodies)
        ON CONFLICT (job_id) DO UPDATE SET body = excluded.body, created_at = now();
    END
    $$""")


def downgrade() -> None:
    raise NotImplementedError("the outcomes' states are not taken back")
