#!/usr/bin/env python3
"""Golden model-performance metrics from scikit-learn, for the Rust port in
crates/monitoring/src/performance/metrics (and its isotonic calibrator in
performance/cbpe/isotonic.rs).

Run with the reference environment (evidently 0.7.23 resolves scikit-learn 1.9.1):

    python3 -m venv /tmp/ev-venv && /tmp/ev-venv/bin/pip install -r scripts/monitoring/requirements.txt
    /tmp/ev-venv/bin/python scripts/monitoring/sklearn_golden.py

It writes crates/monitoring/fixtures/sklearn_metrics.json: classification cases (binary
with integer and string labels, ties in the scores, scores of exactly 0 and 1, a single
class, all wrong, nothing predicted positive, multiclass with a class never predicted or
never true), regression cases (zeros in y_true for MAPE, constant y_true for R², one
row, perfect predictions) and isotonic-regression cases, each with what sklearn returns
(null where it returns NaN or raises, with the message).

Floats are written as strings holding their Python repr (Rust's `str::parse` is correctly
rounded). Long inputs are stored as a generator spec {"gen": {...}} that the Rust test
expands with the same SplitMix64 stream and IEEE operations (see `gen_*` below and
`performance/tests/golden.rs`), which keeps the fixture small.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import sklearn
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (accuracy_score, f1_score, log_loss, mean_absolute_error,
                             mean_absolute_percentage_error, precision_score, r2_score,
                             recall_score, roc_auc_score, root_mean_squared_error)

assert sklearn.__version__ == "1.9.1", sklearn.__version__
assert np.__version__ == "2.4.6", np.__version__

warnings.simplefilter("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "monitoring", "fixtures", "sklearn_metrics.json")
MASK = (1 << 64) - 1


# --- the generator shared with the Rust test ------------------------------------------


def uniforms(seed: int):
    """SplitMix64 (as `stats::rng::Rng`), as uniforms (z >> 11) * 2**-53 (exact)."""
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        yield (z >> 11) * 2.0**-53


def gen_binary(spec):
    """Per row u1, u2, u3: score = u1 (or floor(u1 * q) / q), y_true = u2 < score,
    y_pred = u3 < score (a noisy classifier)."""
    u = uniforms(spec["seed"])
    q = spec.get("quantize")
    scores, y_true, y_pred = [], [], []
    for _ in range(spec["n"]):
        u1, u2, u3 = next(u), next(u), next(u)
        s = u1 if q is None else math.floor(u1 * q) / q
        scores.append(s)
        y_true.append(1 if u2 < s else 0)
        y_pred.append(1 if u3 < s else 0)
    return y_true, y_pred, scores


def gen_multiclass(spec):
    """Per row: k weights u + 0.05 normalised (sequential sums); y_true drawn from them;
    y_pred their argmax, or a uniform class with probability 1/4."""
    u = uniforms(spec["seed"])
    k = spec["k"]
    y_true, y_pred, probs = [], [], []
    for _ in range(spec["n"]):
        w = [next(u) + 0.05 for _ in range(k)]
        s = 0.0
        for v in w:
            s += v
        p = [v / s for v in w]
        draw, cum, t = next(u), 0.0, k - 1
        for j in range(k):
            cum += p[j]
            if draw < cum:
                t = j
                break
        if next(u) < 0.25:
            y = int(next(u) * k)
        else:
            y = max(range(k), key=lambda j: (p[j], -j))
        y_true.append(t)
        y_pred.append(y)
        probs.append(p)
    return y_true, y_pred, probs


def gen_regression(spec):
    """Per row u1..u5: y_true = loc + scale * (((u1 + u2) + (u3 + u4)) - 2), or 0 every
    `zeros_every` rows; y_pred = y_true + noise * (u5 - 0.5)."""
    u = uniforms(spec["seed"])
    y_true, y_pred = [], []
    for i in range(spec["n"]):
        u1, u2, u3, u4, u5 = (next(u) for _ in range(5))
        t = spec["loc"] + spec["scale"] * (((u1 + u2) + (u3 + u4)) - 2.0)
        if spec.get("zeros_every") and i % spec["zeros_every"] == 0:
            t = 0.0
        y_true.append(t)
        y_pred.append(t + spec["noise"] * (u5 - 0.5))
    return y_true, y_pred


# --- sklearn's answers ----------------------------------------------------------------


def f(v):
    """A float as its repr; NaN as null."""
    v = float(v)
    return None if math.isnan(v) else repr(v)


def attempt(fn):
    try:
        return f(fn()), None
    except ValueError as e:
        return None, str(e)


def classification_case(name, y_true, y_pred, scores=None, positive=None, given=False,
                        classes=None, gen=None):
    """Binary when `positive` is set (scores: the positive class's probabilities),
    multiclass (macro) otherwise (scores: rows of per-class probabilities in `classes`
    order, sorted)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    out = {"name": name, "kind": "classification"}
    if gen is not None:
        out["gen"] = gen
    else:
        out["y_true"], out["y_pred"] = list(y_true), list(y_pred)
        if scores is not None:
            out["scores"] = ([f(s) for s in scores] if positive is not None
                             else [[f(s) for s in row] for row in scores])
    out["accuracy"] = f(accuracy_score(yt, yp))
    if positive is not None:
        out["positive"], out["positive_given"] = positive, given
        kw = dict(pos_label=positive, average="binary")
    else:
        out["classes"] = classes
        kw = dict(average="macro")
    out["precision"] = f(precision_score(yt, yp, **kw))
    out["recall"] = f(recall_score(yt, yp, **kw))
    out["f1"] = f(f1_score(yt, yp, **kw))
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if positive is not None:
            binary = (yt == positive).astype(int)
            out["roc_auc"], out["roc_auc_error"] = attempt(lambda: roc_auc_score(binary, s))
            out["log_loss"], out["log_loss_error"] = attempt(
                lambda: log_loss(binary, s, labels=[0, 1]))
        else:
            out["roc_auc"], out["roc_auc_error"] = attempt(
                lambda: roc_auc_score(yt, s, multi_class="ovr", average="macro"))
            out["log_loss"], out["log_loss_error"] = attempt(
                lambda: log_loss(yt, s, labels=classes))
    return out


def regression_case(name, y_true, y_pred, gen=None):
    out = {"name": name, "kind": "regression"}
    if gen is not None:
        out["gen"] = gen
    else:
        out["y_true"], out["y_pred"] = [f(v) for v in y_true], [f(v) for v in y_pred]
    yt, yp = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    out["mae"] = f(mean_absolute_error(yt, yp))
    out["rmse"] = f(root_mean_squared_error(yt, yp))
    out["mape"] = f(mean_absolute_percentage_error(yt, yp))
    out["r2"] = f(r2_score(yt, yp))
    return out


def isotonic_case(name, x, y, grid, gen=None):
    iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(x, y)
    out = {"name": name, "kind": "isotonic"}
    if gen is not None:
        out["gen"] = gen
    else:
        out["x"], out["y"] = [f(v) for v in x], [f(v) for v in y]
    out["grid"] = [f(v) for v in grid]
    out["x_thresholds"] = [f(v) for v in iso.X_thresholds_]
    out["y_thresholds"] = [f(v) for v in iso.y_thresholds_]
    out["predictions"] = [f(v) for v in iso.predict(np.asarray(grid, dtype=np.float64))]
    return out


def main():
    cases = []
    # binary, generated
    for name, spec in [
        ("binary 1000", {"kind": "binary", "seed": 1, "n": 1000}),
        ("binary 5000", {"kind": "binary", "seed": 2, "n": 5000}),
        ("binary ties (scores in tenths)", {"kind": "binary", "seed": 3, "n": 800, "quantize": 10}),
        ("binary heavy ties (scores in halves)", {"kind": "binary", "seed": 4, "n": 300, "quantize": 2}),
        ("binary 7 rows", {"kind": "binary", "seed": 5, "n": 7}),
        ("binary 130 rows", {"kind": "binary", "seed": 6, "n": 130}),
    ]:
        yt, yp, s = gen_binary(spec)
        cases.append(classification_case(name, yt, yp, s, positive=1, gen=spec))
    # binary, inline
    cases.append(classification_case(
        "binary strings, default positive the larger", ["no", "yes", "yes", "no", "yes", "no"],
        ["no", "yes", "no", "no", "yes", "yes"], [0.2, 0.9, 0.4, 0.1, 0.7, 0.6], positive="yes"))
    cases.append(classification_case(
        "binary strings, positive given", ["b", "a", "a", "b", "a", "b", "a"],
        ["b", "a", "b", "b", "a", "a", "a"], [0.3, 0.8, 0.45, 0.2, 0.9, 0.55, 0.6],
        positive="a", given=True))
    cases.append(classification_case(
        "binary scores of exactly 0 and 1", [1, 0, 1, 0, 1, 0], [1, 0, 0, 1, 1, 0],
        [1.0, 0.0, 0.0, 1.0, 0.999, 1e-300], positive=1))
    cases.append(classification_case(
        "single class in y_true", [1, 1, 1, 1], [1, 0, 1, 1], [0.9, 0.4, 0.7, 0.8], positive=1))
    cases.append(classification_case(
        "single label everywhere (0)", [0, 0, 0], [0, 0, 0], [0.1, 0.2, 0.3], positive=1))
    cases.append(classification_case(
        "all wrong", [0, 1, 0, 1, 1], [1, 0, 1, 0, 0], [0.9, 0.1, 0.8, 0.3, 0.2], positive=1))
    cases.append(classification_case(
        "nothing predicted positive", [0, 1, 0, 1], [0, 0, 0, 0], [0.1, 0.4, 0.2, 0.45],
        positive=1))
    cases.append(classification_case(
        "no scores", [0, 1, 1, 0, 1], [0, 1, 0, 0, 1], positive=1))
    # multiclass, generated
    for name, spec in [
        ("multiclass 3 classes", {"kind": "multiclass", "seed": 11, "n": 1500, "k": 3}),
        ("multiclass 9 classes", {"kind": "multiclass", "seed": 12, "n": 2000, "k": 9}),
    ]:
        yt, yp, p = gen_multiclass(spec)
        cases.append(classification_case(name, yt, yp, p, classes=list(range(spec["k"])), gen=spec))
    # multiclass, inline
    cases.append(classification_case(
        "multiclass strings, a class never predicted", ["cat", "dog", "pig", "cat", "dog", "pig"],
        ["cat", "cat", "dog", "cat", "cat", "dog"],
        [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.4, 0.4, 0.2],
         [0.3, 0.4, 0.3]], classes=["cat", "dog", "pig"]))
    cases.append(classification_case(
        "multiclass, a predicted class never true", [0, 1, 2, 0, 1, 2], [0, 1, 3, 0, 3, 2],
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2], [0.1, 0.5, 0.4],
         [0.1, 0.1, 0.8]], classes=[0, 1, 2]))
    cases.append(classification_case(
        "multiclass, a column class absent from y_true", [0, 1, 0, 1, 2], [0, 1, 1, 1, 2],
        [[0.8, 0.1, 0.1, 0.0], [0.2, 0.7, 0.1, 0.0], [0.3, 0.4, 0.2, 0.1], [0.1, 0.8, 0.05, 0.05],
         [0.1, 0.1, 0.7, 0.1]], classes=[0, 1, 2, 3]))
    # regression
    for name, spec in [
        ("regression 1000", {"kind": "regression", "seed": 21, "n": 1000, "loc": 10.0, "scale": 3.0, "noise": 2.0}),
        ("regression 20000", {"kind": "regression", "seed": 22, "n": 20000, "loc": -4.0, "scale": 100.0, "noise": 50.0}),
        ("regression zeros in y_true", {"kind": "regression", "seed": 23, "n": 500, "loc": 1.0, "scale": 1.0, "noise": 0.5, "zeros_every": 50}),
    ]:
        yt, yp = gen_regression(spec)
        cases.append(regression_case(name, yt, yp, gen=spec))
    cases.append(regression_case("constant y_true (exact integer)", [3.0] * 6,
                                 [2.5, 3.5, 3.0, 3.1, 2.9, 3.0]))
    cases.append(regression_case("constant y_true, perfect", [3.0] * 4, [3.0] * 4))
    cases.append(regression_case("constant y_true (exact mean)", [0.1] * 10,
                                 [0.1, 0.2, 0.0, 0.1, 0.15, 0.1, 0.05, 0.1, 0.1, 0.3]))
    # numpy's mean of 13 × 0.1 is not 0.1: sklearn divides by a spread of rounding errors
    cases.append(regression_case("constant y_true (inexact mean)", [0.1] * 13, [0.11] * 13))
    cases.append(regression_case("one row", [2.0], [1.5]))
    cases.append(regression_case("perfect", [1.0, -2.0, 3.5], [1.0, -2.0, 3.5]))
    cases.append(regression_case("zero y_true, zero error", [0.0, 1.0], [0.0, 1.5]))
    # isotonic (NannyML's calibrator)
    for name, spec in [
        ("isotonic 2000", {"kind": "binary", "seed": 31, "n": 2000}),
        ("isotonic ties", {"kind": "binary", "seed": 32, "n": 700, "quantize": 40}),
    ]:
        yt, _, s = gen_binary(spec)  # labels drawn from the scores: calibrated
        grid = [-0.5, 0.0] + s[:50] + [i / 37 for i in range(38)] + [1.0, 1.5]
        cases.append(isotonic_case(name, s, [float(v) for v in yt], grid, gen=spec))
    x = [0.3, 0.3 + 1e-16, 0.3 + 5e-16, 0.3 + 2e-15, 0.1, 0.9, 0.5, 0.5, 0.7]
    y = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    cases.append(isotonic_case("isotonic near-duplicate scores", x, y,
                               sorted(x) + [0.0, 0.2, 0.31, 0.6, 0.8, 1.0]))
    cases.append(isotonic_case("isotonic one point", [0.4, 0.4], [0.0, 1.0], [0.0, 0.4, 1.0]))

    with open(OUT, "w") as fh:
        json.dump({"sklearn": sklearn.__version__, "numpy": np.__version__, "cases": cases},
                  fh, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
