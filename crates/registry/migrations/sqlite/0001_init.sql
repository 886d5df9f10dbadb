-- The model registry: models, versions (with lineage and signature as encoded
-- protobuf), tags, aliases, evaluations and gate results.
CREATE TABLE registered_models (
    model_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    creation_timestamp INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    -- the next version number; only ever grows, so numbers are never reused
    next_version INTEGER NOT NULL DEFAULT 1,
    gate_required INTEGER NOT NULL DEFAULT 0,
    -- JSON array of the aliases the gate covers; empty array: all
    gate_aliases TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX registered_models_updated ON registered_models (last_updated_timestamp);

CREATE TABLE registered_model_tags (
    model_id TEXT NOT NULL REFERENCES registered_models (model_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE model_versions (
    model_id TEXT NOT NULL REFERENCES registered_models (model_id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    creation_timestamp INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT 'None',
    source TEXT NOT NULL,
    storage_location TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    lineage BLOB NOT NULL,
    signature BLOB,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    -- JSON array of [path, size]
    files TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (model_id, version)
);
CREATE INDEX model_versions_run ON model_versions (run_id);
CREATE INDEX model_versions_status ON model_versions (status, creation_timestamp);

CREATE TABLE model_version_tags (
    model_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, version, key),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version) ON DELETE CASCADE
);
CREATE INDEX model_version_tags_kv ON model_version_tags (key, value);

CREATE TABLE model_aliases (
    model_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (model_id, alias),
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version) ON DELETE CASCADE
);
CREATE INDEX model_aliases_version ON model_aliases (model_id, version);

CREATE TABLE model_evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    dataset TEXT NOT NULL,
    dataset_digest TEXT NOT NULL DEFAULT '',
    -- JSON object metric -> value
    metrics TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version) ON DELETE CASCADE
);
CREATE INDEX model_evaluations_version ON model_evaluations (model_id, version, id);

CREATE TABLE gate_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    candidate_version INTEGER NOT NULL,
    baseline_version INTEGER NOT NULL DEFAULT 0,
    passed INTEGER NOT NULL,
    -- the encoded GateResult
    result BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    FOREIGN KEY (model_id, candidate_version) REFERENCES model_versions (model_id, version) ON DELETE CASCADE
);
CREATE INDEX gate_results_candidate ON gate_results (model_id, candidate_version, id);
