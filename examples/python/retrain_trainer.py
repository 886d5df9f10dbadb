#!/usr/bin/env python3
"""A trainer for the retraining service, in Python: scikit-learn's linear regression on the
training set the service hands over, converted to ONNX with skl2onnx and uploaded, with its
params and metrics, to the tracking run the service names, through MLflow's client.

The retraining service runs it as a local process (the policy's `--trainer` command):

    mlops retrain policy set houses \\
        --trainer "$PWD/.venv/bin/python" --trainer "$PWD/examples/python/retrain_trainer.py" \\
        --feature house:a --feature house:b --label y \\
        --train-entities entities/train.parquet --eval-entities entities/eval.parquet \\
        --gate 'rmse<=0.5,worse=0.0'

The contract is the environment (see examples/python/README.md):

- MLFLOW_TRACKING_URI (the platform's MLflow gateway, required) and MLFLOW_RUN_ID, else
  MLOPS_RUN_ID: the RUNNING run to log to;
- MLOPS_TRAINING_DATA: the training set, a local Parquet file (read with pyarrow, or pandas
  when pyarrow is missing);
- MLOPS_FEATURES: the model's input columns, comma separated, in order; MLOPS_LABEL: the label;
- MLOPS_PARAM_ALPHA: Ridge's penalty (default 0: ordinary least squares, LinearRegression);
- MLOPS_PARAM_SLEEP: seconds to wait before fitting (default 0), standing in for a long
  training in tests and demos.

It reads the feature columns and the label (every other column is ignored) and drops a row when
one of them is null, NaN or infinite; fits the model; logs the params `model`, `alpha`,
`features` and `rows` and the metrics `train_rmse`, `train_mae` and `train_r2`; writes the ONNX
model `y: float[N,1] = f(x: float[N,F])` (checked against scikit-learn's own predictions) and
uploads it as the run's artifact `model/model.onnx`. It prints one summary line and exits 0.
It never ends the run: the retraining service marks it FINISHED after exit 0, or FAILED when
the trainer failed for good (a retry logs to the same run).

On an error (a variable missing, a column missing or not numeric, too few rows, the tracking
server refusing a call) it prints it on stderr and exits 1, before writing anything to the run
when the data is at fault.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

# Where the service looks for the model, relative to the run's artifact root.
MODEL_DIR = "model"
MODEL_FILE = "model.onnx"
# The ONNX model's input and output names (the inference service's requests use them).
INPUT_NAME = "x"
OUTPUT_NAME = "y"
# How far the ONNX model's float32 answers may be from scikit-learn's float64 ones.
CHECK_TOLERANCE = 1e-3


class TrainerError(Exception):
    """What went wrong, worded for the policy's author; the trainer exits 1 with it."""


# --------------------------------------------------------------------------- the contract


class Config:
    """Everything the trainer takes from its environment."""

    def __init__(self, env: Mapping[str, str]):
        def required(name: str, hint: str = "") -> str:
            value = env.get(name, "").strip()
            if not value:
                raise TrainerError(f"the environment variable {name} is not set{hint}")
            return value

        def number(key: str, default: str, minimum: float = 0.0) -> Tuple[float, str]:
            # The text is kept, so a param is logged exactly as the policy wrote it.
            name = f"MLOPS_PARAM_{key}"
            text = env.get(name, "").strip() or default
            try:
                value = float(text)
            except ValueError:
                raise TrainerError(f"{name} is `{text}`; expected a number") from None
            if not math.isfinite(value) or value < minimum:
                raise TrainerError(f"{name} is `{text}`; expected a number of {minimum:g} or more")
            return value, text

        self.tracking_uri = required(
            "MLFLOW_TRACKING_URI",
            ": this trainer logs through the platform's MLflow gateway, whose address the "
            "retraining service hands over only when the gateway runs (`mlops up` runs it; a "
            "standalone mlops-retraining needs --mlflow-url)",
        )
        self.run_id = env.get("MLFLOW_RUN_ID", "").strip() or required("MLOPS_RUN_ID")
        self.data = Path(required("MLOPS_TRAINING_DATA"))
        self.features = [f.strip() for f in required("MLOPS_FEATURES").split(",") if f.strip()]
        if not self.features:
            raise TrainerError("MLOPS_FEATURES names no column; expected comma-separated column names")
        self.label = required("MLOPS_LABEL")
        self.alpha = number("ALPHA", "0")
        self.sleep = number("SLEEP", "0")


# --------------------------------------------------------------------------- data


