#!/usr/bin/env python3
"""Generates the scikit-learn ONNX models in tests/fixtures/sklearn/ and onnxruntime's outputs
for them, which the Rust ONNX runtime (crates/model) must reproduce.

Pinned (scripts/sklearn-fixtures-requirements.txt, the versions of the peers benchmark
/work/shared/bench/peers/requirements.txt): scikit-learn 1.9.1, skl2onnx 1.20.0, onnx 1.23.2,
onnxruntime 1.32.0, numpy 2.4.6, scipy 1.17.1. The script refuses to run with another version
of onnx, skl2onnx, scikit-learn or onnxruntime, because another version may train, convert or
compute differently. Run it from any directory in a throwaway virtualenv:

    python3 -m venv /tmp/skl-venv
    /tmp/skl-venv/bin/pip install -r scripts/sklearn-fixtures-requirements.txt
    /tmp/skl-venv/bin/python scripts/make-sklearn-fixtures.py

The output is deterministic: the same versions write byte-identical files (skl2onnx puts a
random uuid in graph.name; the script replaces it with `sklearn_<name>`, and the process
re-executes itself with PYTHONHASHSEED=0), so a regenerated fixture shows up in `git diff`
only when this script or a pin changed.

For every model it writes tests/fixtures/sklearn/<name>.onnx and <name>.json; the JSON holds
the inputs (the first 20 test rows unless the model says otherwise) and the outputs
onnxruntime 1.32.0 returned for them (CPUExecutionProvider, one thread, sequential, all graph
optimizations: the session options of the peers benchmark; one thread also fixes the order in
which a tree ensemble sums its trees). It also writes index.json (the model names). See
tests/fixtures/sklearn/README.md for every model's signature and the JSON format.

logreg, rf, gbdt and mlp are the models of the peers benchmark
(/work/shared/bench/peers/onnx_serving.py): same data, split, training and conversion, so the
.onnx files are byte-identical to the ones that script writes to $PEERS_ROOT/models/.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import warnings

PINNED = {
    "onnx": "1.23.2",
    "skl2onnx": "1.20.0",
    "sklearn": "1.9.1",
    "onnxruntime": "1.32.0",
}
# Not enforced (they do not change the files by themselves), but these are the tested versions.
ALSO_PINNED = {"numpy": "2.4.6", "scipy": "1.17.1"}

SEED = 42
N_ROWS = 20
TOLERANCE_ABS = 1e-5
OUT_DIR = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sklearn"
REQUIREMENTS = pathlib.Path(__file__).resolve().parent / "sklearn-fixtures-requirements.txt"


def check_versions() -> None:
    import importlib

    wrong = []
    for module, want in PINNED.items():
        have = importlib.import_module(module).__version__
        if have != want:
            wrong.append(f"{module} {have} is installed, the script is pinned to {want}")
    if wrong:
        sys.exit("make-sklearn-fixtures: wrong versions:\n  " + "\n  ".join(wrong) +
                 f"\ninstall the pins in a throwaway venv: pip install -r {REQUIREMENTS}")
    import numpy
    import scipy

    for module, have in (("numpy", numpy.__version__), ("scipy", scipy.__version__)):
        if have != ALSO_PINNED[module]:
            print(f"make-sklearn-fixtures: warning: {module} {have}, tested with {ALSO_PINNED[module]}",
                  file=sys.stderr)


# --- the peers benchmark's hand-built MLP (copied from onnx_serving.py, unchanged) -------------

def build_mlp_onnx(mlp, scaler, path, opset=17, ir_version=8):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = [w.astype(np.float32) for w in mlp.coefs_]
    B = [b.astype(np.float32) for b in mlp.intercepts_]
    assert [w.shape for w in W] == [(30, 64), (64, 64), (64, 1)] or [w.shape for w in W] == [(30, 64), (64, 64), (64, 2)]
    # sklearn's binary MLP has a single logistic output unit; turn it into 2 softmax logits
    # [0, z] so that softmax([0, z])[1] == sigmoid(z) exactly (same probabilities as sklearn).
    if W[2].shape[1] == 1:
        W[2] = np.concatenate([np.zeros_like(W[2]), W[2]], axis=1)
        B[2] = np.concatenate([np.zeros_like(B[2]), B[2]])
    inits = [
        numpy_helper.from_array(scaler.mean_.astype(np.float32), "mean"),
        numpy_helper.from_array(scaler.scale_.astype(np.float32), "scale"),
    ]
    for i in range(3):
        inits.append(numpy_helper.from_array(W[i], f"W{i + 1}"))
        inits.append(numpy_helper.from_array(B[i], f"B{i + 1}"))
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["xc"]),
        helper.make_node("Div", ["xc", "scale"], ["xs"]),
        helper.make_node("Gemm", ["xs", "W1", "B1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "B2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("Gemm", ["a2", "W3", "B3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "mlp_30_64_64_2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="peers-bench")
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


# --- helpers -------------------------------------------------------------------------------------

def make_session(model_bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def datatype(arr) -> str:
    import numpy as np

    if arr.dtype == object or arr.dtype.kind in "US":
        return "string"
    names = {np.dtype(np.bool_): "bool", np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32",
             np.dtype(np.int64): "int64", np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
    return names[arr.dtype]


def flat(arr) -> list:
    """Row-major values as JSON values: floats via float() (exact for float32), NaN as null."""
    kind = datatype(arr)
    out = []
    for v in arr.reshape(-1).tolist():
        if kind in ("float32", "float64"):
            v = float(v)
            if math.isnan(v):
                v = None
            elif math.isinf(v):
                raise ValueError("infinite value in a fixture tensor")
        elif kind == "string":
            v = str(v)
        elif kind == "bool":
            v = bool(v)
        else:
            v = int(v)
        out.append(v)
    return out


def tensor_json(name, arr) -> dict:
    return {"name": name, "datatype": datatype(arr), "shape": list(arr.shape), "data": flat(arr)}


def op_types(model) -> list:
    return sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in model.graph.node})


def convert(model, n_features, name, zipmap=False, initial_types=None, options=None):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    if initial_types is None:
        initial_types = [("input", FloatTensorType([None, n_features]))]
    if options is None:
        final = model.steps[-1][1] if isinstance(model, Pipeline) else model
        if isinstance(final, LinearSVC):
            # skl2onnx has no zipmap option for LinearSVC (it adds no ZipMap), but its Pipeline
            # parser gives a classifier step without options zipmap=True, which then fails
            # ("Option 'zipmap' not in [...] for class 'LinearSVC'"): empty options avoid that
            options = {id(final): {}}
        elif is_classifier(final) and not zipmap:
            options = {id(final): {"zipmap": False}}
        else:
            options = {}
    onx = convert_sklearn(model, initial_types=initial_types, options=options)
    onx.graph.name = f"sklearn_{name}"  # skl2onnx puts a random uuid here; keep files byte-stable
    return onx


def write_json(path, obj) -> None:
    """One top-level key per line and one tensor per line: small diffs, no per-number lines."""
    lines = ["{"]
    items = list(obj.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(v, list) and v and isinstance(v[0], dict):
            inner = ",\n".join("  " + json.dumps(t, separators=(", ", ": "), allow_nan=False) for t in v)
            lines.append(f"  {json.dumps(k)}: [\n{inner}\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}{comma}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


class Fixtures:
    def __init__(self):
        self.written = []

    def add(self, name, onx, feeds, description, *, zipmap_stripped=False, zipmap=None,
            check=None, extra=None):
        """Runs `onx` on `feeds` with onnxruntime and writes <name>.onnx and <name>.json.

        `check(outputs)` compares onnxruntime's outputs with scikit-learn's (a sanity check of
        the conversion; the fixture records onnxruntime's values, not scikit-learn's)."""
        import numpy as np
        import onnx

        onnx.checker.check_model(onx)
        data = onx.SerializeToString()
        sess = make_session(data)
        in_names = [i.name for i in sess.get_inputs()]
        assert in_names == list(feeds), (name, in_names, list(feeds))
        out_names = [o.name for o in sess.get_outputs()]
        outs = dict(zip(out_names, sess.run(None, feeds)))
        outputs = []
        for o in out_names:
            v = outs[o]
            if zipmap is not None and o == zipmap["output"]:
                # A sequence of maps (ZipMap). The runtime strips a trailing ZipMap and serves its
                # input (dense float [N, classes]) under this name: record that tensor instead.
                dense = zipmap["dense"]
                assert isinstance(v, list) and len(v) == dense.shape[0]
                for row, m in zip(dense, v):
                    assert list(m.keys()) == list(zipmap["classes"]), (list(m.keys()), zipmap["classes"])
                    assert np.array_equal(np.array(list(m.values()), dtype=np.float32), row)
                v = dense
            v = np.asarray(v)
            outputs.append(tensor_json(o, v))
            if v.dtype.kind == "f":
                assert np.isfinite(v).all(), (name, o)
        tolerance_abs = tolerance_for([np.asarray(outs[o]) for o in out_names
                                       if not isinstance(outs[o], list) and np.asarray(outs[o]).dtype.kind == "f"]
                                      + ([zipmap["dense"]] if zipmap is not None else []))
        if check is not None:
            check({o: np.asarray(outs[o]) if not isinstance(outs[o], list) else outs[o] for o in out_names})
        (OUT_DIR / f"{name}.onnx").write_bytes(data)
        doc = {
            "model": f"{name}.onnx",
            "description": description,
            "op_types": op_types(onx),
            "opset": {(o.domain or "ai.onnx"): o.version for o in onx.opset_import},
            "ir_version": onx.ir_version,
            "inputs": [tensor_json(k, v) for k, v in feeds.items()],
            "outputs": outputs,
            "tolerance_abs": tolerance_abs,
            "zipmap_stripped": zipmap_stripped,
        }
        if extra:
            doc.update(extra)
        write_json(OUT_DIR / f"{name}.json", doc)
        self.written.append(name)
        sig_in = ", ".join(f"{t['name']}: {t['datatype']}{t['shape']}" for t in doc["inputs"])
        sig_out = ", ".join(f"{t['name']}: {t['datatype']}{t['shape']}" for t in outputs)
        print(f"{name:16s} {len(data):8d} B  {sig_in} -> {sig_out}  {' '.join(doc['op_types'])}",
              file=sys.stderr)


def close(a, b, tol=1e-4):
    import numpy as np

    d = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    assert d <= tol, f"onnxruntime differs from scikit-learn by {d} > {tol}"


def labels_margin(proba, min_margin=1e-3):
    """The expected labels must not hinge on a near tie between the two best classes."""
    import numpy as np

    p = np.sort(np.asarray(proba, dtype=np.float64), axis=1)
    m = float(np.min(p[:, -1] - p[:, -2]))
    assert m >= min_margin, f"a row's two best classes are {m} apart"


def tolerance_for(float_outputs):
    """1e-5 absolute for outputs of order 1 (probabilities); for larger outputs (the diabetes
    target, 25..346; SVM decision values) 16 float32 ulps of the largest output, because a runtime
    that sums in another order (or in f64) differs by rounding alone (onnx's ReferenceEvaluator
    differs from onnxruntime by 1.5e-5 on linreg). Rounded up to 1, 2 or 5 times a power of ten."""
    import numpy as np

    m = max([float(np.max(np.abs(y))) for y in float_outputs] + [0.0])
    need = max(TOLERANCE_ABS, 16 * m * float(np.finfo(np.float32).eps))
    e = math.floor(math.log10(need))
    for f in (1, 2, 5, 10):
        if f * 10 ** e >= need:
            return float(f"{f}e{e}")


# --- the models ----------------------------------------------------------------------------------

def main() -> None:
    check_versions()
    import numpy as np
    import onnx
    from onnx import helper
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier,
                                  GradientBoostingRegressor, RandomForestClassifier,
                                  RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Binarizer, Normalizer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, SVR, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    # SVC(probability=True) is deprecated since scikit-learn 1.9 (removal in 1.11); the rbf_svm
    # fixture uses it on purpose (SVMClassifier with Platt scaling)
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*probability=True.*")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    fx = Fixtures()

    def split(X, y, stratify=True):
        X = X.astype(np.float32)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=SEED,
                                              stratify=y if stratify else None)
        return Xtr, np.ascontiguousarray(Xte, dtype=np.float32), ytr, yte

    bc_tr, bc_te, bc_ytr, _ = split(*load_breast_cancer(return_X_y=True))
    ir_tr, ir_te, ir_ytr, _ = split(*load_iris(return_X_y=True))
    db_tr, db_te, db_ytr, _ = split(*load_diabetes(return_X_y=True), stratify=False)
    bc_x, ir_x, db_x = bc_te[:N_ROWS], ir_te[:N_ROWS], db_te[:N_ROWS]

    def classifier_check(model, X, label="label", proba="probabilities", transform=None):
        Xs = X if transform is None else transform(X)

        def check(outs):
            assert np.array_equal(outs[label], model.predict(Xs)), "labels differ from scikit-learn"
            close(outs[proba], model.predict_proba(Xs))
            labels_margin(outs[proba])
        return check

    def regressor_check(model, X, out="variable"):
        def check(outs):
            close(outs[out].reshape(-1), model.predict(X), tol=1e-2)
        return check

    # 1-3: the peers benchmark's sklearn models, trained and converted exactly as onnx_serving.py
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logreg = LogisticRegression(max_iter=10000).fit(bc_tr, bc_ytr)
    fx.add("logreg", convert(logreg, 30, "logreg"), {"input": bc_x},
           "LogisticRegression(max_iter=10000) on load_breast_cancer (the peers benchmark's logreg); "
           "skl2onnx, zipmap off",
           check=classifier_check(logreg, bc_x))

    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=SEED, n_jobs=1).fit(bc_tr, bc_ytr)
    fx.add("rf", convert(rf, 30, "rf"), {"input": bc_x},
           "RandomForestClassifier(n_estimators=100, max_depth=8, random_state=42) on load_breast_cancer "
           "(the peers benchmark's rf); skl2onnx, zipmap off",
           check=classifier_check(rf, bc_x))

    gbdt = GradientBoostingClassifier(random_state=SEED).fit(bc_tr, bc_ytr)
    fx.add("gbdt", convert(gbdt, 30, "gbdt"), {"input": bc_x},
           "GradientBoostingClassifier(random_state=42) (100 trees of depth 3, binary) on "
           "load_breast_cancer (the peers benchmark's gbdt); skl2onnx, zipmap off",
           check=classifier_check(gbdt, bc_x))

    # 4: the peers benchmark's hand-built MLP
    scaler = StandardScaler().fit(bc_tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(64, 64), activation="relu", max_iter=500,
                            random_state=SEED).fit(scaler.transform(bc_tr), bc_ytr)
    tmp = OUT_DIR / "mlp.onnx.tmp"
    build_mlp_onnx(mlp, scaler, str(tmp))
    mlp_onx = onnx.load(str(tmp))
    tmp.unlink()

    def mlp_check(outs):
        close(outs["probabilities"], mlp.predict_proba(scaler.transform(bc_x)))
        labels_margin(outs["probabilities"])
    fx.add("mlp", mlp_onx, {"input": bc_x},
           "30->64->64->2 ReLU MLP (weights of MLPClassifier(hidden_layer_sizes=(64, 64), random_state=42) "
           "on standardized load_breast_cancer), graph written by hand with standard ops "
           "(the peers benchmark's mlp); no label output", check=mlp_check)

    # 5-6, 9, 15: regressors on load_diabetes (10 features, target 25..346)
    linreg = LinearRegression().fit(db_tr, db_ytr)
    onx = convert(linreg, 10, "linreg")
    fx.add("linreg", onx, {"input": db_x}, "LinearRegression on load_diabetes",
           check=regressor_check(linreg, db_x))

    rfr = RandomForestRegressor(n_estimators=50, max_depth=6, random_state=SEED).fit(db_tr, db_ytr)
    fx.add("rf_regressor", convert(rfr, 10, "rf_regressor"), {"input": db_x},
           "RandomForestRegressor(n_estimators=50, max_depth=6, random_state=42) on load_diabetes",
           check=regressor_check(rfr, db_x))

    # 7: extra trees
    et = ExtraTreesClassifier(n_estimators=50, max_depth=6, random_state=SEED).fit(bc_tr, bc_ytr)
    fx.add("extra_trees", convert(et, 30, "extra_trees"), {"input": bc_x},
           "ExtraTreesClassifier(n_estimators=50, max_depth=6, random_state=42) on load_breast_cancer; "
           "zipmap off", check=classifier_check(et, bc_x))

    # 8: multiclass gradient boosting
    gbm = GradientBoostingClassifier(n_estimators=30, random_state=SEED).fit(ir_tr, ir_ytr)
    fx.add("gbdt_multiclass", convert(gbm, 4, "gbdt_multiclass"), {"input": ir_x},
           "GradientBoostingClassifier(n_estimators=30, random_state=42) on load_iris (3 classes); "
           "zipmap off", check=classifier_check(gbm, ir_x))

    gbr = GradientBoostingRegressor(n_estimators=50, random_state=SEED).fit(db_tr, db_ytr)
    fx.add("gbdt_regressor", convert(gbr, 10, "gbdt_regressor"), {"input": db_x},
           "GradientBoostingRegressor(n_estimators=50, random_state=42) on load_diabetes",
           check=regressor_check(gbr, db_x))

    # 10: ColumnTransformer pipeline with two named inputs (float num[N,4], string cat[N,1])
    rs = np.random.RandomState(SEED)
    n = 300
    num = rs.normal(size=(n, 4)).astype(np.float32) * np.array([1.0, 2.0, 0.5, 3.0], dtype=np.float32)
    num[rs.rand(n, 4) < 0.1] = np.nan
    cats = np.array(["red", "green", "blue", "yellow"])
    cat = cats[rs.randint(0, 4, size=n)]
    score = np.nan_to_num(num[:, 0]) - 0.5 * np.nan_to_num(num[:, 1]) + (cat == "red") - (cat == "blue")
    yp = (score + 0.5 * rs.normal(size=n) > 0).astype(np.int64)
    # integer columns across two inputs: skl2onnx maps 0..3 to `num` and 4 to `cat`
    Xobj = np.empty((n, 5), dtype=object)
    Xobj[:, :4] = num
    Xobj[:, 4] = cat
    pipe = Pipeline([
        ("prep", ColumnTransformer([
            ("num", Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]),
             [0, 1, 2, 3]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [4]),
        ])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(Xobj[:240], yp[:240])
    p_num = np.ascontiguousarray(num[240:240 + N_ROWS])
    p_cat = cat[240:240 + N_ROWS].astype(object).reshape(-1, 1)
    p_num[0, :] = np.nan          # a row with every numeric value missing
    p_cat[1, 0] = "purple"        # unknown categories: all-zero one-hot
    p_cat[2, 0] = ""
    assert np.isnan(p_num).sum() >= 5
    onx = convert(pipe, None, "pipeline",
                  initial_types=[("num", FloatTensorType([None, 4])), ("cat", StringTensorType([None, 1]))],
                  options={id(pipe.steps[-1][1]): {"zipmap": False}})
    Xp = np.empty((N_ROWS, 5), dtype=object)
    Xp[:, :4] = p_num
    Xp[:, 4] = p_cat[:, 0]
    fx.add("pipeline", onx, {"num": p_num, "cat": p_cat},
           "Pipeline(ColumnTransformer([num: SimpleImputer(mean) + StandardScaler on columns 0..3, "
           "cat: OneHotEncoder(handle_unknown='ignore') on column 4]), LogisticRegression) on a generated "
           "300-row dataset (RandomState(42)); inputs num float[N,4] (NaN = missing) and cat string[N,1]; "
           "rows include NaNs (row 0 all NaN) and unknown categories ('purple' in row 1, '' in row 2); "
           "zipmap off", check=classifier_check(pipe, Xp))

    # 11-12: bare transformers
    xb = rs.rand(N_ROWS, 5).astype(np.float32)
    xb[0, 0] = 0.5  # exactly the threshold: Binarizer maps x > threshold to 1, so 0.5 -> 0
    binz = Binarizer(threshold=0.5).fit(xb)

    def bin_check(outs):
        assert np.array_equal(list(outs.values())[0], binz.transform(xb))
    fx.add("binarizer", convert(binz, 5, "binarizer"), {"input": xb},
           "bare Binarizer(threshold=0.5) on uniform [0, 1) data (x[0,0] is exactly 0.5 -> 0)",
           check=bin_check)

    xn = rs.normal(size=(N_ROWS, 5)).astype(np.float32)
    for norm in ("l2", "l1", "max"):
        nz = Normalizer(norm=norm).fit(xn)
        name = "normalizer" if norm == "l2" else f"normalizer_{norm}"
        description = f"bare Normalizer(norm='{norm}') on standard normal data (negative values included)"
        if norm == "max":
            # skl2onnx writes ai.onnx.ml Normalizer norm="MAX", which the ONNX spec and onnxruntime
            # define as x / max(x) per row, while scikit-learn divides by max(|x|): the outputs
            # differ from scikit-learn's in rows whose largest magnitude is negative. The fixture
            # records onnxruntime (the spec), and this check pins that semantics.
            want = xn / xn.max(axis=1, keepdims=True)
            assert not np.allclose(want, nz.transform(xn))
            description += ("; NOTE: ONNX Normalizer MAX is x / max(x) per row (signed), scikit-learn's is "
                            "x / max(|x|), so these expected outputs (onnxruntime's) differ from "
                            "scikit-learn's in rows whose largest magnitude is negative")
        else:
            want = nz.transform(xn)

        def norm_check(outs, want=want):
            close(outs["variable"], want, tol=1e-5)
        fx.add(name, convert(nz, 5, name), {"input": xn}, description, check=norm_check)

    # 13: linear SVMs on standardized breast cancer
    lsvm = Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="linear"))]).fit(bc_tr, bc_ytr)

    def lsvm_check(outs):
        assert np.array_equal(outs["label"], lsvm.predict(bc_x))
        # for a binary SVC without probabilities the "probabilities" output holds the decision
        # value f as [f, -f] (onnxruntime's SVMClassifier; label 1 when f > 0)
        close(outs["probabilities"][:, 0], lsvm.decision_function(bc_x), tol=1e-4)
        assert np.array_equal(outs["probabilities"][:, 1], -outs["probabilities"][:, 0])
        assert np.abs(outs["probabilities"]).min() > 1e-3
    fx.add("linear_svm", convert(lsvm, 30, "linear_svm"), {"input": bc_x},
           "Pipeline(StandardScaler, SVC(kernel='linear')) on load_breast_cancer (probability=False: the "
           "'probabilities' output holds the decision value f as [f, -f], not probabilities; label 1 "
           "when f > 0); zipmap off",
           check=lsvm_check)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lsvc = Pipeline([("scale", StandardScaler()), ("svc", LinearSVC(random_state=SEED))]).fit(bc_tr, bc_ytr)

    def lsvc_check(outs):
        assert np.array_equal(outs["label"], lsvc.predict(bc_x))
        # binary LinearSVC: skl2onnx keeps LinearClassifier's single score column f, [N, 1]
        assert outs["probabilities"].shape == (len(bc_x), 1), outs["probabilities"].shape
        close(outs["probabilities"][:, 0], lsvc.decision_function(bc_x), tol=1e-4)
        assert np.abs(outs["probabilities"]).min() > 1e-3
    fx.add("linear_svc", convert(lsvc, 30, "linear_svc"), {"input": bc_x},
           "Pipeline(StandardScaler, LinearSVC(random_state=42)) on load_breast_cancer ('probabilities' "
           "holds the decision value f, one column [N, 1], not probabilities; label 1 when f > 0)", check=lsvc_check)

    # 14: RBF SVM with probabilities (libsvm Platt scaling + pairwise coupling), 3 classes
    rsvm = SVC(kernel="rbf", probability=True, random_state=SEED).fit(ir_tr, ir_ytr)

    def rsvm_check(outs):
        assert np.array_equal(outs["label"], rsvm.predict(ir_x))
        close(outs["probabilities"], rsvm.predict_proba(ir_x), tol=1e-3)
        labels_margin(outs["probabilities"])
    fx.add("rbf_svm", convert(rsvm, 4, "rbf_svm"), {"input": ir_x},
           "SVC(kernel='rbf', probability=True, random_state=42) on load_iris (3 classes); zipmap off",
           check=rsvm_check)

    # 15: SVR
    svr = SVR(kernel="rbf").fit(db_tr, db_ytr)
    fx.add("svr", convert(svr, 10, "svr"), {"input": db_x}, "SVR(kernel='rbf') on load_diabetes",
           check=regressor_check(svr, db_x))

    # 16: MLPClassifier converted by skl2onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlps = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=SEED).fit(ir_tr, ir_ytr)
    fx.add("mlp_sklearn", convert(mlps, 4, "mlp_sklearn"), {"input": ir_x},
           "MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=42) on load_iris, converted "
           "by skl2onnx; zipmap off", check=classifier_check(mlps, ir_x))

    # 17: zipmap on; the expected probabilities are the ZipMap's dense input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lrz = LogisticRegression(max_iter=1000).fit(ir_tr, ir_ytr)
    onx = convert(lrz, 4, "logreg_zipmap", zipmap=True)
    zm = [nd for nd in onx.graph.node if nd.op_type == "ZipMap"]
    assert len(zm) == 1 and zm[0].output[0] == onx.graph.output[-1].name
    zm_in, zm_out = zm[0].input[0], zm[0].output[0]
    classes = [int(c) for c in helper.get_attribute_value(
        next(a for a in zm[0].attribute if a.name in ("classlabels_int64s", "classlabels_strings")))]
    # onnxruntime's value of the ZipMap's input: run a copy with that tensor as one more output
    probe = onnx.ModelProto()
    probe.CopyFrom(onx)
    probe.graph.output.append(helper.make_empty_tensor_value_info(zm_in))
    dense = make_session(probe.SerializeToString()).run([zm_in], {"input": ir_x})[0]
    assert dense.dtype == np.float32 and dense.shape == (N_ROWS, 3)

    def lrz_check(outs):
        assert np.array_equal(outs["output_label"], lrz.predict(ir_x))
        close(dense, lrz.predict_proba(ir_x))
    fx.add("logreg_zipmap", onx, {"input": ir_x},
           "LogisticRegression(max_iter=1000) on load_iris with skl2onnx's default ZipMap: the file's "
           f"'{zm_out}' is a sequence of maps; the expected '{zm_out}' is the ZipMap's input "
           f"'{zm_in}' (float[N,3], columns in class order {classes}), as served by a runtime that strips a "
           "trailing ZipMap",
           zipmap_stripped=True, zipmap={"output": zm_out, "dense": dense, "classes": classes},
           check=lrz_check,
           extra={"zipmap": {"output": zm_out, "input": zm_in, "classes": classes}})

    # extra: string labels (label output is a string tensor)
    names = load_iris().target_names
    dt = DecisionTreeClassifier(max_depth=3, random_state=SEED).fit(ir_tr, names[ir_ytr])
    fx.add("label_encoder", convert(dt, 4, "label_encoder"), {"input": ir_x},
           "DecisionTreeClassifier(max_depth=3, random_state=42) on load_iris with string class names "
           f"{list(names)}: the label output is a string tensor; zipmap off",
           check=lambda outs: (assert_eq(outs["label"], dt.predict(ir_x)),
                               close(outs["probabilities"], dt.predict_proba(ir_x))))

    (OUT_DIR / "index.json").write_text(json.dumps({"models": fx.written}, indent=1) + "\n")
    print(f"wrote {len(fx.written)} models to {OUT_DIR}", file=sys.stderr)


def assert_eq(a, b):
    import numpy as np

    assert np.array_equal(np.asarray(a).astype(str), np.asarray(b).astype(str)), (a, b)


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    main()
