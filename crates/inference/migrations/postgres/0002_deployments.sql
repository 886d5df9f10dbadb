-- Deployments are keyed by the registered model's id (events carry it; a rename in the
-- registry does not orphan a deployment). Rows written before this column existed get it
-- at their next load.
ALTER TABLE inference_models ADD COLUMN model_id TEXT NOT NULL DEFAULT '';
CREATE INDEX inference_models_by_model_id ON inference_models (model_id);
