-- The logged models a run used as inputs (MLflow 3's `log_inputs(models=...)`).
CREATE TABLE run_model_inputs (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    model_id TEXT NOT NULL REFERENCES logged_models (model_id),
    PRIMARY KEY (run_id, model_id)
);
