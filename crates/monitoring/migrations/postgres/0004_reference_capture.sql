-- A reference taken from the prediction log: the capture in progress on its monitor
-- (capture_id empty: none), and its rows as they come, one chunk (an Arrow IPC stream)
-- per applied batch, at the capture's row offset `seq`.
ALTER TABLE monitoring_monitors ADD COLUMN capture_id TEXT NOT NULL DEFAULT '';
ALTER TABLE monitoring_monitors ADD COLUMN capture_wanted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE monitoring_monitors ADD COLUMN capture_rows BIGINT NOT NULL DEFAULT 0;
ALTER TABLE monitoring_monitors ADD COLUMN capture_started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE monitoring_monitors ADD COLUMN capture_error TEXT NOT NULL DEFAULT '';

CREATE TABLE monitoring_capture_chunks (
    capture_id TEXT NOT NULL,
    monitor TEXT NOT NULL,
    seq BIGINT NOT NULL,
    rows_count BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (capture_id, seq)
);
CREATE INDEX monitoring_capture_chunks_by_monitor ON monitoring_capture_chunks (monitor);
