"""The whole lifecycle: a decided command remembers all its events (a bulk job changes many
runs), jobs are kept, runs are created by a batch's write, due runs are found by index, and one
replica at a time scans for them.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Events are kept as published (json keeps the text), with their keys, in order.
    op.execute("""
    ALTER TABLE command_outcomes
        ADD COLUMN events json[] NOT NULL DEFAULT '{}',
        ADD COLUMN event_keys text[] NOT NULL DEFAULT '{}'
    """)
    op.execute("""
    UPDATE command_outcomes
       SET events = ARRAY[event], event_keys = ARRAY[event->>'target_group_id']
     WHERE event IS NOT NULL
    """)
    op.execute("ALTER TABLE command_outcomes DROP COLUMN event")

    op.execute("""
    CREATE TABLE fielding_jobs (
        job_id          text PRIMARY KEY,
        account_id      integer NOT NULL,
        project_id      text NOT NULL,
        target_group_id text,  -- a draft job's (a bulk job names many)
        command_type    text NOT NULL,
        body         json NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now()
    )""")

    # The runs that can come due, kept beside the runs by statement-level triggers (set-based:
    # one statement per batch, whoever writes): the scheduler reads only due ones, in time
    # order, so finding them costs what the due runs cost, not what the table holds. Not an
    # index on fielding_runs: an index over `status` (even a partial one) would turn every
    # status change into a non-HOT update of both of its indexes (docs/decisions/timers-table.md).
    op.execute("""
    CREATE TABLE fielding_run_timers (
        run_id text PRIMARY KEY,
        kind   text NOT NULL CHECK (kind IN ('start', 'end')),
        due_at timestamptz NOT NULL
    )""")
    op.execute("CREATE INDEX fielding_run_timers_due ON fielding_run_timers (kind, due_at, run_id)")
    op.execute("""
    CREATE FUNCTION sync_fielding_run_timers() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM fielding_run_timers AS t USING changed_runs AS c WHERE t.run_id = c.id;
        INSERT INTO fielding_run_timers (run_id, kind, due_at)
        SELECT id,
               CASE status WHEN 'scheduled' THEN 'start' ELSE 'end' END,
               CASE status WHEN 'scheduled' THEN start_fielding_at ELSE end_fielding_at END
          FROM changed_runs
         WHERE (status = 'scheduled' AND start_fielding_at IS NOT NULL)
            OR (status IN ('live', 'paused') AND end_fielding_at IS NOT NULL);
        RETURN NULL;
    END
    $$""")
    for event in ("INSERT", "UPDATE"):
        op.execute(f"""
        CREATE TRIGGER fielding_run_timers_after_{event.lower()} AFTER {event} ON fielding_runs
        REFERENCING NEW TABLE AS changed_runs
        FOR EACH STATEMENT EXECUTE FUNCTION sync_fielding_run_timers()
        """)
    op.execute("""
    INSERT INTO fielding_run_timers (run_id, kind, due_at)
    SELECT id, CASE status WHEN 'scheduled' THEN 'start' ELSE 'end' END,
           CASE status WHEN 'scheduled' THEN start_fielding_at ELSE end_fielding_at END
      FROM fielding_runs
     WHERE (status = 'scheduled' AND start_fielding_at IS NOT NULL)
        OR (status IN ('live', 'paused') AND end_fielding_at IS NOT NULL)
    """)

    op.execute("""
    CREATE TABLE scheduler_leases (
        name       text PRIMARY KEY,
        holder     text NOT NULL,
        expires_at timestamptz NOT NULL
    )""")

    op.execute("""
    DROP FUNCTION save_decisions(text[], text[], integer[], integer[], timestamptz[], uuid[],
        integer[], text[], bytea[], smallint[], json[], json[], text[], integer[], bigint[])
    """)
    # One call writes a batch: runs with a compare-and-swap on the version each was read at
    # (and runs created by it), outcomes with their events, and jobs. Anything not written as
    # expected (a lost race) raises serialization_failure, which rolls the whole call back;
    # the worker then reads again and decides the batch again.
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
        job_types text[], job_bodies json[]
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
                                      event_keys)
        SELECT o.account_id, o.command_id, o.fingerprint, o.status, o.result, o.source_topic,
               o.source_partition, o.source_offset, coalesce(e.values_, '{}'), coalesce(e.keys, '{}')
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
    raise NotImplementedError("the lifecycle's tables and columns are not taken back")
