-- Each run's params, tags and latest metrics as three JSON objects in one row, kept
-- by triggers in the same statement as the rows they copy. A page of search results
-- (and GetRun) reads one row per run here instead of aggregating three tables per
-- run: on 10,000 runs that was more than half of a search's time.
--
-- The triggers are per statement, over its transition tables, so a batch of 1,000
-- keys merges into a document once, not 1,000 times. Every writer locks the run's
-- row in `runs` before it writes to these tables, so the document's row is always
-- locked second and concurrent writers queue instead of deadlocking.
CREATE TABLE run_docs (
    run_id TEXT PRIMARY KEY REFERENCES runs (run_id),
    params JSONB NOT NULL DEFAULT '{}',
    tags JSONB NOT NULL DEFAULT '{}',
    -- key: [value as text or null when NaN, is_nan, timestamp, step]
    metrics JSONB NOT NULL DEFAULT '{}',
    -- Whether the run has dataset inputs, model inputs or model outputs: a run or a
    -- page without any skips the queries that read them. Links are never removed.
    linked BOOLEAN NOT NULL DEFAULT false
);

CREATE FUNCTION run_docs_params() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_docs AS d (run_id, params)
        SELECT run_id, jsonb_object_agg(key, value) FROM new_rows GROUP BY run_id
    ON CONFLICT (run_id) DO UPDATE SET params = d.params || excluded.params;
    RETURN NULL;
END $$;

CREATE FUNCTION run_docs_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_docs AS d (run_id, tags)
        SELECT run_id, jsonb_object_agg(key, value) FROM new_rows GROUP BY run_id
    ON CONFLICT (run_id) DO UPDATE SET tags = d.tags || excluded.tags;
    RETURN NULL;
END $$;

CREATE FUNCTION run_docs_tags_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE run_docs d SET tags = d.tags - o.keys
    FROM (SELECT run_id, array_agg(key) AS keys FROM old_rows GROUP BY run_id) o
    WHERE d.run_id = o.run_id;
    RETURN NULL;
END $$;

-- A float's text is exact (shortest round trip) only when extra_float_digits > 0:
-- pinned here rather than left to the writing session.
CREATE FUNCTION run_docs_metrics() RETURNS trigger LANGUAGE plpgsql
SET extra_float_digits = 3 AS $$
BEGIN
    INSERT INTO run_docs AS d (run_id, metrics)
        SELECT run_id, jsonb_object_agg(key, jsonb_build_array(value::text, is_nan, timestamp, step))
        FROM new_rows GROUP BY run_id
    ON CONFLICT (run_id) DO UPDATE SET metrics = d.metrics || excluded.metrics;
    RETURN NULL;
END $$;

CREATE FUNCTION run_docs_linked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_docs AS d (run_id, linked) SELECT DISTINCT run_id, true FROM new_rows
    ON CONFLICT (run_id) DO UPDATE SET linked = true WHERE NOT d.linked;
    RETURN NULL;
END $$;

CREATE TRIGGER params_to_run_docs AFTER INSERT ON params
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_params();
CREATE TRIGGER tags_inserted_to_run_docs AFTER INSERT ON tags
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_tags();
CREATE TRIGGER tags_updated_to_run_docs AFTER UPDATE ON tags
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_tags();
CREATE TRIGGER tags_deleted_from_run_docs AFTER DELETE ON tags
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_tags_deleted();
CREATE TRIGGER latest_metrics_inserted_to_run_docs AFTER INSERT ON latest_metrics
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_metrics();
CREATE TRIGGER latest_metrics_updated_to_run_docs AFTER UPDATE ON latest_metrics
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_metrics();
CREATE TRIGGER run_inputs_to_run_docs AFTER INSERT ON run_inputs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_linked();
CREATE TRIGGER run_outputs_to_run_docs AFTER INSERT ON run_outputs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_linked();
CREATE TRIGGER run_model_inputs_to_run_docs AFTER INSERT ON run_model_inputs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION run_docs_linked();

-- The documents of the runs logged so far.
SET LOCAL extra_float_digits = 3;
INSERT INTO run_docs (run_id, params, tags, metrics, linked)
SELECT r.run_id,
    COALESCE((SELECT jsonb_object_agg(x.key, x.value) FROM params x WHERE x.run_id = r.run_id), '{}'),
    COALESCE((SELECT jsonb_object_agg(x.key, x.value) FROM tags x WHERE x.run_id = r.run_id), '{}'),
    COALESCE((SELECT jsonb_object_agg(x.key, jsonb_build_array(x.value::text, x.is_nan, x.timestamp, x.step))
        FROM latest_metrics x WHERE x.run_id = r.run_id), '{}'),
    EXISTS (SELECT 1 FROM run_inputs x WHERE x.run_id = r.run_id)
        OR EXISTS (SELECT 1 FROM run_outputs x WHERE x.run_id = r.run_id)
        OR EXISTS (SELECT 1 FROM run_model_inputs x WHERE x.run_id = r.run_id)
FROM runs r;
