-- The online store: the newest value of every key of each online feature view.
CREATE TABLE feature_store_online (
    view_name TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    event_ts BIGINT NOT NULL,
    created_ts BIGINT,
    payload TEXT NOT NULL,
    PRIMARY KEY (view_name, entity_key)
);

-- Every successful materialization run, per view: where an incremental run starts.
CREATE TABLE feature_store_materializations (
    view_name TEXT NOT NULL,
    start_ts BIGINT NOT NULL,
    end_ts BIGINT NOT NULL,
    source_rows BIGINT NOT NULL,
    keys_written BIGINT NOT NULL,
    incremental BOOLEAN NOT NULL,
    finished_at BIGINT NOT NULL
);
CREATE INDEX feature_store_materializations_view ON feature_store_materializations (view_name, end_ts);
