#!/usr/bin/env python3
"""Golden drift results from Evidently itself, for the monitoring service's parity test.

Generates deterministic reference/current columns that cover Evidently's boundaries (1,000
reference rows; 2, 5 and 20 distinct values; new categories; constant columns; NaN and
infinities; every method by name), runs Evidently 0.7.23's public API on each
(`Report([ValueDrift(column, method)], include_tests=True)`, as a user runs it) and writes
the columns with Evidently's method, threshold, score and drifted flag, or the error it
raised, to crates/monitoring/fixtures/evidently_drift.json.

    python3 -m venv /tmp/ev-venv && /tmp/ev-venv/bin/pip install -r scripts/monitoring/requirements.txt
    /tmp/ev-venv/bin/python scripts/monitoring/evidently_golden.py

Evidently's `TVD` and `empirical_mmd` are randomized (numpy's global generator): the
script seeds it before each run so the file is reproducible; the test compares those
p-values within a stated tolerance.
"""
from __future__ import annotations

import json
import math
import os
import sys
import warnings

import numpy as np
import pandas as pd

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "monitoring",
                   "fixtures", "evidently_drift.json")
NUM_METHODS = ["ks", "wasserstein", "jensenshannon", "psi", "kl_div", "anderson", "cramer_von_mises",
               "mannw", "t_test", "ed", "es", "hellinger", "empirical_mmd"]
CAT_METHODS = ["chisquare", "z", "jensenshannon", "psi", "kl_div", "hellinger", "TVD", "fisher_exact",
               "g_test"]


def enc(v):
    if isinstance(v, str) or v is None:
        return v
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def run(ref: pd.Series, cur: pd.Series, ty: str, method):
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    dd = DataDefinition(numerical_columns=["x"] if ty == "numerical" else [],
                        categorical_columns=["x"] if ty == "categorical" else [])
    rd = Dataset.from_pandas(pd.DataFrame({"x": ref}), data_definition=dd)
    cd = Dataset.from_pandas(pd.DataFrame({"x": cur}), data_definition=dd)
    np.random.seed(0)
    try:
        snap = Report([ValueDrift(column="x", method=method)], include_tests=True).run(
            current_data=cd, reference_data=rd)
        d = snap.dict()
    except Exception as e:  # noqa: BLE001 - Evidently's own failure is the golden result
        return {"error": f"{type(e).__name__}: {e}"}
    m = d["metrics"][0]
    cfg = m["config"]
    tests = d.get("tests", [])
    return {"method": cfg.get("method"), "threshold": cfg.get("threshold"),
            "score": enc(m["value"]), "drifted": bool(tests and tests[0]["status"] == "FAIL")}


