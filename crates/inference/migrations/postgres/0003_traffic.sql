-- A deployment's traffic split (JSON: variants, shadow, route header; '' for none) and the
-- version that served 100% before the current one (where a rollback goes; 0 if none).
ALTER TABLE inference_models ADD COLUMN traffic TEXT NOT NULL DEFAULT '';
ALTER TABLE inference_models ADD COLUMN previous_version BIGINT NOT NULL DEFAULT 0;