def _read_columns(path: Path, columns: List[str]) -> Dict[str, np.ndarray]:
    """The columns of a Parquet file as float64 arrays (null: NaN); pyarrow, else pandas."""
    if not path.is_file():
        raise TrainerError(f"the training set {path} does not exist")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pa = None
    if pa is not None:
        try:
            schema = pq.read_schema(path)
        except Exception as e:  # pyarrow raises several kinds for a bad file
            raise TrainerError(f"{path} is not a Parquet file: {e}") from None
        for name in columns:
            if name not in schema.names:
                raise TrainerError(f"column `{name}` is not in {path}; it has {', '.join(schema.names)}")
            t = schema.field(name).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise TrainerError(f"column `{name}` is {t}; expected an integer or floating point column")
        table = pq.read_table(path, columns=columns)
        return {
            name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in columns
        }
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as e:
        raise TrainerError(f"{path} cannot be read as Parquet with pandas: {e}") from None
    out = {}
    for name in columns:
        if name not in frame.columns:
            raise TrainerError(f"column `{name}` is not in {path}; it has {', '.join(map(str, frame.columns))}")
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            raise TrainerError(f"column `{name}` is {col.dtype}; expected an integer or floating point column")
        out[name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def read_training_set(path: Path, features: List[str], label: str) -> Tuple[np.ndarray, np.ndarray, int]:
    """(X [rows, features], y [rows], rows dropped for a missing or non-finite value)."""
    cols = _read_columns(path, [*features, label])
    x = np.column_stack([cols[f] for f in features]) if len(cols[label]) else np.empty((0, len(features)))
    y = cols[label]
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    dropped = int((~keep).sum())
    x, y = x[keep], y[keep]
    if len(y) < len(features) + 1:
        raise TrainerError(
            f"{len(y)} usable rows in {path} ({dropped} dropped for a missing value); "
            f"a linear model of {len(features)} features needs at least {len(features) + 1}"
        )
    return x, y, dropped


# --------------------------------------------------------------------------- model


def fit(x: np.ndarray, y: np.ndarray, alpha: float):
    from sklearn.linear_model import LinearRegression, Ridge

    model = Ridge(alpha=alpha) if alpha > 0 else LinearRegression()
    return model.fit(x, y)


def train_metrics(model, x: np.ndarray, y: np.ndarray) -> Dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    p = model.predict(x)
    return {
        "train_rmse": float(math.sqrt(mean_squared_error(y, p))),
        "train_mae": float(mean_absolute_error(y, p)),
        "train_r2": float(r2_score(y, p)),
    }


def to_onnx(model, x: np.ndarray) -> bytes:
    """The model as ONNX, `y: float[N,1]` from `x: float[N,F]`, checked against scikit-learn."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    n_features = x.shape[1]
    onx = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        final_types=[(OUTPUT_NAME, FloatTensorType([None, 1]))],
    )
    onx.graph.name = f"retrain_{type(model).__name__}"  # skl2onnx puts a random uuid here
    onnx.checker.check_model(onx)
    out = onx.graph.output[0]
    dims = [d.dim_value or d.dim_param or None for d in out.type.tensor_type.shape.dim]
    if out.name != OUTPUT_NAME or out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or dims[1:] != [1]:
        raise TrainerError(f"skl2onnx wrote the output {out.name} {dims}; expected float {OUTPUT_NAME}[N,1]")
    # The service evaluates the model's first output, one number per row: check it is the model.
    sample = x[:64].astype(np.float32)
    (got,) = ReferenceEvaluator(onx).run(None, {INPUT_NAME: sample})
    want = model.predict(sample.astype(np.float64))
    if got.shape != (len(sample), 1) or not np.allclose(got[:, 0], want, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE):
        raise TrainerError(f"the ONNX model ({got.shape}) disagrees with scikit-learn's predictions")
    return onx.SerializeToString()


# --------------------------------------------------------------------------- main


def train(cfg: Config, log: Callable[[str], None], client=None) -> dict:
    """Reads, fits, converts, logs and uploads; returns the summary. `client`: an
    MlflowClient (made from MLFLOW_TRACKING_URI when None)."""
    x, y, dropped = read_training_set(cfg.data, cfg.features, cfg.label)
    if cfg.sleep[0] > 0:
        log(f"sleeping {cfg.sleep[1]} s (MLOPS_PARAM_SLEEP)")
        time.sleep(cfg.sleep[0])
    model = fit(x, y, cfg.alpha[0])
    metrics = train_metrics(model, x, y)
    onnx_bytes = to_onnx(model, x)

    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=cfg.tracking_uri)
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    params = {
        "model": type(model).__name__,
        "alpha": cfg.alpha[1],
        "features": ",".join(cfg.features),
        "rows": str(len(y)),
    }
    # Deterministic values: a retry after a failed or killed attempt logs the same ones
    # again, which a param allows (a different value would be refused).
    client.log_batch(
        cfg.run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    with tempfile.TemporaryDirectory(prefix="retrain-trainer-") as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(onnx_bytes)
        client.log_artifact(cfg.run_id, str(path), artifact_path=MODEL_DIR)
    return {
        "run_id": cfg.run_id,
        "rows": len(y),
        "dropped": dropped,
        "params": params,
        "metrics": metrics,
        "model_bytes": len(onnx_bytes),
    }


def main(env: Optional[Mapping[str, str]] = None) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        cfg = Config(os.environ if env is None else env)
        s = train(cfg, log)
    except TrainerError as e:
        print(f"retrain_trainer: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the tracking server refused a call, skl2onnx failed, ...
        print(f"retrain_trainer: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    m = s["metrics"]
    print(
        f"trained {s['params']['model']} on {s['rows']} rows ({s['dropped']} dropped for missing values): "
        f"train_rmse={m['train_rmse']:.6f} train_r2={m['train_r2']:.6f}; "
        f"uploaded {MODEL_DIR}/{MODEL_FILE} ({s['model_bytes']} bytes) to run {s['run_id']}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
