-- MLflow 3's logged models: a model's own record and artifact root, and the runs
-- that produced them.
CREATE TABLE logged_models (
    model_id TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments (experiment_id),
    name TEXT NOT NULL,
    model_type TEXT NOT NULL DEFAULT '',
    source_run_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_timestamp_ms BIGINT NOT NULL,
    last_updated_timestamp_ms BIGINT NOT NULL
);
CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, creation_timestamp_ms DESC, model_id);
CREATE INDEX logged_models_by_run ON logged_models (source_run_id);
CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE run_outputs (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    step BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, model_id)
);
-- Points logged with a model's id (MLflow 3 links metrics to logged models).
CREATE TABLE logged_model_metrics (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    dataset_name TEXT NOT NULL DEFAULT '',
    dataset_digest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, key, step, timestamp, run_id, dataset_name, dataset_digest)
);
