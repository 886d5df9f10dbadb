-- The models this service serves, so a restart loads them again with their settings.
CREATE TABLE inference_models (
    name TEXT PRIMARY KEY,
    -- "default", "version:N" or "alias:NAME": which version to serve.
    selector TEXT NOT NULL,
    -- The serving settings (JSON): max_batch_size, dynamic batching, queue.
    settings TEXT NOT NULL,
    -- The version served when this row was written (0 before the first load succeeds).
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
