-- Definitions as applied: one row per object, its spec as JSON.
CREATE TABLE feature_store_definitions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Every change an apply made, by definition version.
CREATE TABLE feature_store_history (
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    change TEXT NOT NULL,
    spec TEXT,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (version, kind, name)
);

-- The definition version: one row, bumped by each apply that changes something (the
-- row lock serialises concurrent applies on PostgreSQL).
CREATE TABLE feature_store_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO feature_store_version (id, version) VALUES (1, 0);