def main():
    warnings.filterwarnings("ignore")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    rng = np.random.default_rng(20261204)
    r6 = lambda a: np.round(a, 6)  # noqa: E731 - short decimals keep the file small
    data = []  # (name, type, reference, current)

    def add(name, ty, ref, cur):
        data.append((name, ty, list(ref), list(cur)))

    # numerical: around the 1,000-row boundary, drifted and not
    for n in (999, 1000, 1001, 1500):
        add(f"normal_same_{n}", "numerical", r6(rng.normal(0, 1, n)), r6(rng.normal(0, 1, 800)))
        add(f"normal_shift_{n}", "numerical", r6(rng.normal(0, 1, n)), r6(rng.normal(0.15, 1, 800)))
    add("normal_small", "numerical", r6(rng.normal(5, 2, 60)), r6(rng.normal(5.8, 2, 45)))
    add("lognormal_3000", "numerical", r6(rng.lognormal(0, 0.7, 3000)), r6(rng.lognormal(0.05, 0.7, 2500)))
    add("uniform_5000", "numerical", r6(rng.uniform(0, 10, 5000)), r6(rng.uniform(0.3, 10.3, 4000)))
    # distinct-value boundaries: 2, 3, 5, 6, 20, 21 values (integers as floats)
    for k in (2, 3, 5, 6, 20, 21):
        for n in (500, 2000):
            ref = rng.integers(0, k, n).astype(float)
            cur = rng.integers(0, k, n * 3 // 4).astype(float)
            cur[: n // 10] = 0.0  # some drift towards 0
            add(f"int{k}_{n}", "numerical", ref, cur)
    add("int_new_values", "numerical", rng.integers(0, 4, 700).astype(float),
        rng.integers(2, 7, 600).astype(float))
    add("num_constant_same", "numerical", np.full(300, 2.5), np.full(200, 2.5))
    add("num_constant_diff", "numerical", np.full(300, 2.5), np.full(200, 3.5))
    add("num_constant_ref", "numerical", np.full(1200, 1.0), r6(rng.normal(1, 0.1, 900)))
    ref = r6(rng.normal(0, 1, 600)); ref[::17] = np.nan; ref[5] = np.inf; ref[7] = -np.inf
    cur = r6(rng.normal(0.2, 1, 500)); cur[::11] = np.nan; cur[3] = np.inf
    add("num_nan_inf", "numerical", ref, cur)
    add("num_equal_size_shift", "numerical", r6(rng.normal(0, 1, 400)), r6(rng.normal(0.3, 1.2, 400)))
    add("num_tiny", "numerical", r6(rng.normal(0, 1, 12)), r6(rng.normal(0.5, 1, 9)))
    add("num_cvm_exact", "numerical", r6(rng.normal(0, 1, 15)), r6(rng.normal(1, 1, 20)))

    # categorical
    def cats(k, n, p=None):
        return np.array([f"c{i}" for i in range(k)])[rng.choice(k, size=n, p=p)]

    for k in (2, 3, 5, 12):
        p = rng.dirichlet(np.ones(k))
        for n in (800, 1000, 1001, 3000):
            add(f"cat{k}_same_{n}", "categorical", cats(k, n, p), cats(k, n * 4 // 5, p))
        add(f"cat{k}_drift", "categorical", cats(k, 2000, p), cats(k, 1500, p[::-1].copy()))
    add("cat_new_category", "categorical", cats(3, 900), np.concatenate([cats(3, 700), ["c9"] * 40]))
    add("cat_missing_category", "categorical", cats(4, 1500), cats(3, 1200))
    add("cat_constant_same", "categorical", np.array(["a"] * 300), np.array(["a"] * 250))
    add("cat_constant_diff", "categorical", np.array(["a"] * 300), np.array(["b"] * 250))
    ref = cats(3, 500).astype(object); ref[::13] = None
    add("cat_nulls", "categorical", ref, cats(3, 400))
    add("cat_binary_equal", "categorical", cats(2, 600, [0.3, 0.7]), cats(2, 600, [0.38, 0.62]))
    add("cat_binary_equal_same", "categorical", cats(2, 300, [0.5, 0.5]), cats(2, 300, [0.5, 0.5]))
    add("cat_equal_size3", "categorical", cats(3, 700, [0.2, 0.3, 0.5]), cats(3, 700, [0.25, 0.3, 0.45]))

    cases = []
    from evidently import __version__ as ev_version
    for name, ty, ref, cur in data:
        methods = [None] + (NUM_METHODS if ty == "numerical" else CAT_METHODS)
        rs = pd.Series(ref, dtype=float if ty == "numerical" else object)
        cs = pd.Series(cur, dtype=float if ty == "numerical" else object)
        for m in methods:
            big = len(ref) + len(cur) > 2500
            if m == "empirical_mmd" and big:
                continue  # Evidently's MMD holds an (n+m)^2 matrix; ours caps the rows
            if m == "TVD" and big:
                continue  # Evidently's permutation test takes minutes on large windows
            res = run(rs, cs, ty, m)
            cases.append({"data": name, "asked": m, **res})
        print(f"{name}: {len(methods)} methods", file=sys.stderr)
    out = {"evidently_version": ev_version,
           "numpy_version": np.__version__,
           "data": {name: {"type": ty, "reference": [enc(v) for v in ref], "current": [enc(v) for v in cur]}
                    for name, ty, ref, cur in data},
           "cases": cases}
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases over {len(data)} columns to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
