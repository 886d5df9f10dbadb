-- Windows cut from the prediction log: at most one open window per monitor and model
-- version; a closed one waits here until its report is stored. The state is the
-- window's rows and one sketch per reference column (bounded whatever the rows).
CREATE TABLE monitoring_windows (
    id TEXT PRIMARY KEY,
    monitor TEXT NOT NULL,
    model_version TEXT NOT NULL,
    reference_version BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rows_count BIGINT NOT NULL,
    closed BIGINT NOT NULL,
    state BLOB NOT NULL,
    revision BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX monitoring_windows_open ON monitoring_windows (monitor, model_version) WHERE closed = 0;
CREATE INDEX monitoring_windows_by_state ON monitoring_windows (closed, expires_at);

-- The prediction log's offsets, stored with the windows in the same transaction: the
-- next offset to apply per partition (a redelivered event below it is skipped).
CREATE TABLE monitoring_log_offsets (
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    part BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, part)
);

-- Where a report's window came from: 'push' or 'prediction_log', and its time span.
ALTER TABLE monitoring_reports ADD COLUMN source TEXT NOT NULL DEFAULT 'push';
ALTER TABLE monitoring_reports ADD COLUMN window_start BIGINT NOT NULL DEFAULT 0;
ALTER TABLE monitoring_reports ADD COLUMN window_end BIGINT NOT NULL DEFAULT 0;
