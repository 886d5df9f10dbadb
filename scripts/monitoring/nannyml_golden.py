#!/usr/bin/env python3
"""Golden CBPE estimates from NannyML itself, for the Rust port in
crates/monitoring/src/performance/cbpe.rs.

Run in its own environment (NannyML's dependencies are not Evidently's):

    python3 -m venv /tmp/nml-venv && /tmp/nml-venv/bin/pip install -r scripts/monitoring/requirements-nannyml.txt
    /tmp/nml-venv/bin/python scripts/monitoring/nannyml_golden.py

For each case it fits `nannyml.CBPE` (binary, one chunk) on a reference and estimates
an analysis window under a covariate shift of the scores, and writes
crates/monitoring/fixtures/nannyml_cbpe.json: NannyML's calibration decision
(`needs_calibration`), its estimated accuracy, precision, recall, F1 and ROC AUC, the
realised ones, and the first calibrated probabilities of the window.

The data come from the SplitMix64 stream of sklearn_golden.py (a spec per table, expanded
by the Rust test with the same IEEE operations): per row u1, u2; the score is u1,
sqrt(u1) or u1 * u1 (optionally floored to multiples of 1/q), the label u2 < P(score)
with P the identity (calibrated scores) or the square (overconfident scores), the
prediction score >= 0.5.
"""

from __future__ import annotations

import json
import math
import os
import warnings

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # no usage analytics

import nannyml  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sklearn_golden import f, uniforms  # noqa: E402

assert nannyml.__version__ == "0.13.1", nannyml.__version__

warnings.simplefilter("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "monitoring", "fixtures", "nannyml_cbpe.json")
METRICS = ["roc_auc", "accuracy", "precision", "recall", "f1"]
CALIBRATED_KEPT = 200


def gen_table(spec) -> pd.DataFrame:
    u = uniforms(spec["seed"])
    q = spec.get("quantize")
    rows = []
    for _ in range(spec["n"]):
        u1, u2 = next(u), next(u)
        s = {"u": u1, "sqrt": math.sqrt(u1), "square": u1 * u1}[spec["shape"]]
        if q is not None:
            s = math.floor(s * q) / q
        p = s if spec["truth"] == "identity" else s * s
        rows.append((s, 1 if s >= 0.5 else 0, 1 if u2 < p else 0))
    return pd.DataFrame(rows, columns=["s", "p", "y"])


def case(name, reference, analysis):
    ref, ana = gen_table(reference), gen_table(analysis)
    est = nannyml.CBPE(y_pred_proba="s", y_pred="p", y_true="y",
                       problem_type="classification_binary", metrics=METRICS, chunk_number=1)
    est.fit(ref)
    row = est.estimate(ana).filter(period="analysis").to_df().iloc[0]
    calibrated = (est.calibrator.calibrate(ana["s"].to_numpy()) if est.needs_calibration
                  else ana["s"].to_numpy())
    return {
        "name": name,
        "reference": reference,
        "analysis": analysis,
        "needs_calibration": bool(est.needs_calibration),
        "estimated": {m: f(row[(m, "value")]) for m in METRICS},
        "realized": {m: f(row[(m, "realized")]) for m in METRICS},
        "calibrated": [f(v) for v in calibrated[:CALIBRATED_KEPT]],
    }


def main():
    cases = [
        case("overconfident (P = s²), scores shifted up",
             {"seed": 41, "n": 5000, "shape": "u", "truth": "square"},
             {"seed": 42, "n": 3000, "shape": "sqrt", "truth": "square"}),
        case("calibrated (P = s), scores shifted down",
             {"seed": 43, "n": 5000, "shape": "u", "truth": "identity"},
             {"seed": 44, "n": 3000, "shape": "square", "truth": "identity"}),
        case("ties (scores in twentieths), overconfident",
             {"seed": 45, "n": 4000, "shape": "u", "truth": "square", "quantize": 20},
             {"seed": 46, "n": 2000, "shape": "sqrt", "truth": "square", "quantize": 20}),
    ]
    with open(OUT, "w") as fh:
        json.dump({"nannyml": nannyml.__version__, "cases": cases}, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
