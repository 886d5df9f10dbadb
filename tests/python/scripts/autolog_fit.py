"""Fits a scikit-learn model with `mlflow.sklearn.autolog()` against the tracking server at
argv[1] and writes to argv[2], as JSON, what MLflow recorded: the run's params, metrics, tags and
artifacts, and its logged models with their artifacts. The compatibility test runs it
against MLflow's own server and against ours, and compares the two."""

from __future__ import annotations

import json
import sys

import mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def list_all(client: MlflowClient, run_id: str | None, path: str = "") -> list[str]:
    out = []
    for f in client.list_artifacts(run_id, path) if run_id else []:
        if f.is_dir:
            out += list_all(client, run_id, f.path)
        else:
            out.append(f.path)
    return sorted(out)


def main(uri: str, out: str) -> None:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("autolog-compat")
    mlflow.sklearn.autolog(log_input_examples=False, silent=True)
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    with mlflow.start_run(run_name="autolog") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=0))
        model.fit(X_tr, y_tr)
        model.score(X_te, y_te)
    client = MlflowClient()
    r = client.get_run(run.info.run_id)
    models = client.search_logged_models(experiment_ids=[r.info.experiment_id])
    logged = []
    for m in models:
        files = sorted(
            a.path for a in mlflow.artifacts.list_artifacts(artifact_uri=m.artifact_location)
        )
        logged.append({"name": m.name, "source_run_id": m.source_run_id == r.info.run_id,
                       "status": str(m.status), "files": files, "params": sorted(m.params)})
    summary = {
        "params": r.data.params,
        "metrics": r.data.metrics,
        "tags": sorted(r.data.tags),
        "artifacts": list_all(client, r.info.run_id),
        "logged_models": logged,
        "outputs": len(r.outputs.model_outputs) if r.outputs else 0,
    }
    with open(out, "w") as f:
        json.dump(summary, f, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
