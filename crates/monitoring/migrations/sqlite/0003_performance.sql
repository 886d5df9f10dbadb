-- The model's performance: the predictions of monitors that measure it, kept for the
-- join with labels (which may come before them or days after), the labels, and each
-- window's realised and estimated metrics (JSON).
CREATE TABLE monitoring_predictions (
    monitor TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row_index BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    window_id TEXT NOT NULL,
    prediction TEXT NOT NULL,
    score DOUBLE PRECISION,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (monitor, request_id, row_index, model_version)
);
CREATE INDEX monitoring_predictions_by_window ON monitoring_predictions (window_id);
CREATE INDEX monitoring_predictions_by_time ON monitoring_predictions (created_at);

CREATE TABLE monitoring_labels (
    monitor TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row_index BIGINT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (monitor, request_id, row_index)
);
CREATE INDEX monitoring_labels_by_time ON monitoring_labels (created_at);

CREATE TABLE monitoring_performance (
    window_id TEXT PRIMARY KEY,
    monitor TEXT NOT NULL,
    model_version TEXT NOT NULL,
    rows_count BIGINT NOT NULL,
    labelled_rows BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    realised TEXT NOT NULL,
    estimated TEXT NOT NULL,
    degraded BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX monitoring_performance_by_monitor ON monitoring_performance (monitor, updated_at);

-- CBPE fitted on a reference (JSON), and the cooldown of PerformanceDegraded events.
ALTER TABLE monitoring_references ADD COLUMN cbpe TEXT;
ALTER TABLE monitoring_monitors ADD COLUMN last_performance_event_at BIGINT NOT NULL DEFAULT 0;
