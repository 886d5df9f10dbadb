-- Monitors: what is tested and how (columns and options as JSON).
CREATE TABLE monitoring_monitors (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    spec TEXT NOT NULL,
    cooldown_seconds BIGINT NOT NULL,
    reference_version BIGINT NOT NULL,
    last_event_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Reference versions: the table's key on the reference store and its column profile.
CREATE TABLE monitoring_references (
    monitor TEXT NOT NULL,
    version BIGINT NOT NULL,
    blob_key TEXT NOT NULL,
    rows_count BIGINT NOT NULL,
    profile TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (monitor, version)
);

-- Reports: one per window tested, the columns as JSON.
CREATE TABLE monitoring_reports (
    id TEXT PRIMARY KEY,
    monitor TEXT NOT NULL,
    reference_version BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    rows_count BIGINT NOT NULL,
    dataset_drift BIGINT NOT NULL,
    share DOUBLE PRECISION NOT NULL,
    report TEXT NOT NULL,
    event_published BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX monitoring_reports_by_time ON monitoring_reports (monitor, created_at);
