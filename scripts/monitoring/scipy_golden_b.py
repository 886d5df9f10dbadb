"""Golden values for the Rust ports in crates/monitoring/src/stats/{anderson,cvm,epps,mmd}.rs.

Run with the reference environment (evidently 0.7.23, scipy 1.17.1, numpy 2.4.6):

    /tmp/ev-venv/bin/python scripts/monitoring/scipy_golden_b.py

It writes crates/monitoring/fixtures/scipy_b.json. Every value comes from the real
functions Evidently calls: scipy.stats.anderson_ksamp, Evidently's own _cvm_2samp,
scipy.stats.epps_singleton_2samp (behind Evidently's IQR check) and Evidently's
mmd_pval.

Every float is written as a string holding its Python repr (NaN as null): serde_json,
without its `float_roundtrip` feature, may parse a decimal number one ulp off, while
Rust's `str::parse::<f64>` is correctly rounded. Samples are stored either inline (a list
of such strings) or, for long ones, as a generator spec {"gen": {...}} that the Rust tests
expand with the same integer/IEEE arithmetic (see `gen_sample` below and
`stats::anderson::golden::sample` in Rust), which keeps the fixture small.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import warnings

import numpy as np
import pandas as pd
import scipy
import scipy.special
from scipy.stats import anderson_ksamp, epps_singleton_2samp

import evidently
from evidently.legacy.calculations.stattests.cramer_von_mises_stattest import _cvm_2samp
from evidently.legacy.calculations.stattests.epps_singleton_stattest import _epps_singleton
from evidently.legacy.calculations.stattests.mmd_stattest import kernel_matrix, mmd_2samp, mmd_pval
from evidently.legacy.core import ColumnType

assert evidently.__version__ == "0.7.23", evidently.__version__
assert scipy.__version__ == "1.17.1", scipy.__version__
assert np.__version__ == "2.4.6", np.__version__

warnings.simplefilter("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "monitoring", "fixtures", "scipy_b.json")

MASK = (1 << 64) - 1


# --- deterministic sample generator shared with the Rust tests -----------------------


def gen_sample(spec: dict) -> np.ndarray:
    """SplitMix64 -> uniforms u = (z >> 11) * 2**-53 (exact), then
    kind "ih4": loc + scale * (((u1 + u2) + (u3 + u4)) - 2.0)   (Irwin-Hall(4), centred)
    kind "uniform": loc + scale * u
    kind "exp": loc - scale * log1p(-u)   (not bit-exact across libms: unused for ties)
    then, if "decimals" is given, round(x * 10**d) / 10**d (half-even, as Python's round).
    Only exactly rounded IEEE operations, so Rust reproduces the same doubles."""
    state = spec["seed"] & MASK
    kind = spec.get("kind", "ih4")
    loc = float(spec.get("loc", 0.0))
    scale = float(spec.get("scale", 1.0))
    dec = spec.get("decimals")

    def uniform() -> float:
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z = z ^ (z >> 31)
        return (z >> 11) * 2.0**-53

    out = np.empty(spec["n"])
    for i in range(spec["n"]):
        if kind == "ih4":
            u1, u2, u3, u4 = uniform(), uniform(), uniform(), uniform()
            x = loc + scale * (((u1 + u2) + (u3 + u4)) - 2.0)
        elif kind == "uniform":
            x = loc + scale * uniform()
        else:
            raise ValueError(kind)
        if dec is not None:
            p = 10.0**dec
            x = round(x * p) / p
        out[i] = x
    return out


def sample(s) -> np.ndarray:
    if isinstance(s, dict):
        return gen_sample(s["gen"])
    assert all(isinstance(v, float) for v in s), "inline samples must be floats"
    return np.asarray(s, dtype=float)


def g(seed, n, **kw):
    return {"gen": {"seed": seed, "n": n, **kw}}


def num(v):
    """JSON-safe float: NaN -> None (serde_json has no NaN)."""
    v = float(v)
    return None if math.isnan(v) else v


def err_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


rng = np.random.default_rng(20240917)


def inline(a, decimals=None):
    a = np.asarray(a, dtype=float)
    if decimals is not None:
        a = np.round(a, decimals)
    return [float(v) for v in a]


# --- Anderson-Darling k-sample ------------------------------------------------------


def anderson_case(name, samples):
    arrays = [sample(s) for s in samples]
    case = {"name": name, "samples": samples}
    try:
        res = anderson_ksamp(arrays)
        case["statistic"] = num(res.statistic)
        case["pvalue"] = num(res.pvalue)
    except Exception as e:  # noqa: BLE001 - we record what scipy raises
        case["error"] = err_text(e)
    return case


def anderson_cases():
    cases = []
    cases.append(anderson_case("tiny_ties", [[1.0, 2.0, 3.0, 3.0], [2.0, 3.0, 4.0, 5.0, 5.0]]))
    cases.append(anderson_case("one_sample", [[1.0, 2.0, 3.0]]))
    cases.append(anderson_case("no_samples", []))
    cases.append(anderson_case("empty_sample", [[1.0, 2.0, 3.0], []]))
    cases.append(anderson_case("all_empty", [[], []]))
    cases.append(anderson_case("all_identical", [[2.5, 2.5, 2.5], [2.5, 2.5]]))
    cases.append(anderson_case("n2_indexerror", [[1.0], [2.0]]))
    cases.append(anderson_case("n3_nan", [[1.0, 3.0], [2.0]]))
    cases.append(anderson_case("n4", [[1.0, 2.0], [2.0, 3.0]]))
    cases.append(anderson_case("n5_distinct", [[0.5, 1.5, 2.25], [1.0, 4.0]]))
    cases.append(anderson_case("identical_samples", [inline(rng.normal(size=40), 3)] * 2))
    x = inline(rng.normal(size=30), 4)
    cases.append(anderson_case("small_normal", [x, inline(rng.normal(0.3, size=25), 4)]))
    cases.append(anderson_case("small_shift_cap_low", [x, inline(rng.normal(2.0, size=25), 4)]))
    cases.append(anderson_case("medium_no_ties", [g(1, 300), g(2, 200)]))
    cases.append(anderson_case("medium_shift", [g(3, 300), g(4, 200, loc=0.08)]))
    cases.append(anderson_case("heavy_ties", [g(5, 500, scale=3.0, decimals=0), g(6, 400, scale=3.0, decimals=0, loc=0.2)]))
    cases.append(anderson_case("two_values", [[0.0] * 7 + [1.0] * 3, [0.0] * 4 + [1.0] * 6]))
    cases.append(anderson_case("three_samples", [g(7, 50), g(8, 60, loc=0.1), g(9, 40, loc=-0.1)]))
    cases.append(anderson_case("four_samples_ties", [g(10, 30, decimals=1), g(11, 20, decimals=1), g(12, 25, decimals=1, loc=0.2), [0.0, 0.1]]))
    cases.append(anderson_case("large_100k", [g(13, 100_000, decimals=3), g(14, 20_000, decimals=3, loc=0.003)]))
    cases.append(anderson_case("large_shift_cap", [g(15, 100_000), g(16, 30_000, loc=0.05)]))
    cases.append(anderson_case("unequal_scale", [g(17, 400), g(18, 300, scale=1.3)]))
    # p-values around both ends of the interpolation range: scan a shift so the statistic
    # crosses critical.min() (p cap 0.25) and critical.max() (p floor 0.001)
    base = [g(19, 120, decimals=5)]
    for i, loc in enumerate(np.linspace(0.0, 0.25, 26)):
        cases.append(anderson_case(f"scan_{i:02d}", base + [g(20, 90, decimals=5, loc=float(round(loc, 3)))]))
    return cases


# --- Cramer-von Mises (Evidently's own _cvm_2samp) ----------------------------------


def cvm_case(name, x, y, **extra):
    xa, ya = sample(x), sample(y)
    case = {"name": name, "x": x, "y": y, **extra}
    try:
        res = _cvm_2samp(xa, ya)
        case["statistic"] = num(res.statistic)
        case["pvalue"] = num(res.pvalue)
    except Exception as e:  # noqa: BLE001
        case["error"] = err_text(e)
    return case


def cvm_cases():
    cases = []
    cases.append(cvm_case("too_small_x", [1.0], [1.0, 2.0, 3.0]))
    cases.append(cvm_case("too_small_y", [1.0, 2.0, 3.0], [2.0]))
    cases.append(cvm_case("empty", [], [1.0, 2.0]))
    # every pair of sizes of the exact branch: the frequency table's dtype (uint*: numpy
    # raises a casting error; float16 / float32: rounded counts) depends on the sizes only
    for m in range(2, 21):
        for n in range(2, 21):
            seed = 1000 + 21 * m + n
            loc = 0.0 if (m + n) % 3 else 0.7
            dec = 1 if (m * n) % 4 == 0 else None
            x = g(seed, m, decimals=dec if dec else 3)
            y = g(seed + 5000, n, loc=loc, decimals=dec if dec else 3)
            cases.append(cvm_case(f"exact_{m}_{n}", x, y))
    # a few exact ones with stronger separation (tiny p) and ties
    cases.append(cvm_case("exact_separated_10_10", g(1, 10), g(2, 10, loc=5.0)))
    cases.append(cvm_case("exact_separated_20_20", g(3, 20), g(4, 20, loc=5.0)))
    cases.append(cvm_case("exact_identical_12", g(5, 12, decimals=2), g(5, 12, decimals=2)))
    cases.append(cvm_case("exact_ties_16_18", g(6, 16, decimals=0, scale=2.0), g(7, 18, decimals=0, scale=2.0)))
    cases.append(cvm_case("exact_separated_5_20", g(8, 5), g(9, 20, loc=5.0)))
    cases.append(cvm_case("exact_separated_8_8", g(10, 8), g(11, 8, loc=5.0)))
    # boundary: max(nx, ny) = 20 is exact, 21 is asymptotic
    cases.append(cvm_case("boundary_20_20", g(12, 20), g(13, 20, loc=0.4)))
    cases.append(cvm_case("boundary_21_20", g(12, 21), g(13, 20, loc=0.4)))
    cases.append(cvm_case("boundary_20_21", g(12, 20), g(13, 21, loc=0.4)))
    cases.append(cvm_case("boundary_21_21", g(12, 21), g(13, 21, loc=0.4)))
    cases.append(cvm_case("asym_2_30", [0.1, 0.7], g(14, 30)))
    # tn < 0.003 -> p = 1.0 exactly (identical samples give the smallest statistic)
    cases.append(cvm_case("tn_small_identical", g(15, 40), g(15, 40)))
    cases.append(cvm_case("tn_small_interleaved", [float(i) for i in range(0, 60, 2)], [float(i) for i in range(1, 61, 2)]))
    cases.append(cvm_case("asym_medium", g(16, 300), g(17, 200, loc=0.1)))
    cases.append(cvm_case("asym_heavy_ties", g(18, 500, decimals=0, scale=3.0), g(19, 450, decimals=0, scale=3.0, loc=0.3)))
    cases.append(cvm_case("asym_two_values", [0.0] * 30 + [1.0] * 20, [0.0] * 20 + [1.0] * 25))
    cases.append(cvm_case("asym_large", g(20, 100_000, decimals=3), g(21, 50_000, decimals=3, loc=0.01)))
    cases.append(cvm_case("asym_large_shift", g(22, 100_000), g(23, 20_000, loc=0.1)))
    cases.append(cvm_case("asym_separated", g(24, 2000), g(25, 2000, loc=5.0)))
    cases.append(cvm_case("asym_shift_small_p", g(26, 200), g(27, 200, loc=0.5)))
    for i, loc in enumerate([0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3]):
        cases.append(cvm_case(f"asym_scan_{i}", g(28, 150), g(29, 130, loc=loc)))
    return cases


def kv_cases():
    """scipy.special.kv(0.25, q): checks the Rust Bessel K against AMOS (whose own error
    is ~1e-13 relative around q in [0.7, 2])."""
    qs = [1e-8, 1e-4, 0.01, 0.1, 0.5, 0.7, 1.0, 1.5, 1.99, 2.0, 2.5, 5.0, 10.0, 20.8, 50.0, 100.0, 300.0, 600.0]
    return [{"q": q, "kv": float(scipy.special.kv(0.25, q))} for q in qs]


# --- Epps-Singleton -------------------------------------------------------------------


def epps_case(name, x, y):
    xa, ya = sample(x), sample(y)
    case = {"name": name, "x": x, "y": y}
    try:
        # Evidently's wrapper (raises on a zero IQR), then scipy for the statistic
        p_ev, _ = _epps_singleton(pd.Series(xa), pd.Series(ya), ColumnType.Numerical, 0.05)
        res = epps_singleton_2samp(xa, ya)
        assert (math.isnan(p_ev) and math.isnan(res.pvalue)) or p_ev == res.pvalue
        case["statistic"] = num(res.statistic)
        case["pvalue"] = num(res.pvalue)
        if math.isnan(res.pvalue) and min(len(xa), len(ya)) < 5:
            case["scipy_nan_too_small"] = True
    except Exception as e:  # noqa: BLE001
        case["error"] = err_text(e)
    return case


def epps_cases():
    cases = []
    cases.append(epps_case("too_small_x", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    cases.append(epps_case("too_small_y", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.5, 2.5]))
    cases.append(epps_case("iqr_zero", [1.0] * 8, [1.0] * 6))
    cases.append(epps_case("iqr_zero_mostly", [1.0] * 20 + [3.0], [1.0] * 10 + [0.0]))
    cases.append(epps_case("tiny_5_5", [0.1, 0.5, 0.9, 1.3, 2.0], [0.3, 0.6, 1.6, 2.2, 2.9]))
    cases.append(epps_case("identical", g(30, 40), g(30, 40)))
    cases.append(epps_case("constant_each", [0.0] * 5, [1.0] * 5))
    cases.append(epps_case("two_values_rank1", [0.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    cases.append(epps_case("three_values_rank2", [0.0, 0.0, 0.0, 1.0, 1.0, 2.0], [0.0, 1.0, 1.0, 1.0, 2.0, 2.0]))
    cases.append(epps_case("three_values_big", [0.0, 0.0, 0.0, 1.0, 1.0, 2.0] * 5, [0.0, 1.0, 1.0, 1.0, 2.0, 2.0] * 5))
    cases.append(epps_case("five_values", g(31, 60, decimals=0, scale=2.0), g(32, 50, decimals=0, scale=2.0, loc=0.3)))
    # small-sample correction applies when max(nx, ny) < 25
    for nx, ny in [(24, 24), (24, 25), (25, 24), (25, 25), (5, 24), (5, 25), (10, 12)]:
        cases.append(epps_case(f"corr_{nx}_{ny}", g(33, nx, decimals=4), g(34, ny, decimals=4, loc=0.3)))
    cases.append(epps_case("medium", g(35, 300), g(36, 200, loc=0.1)))
    cases.append(epps_case("medium_scale", g(37, 300), g(38, 250, scale=1.5)))
    cases.append(epps_case("heavy_ties", g(39, 500, decimals=1), g(40, 400, decimals=1, loc=0.05)))
    cases.append(epps_case("large", g(41, 100_000), g(42, 40_000, loc=0.01)))
    cases.append(epps_case("large_shift_underflow", g(43, 20_000), g(44, 20_000, loc=1.5)))
    cases.append(epps_case("shift_small_p", g(45, 500), g(46, 500, loc=0.4)))
    cases.append(epps_case("big_values", g(47, 200, loc=1e6, scale=1e3), g(48, 150, loc=1e6 + 50, scale=1e3)))
    for i, loc in enumerate([0.0, 0.05, 0.1, 0.2, 0.3]):
        cases.append(epps_case(f"scan_{i}", g(49, 150), g(50, 130, loc=loc)))
    return cases


# --- MMD ------------------------------------------------------------------------------


def mmd_exact_pvalue(x, y):
    """The exact permutation p-value: the share of all C(N, ny) splits (each split is
    equally likely under a uniform permutation) whose MMD is >= the observed one,
    computed with Evidently's own kernel matrix and mmd_2samp."""
    x2, y2 = x.reshape(-1, 1), y.reshape(-1, 1)
    km = kernel_matrix(x2, y2)
    km = km - np.diag(np.diagonal(km))
    nx, ny = len(x), len(y)
    obs = mmd_2samp(km, ny)
    total = hits = 0
    allidx = np.arange(nx + ny)
    for yset in itertools.combinations(range(nx + ny), ny):
        mask = np.ones(nx + ny, bool)
        mask[list(yset)] = False
        idx = np.concatenate([allidx[mask], np.array(yset)])
        v = mmd_2samp(km[idx][:, idx], ny)
        hits += obs <= v
        total += 1
    return hits / total, 0


def mmd_mc_pvalue(x, y, n_perm, seed):
    x2, y2 = x.reshape(-1, 1), y.reshape(-1, 1)
    km = kernel_matrix(x2, y2)
    km = km - np.diag(np.diagonal(km))
    obs = mmd_2samp(km, len(y))
    np.random.seed(seed)
    perm = np.array([mmd_2samp(km, len(y), permute=True) for _ in range(n_perm)])
    return float((obs <= perm).mean()), n_perm


def mmd_case(name, x, y, seed=0, reference=None, ref_perms=4000):
    xa, ya = sample(x), sample(y)
    case = {"name": name, "x": x, "y": y, "seed": seed}
    try:
        np.random.seed(seed)
        p, stat = mmd_pval(xa.reshape(-1, 1), ya.reshape(-1, 1))
        case["statistic"] = num(stat)
        case["pvalue_evidently"] = num(p)
        if reference == "exact":
            case["pvalue_reference"], case["reference_permutations"] = mmd_exact_pvalue(xa, ya)
        elif reference == "mc":
            case["pvalue_reference"], case["reference_permutations"] = mmd_mc_pvalue(xa, ya, ref_perms, seed + 1)
    except Exception as e:  # noqa: BLE001
        case["error"] = err_text(e)
    return case


def mmd_cases():
    cases = []
    cases.append(mmd_case("one_row", [1.0], [1.0, 2.0, 3.0, 4.0]))
    # Evidently computes these (n(n-1) > 0) but we refuse fewer than 4 rows per sample
    cases.append(mmd_case("three_rows_rejected", [0.0, 1.0, 2.5], [1.0, 2.0, 3.0, 4.0]))
    cases.append(mmd_case("two_rows_rejected", [0.0, 1.0, 2.5, 3.0], [1.0, 2.0]))
    cases.append(mmd_case("constant", [3.0] * 6, [3.0] * 5, reference="exact"))
    cases.append(mmd_case("tiny_4_4", [0.1, 0.4, 1.3, 2.2], [0.3, 0.9, 1.1, 3.0], reference="exact"))
    cases.append(mmd_case("tiny_5_5_shift", [0.1, 0.4, 1.3, 2.2, 0.8], [2.3, 2.9, 3.1, 4.0, 3.3], reference="exact"))
    cases.append(mmd_case("small_8_6", inline(rng.normal(size=8), 3), inline(rng.normal(0.5, size=6), 3), reference="exact"))
    cases.append(mmd_case("small_7_7_ties", [0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0], [1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 4.0], reference="exact"))
    cases.append(mmd_case("identical_arrays", g(60, 30), g(60, 30), reference="mc"))
    cases.append(mmd_case("medium_null", g(61, 120), g(62, 100), reference="mc"))
    cases.append(mmd_case("medium_shift", g(63, 120), g(64, 100, loc=0.15), reference="mc"))
    cases.append(mmd_case("medium_strong_shift", g(65, 150), g(66, 150, loc=1.0), reference="mc"))
    cases.append(mmd_case("heavy_ties", g(67, 150, decimals=0, scale=2.0), g(68, 120, decimals=0, scale=2.0, loc=0.2), reference="mc"))
    cases.append(mmd_case("unequal_4_200", [0.1, 0.5, -0.3, 0.2], g(69, 200), reference="mc"))
    cases.append(mmd_case("big_values", g(70, 80, loc=1e4, scale=10.0), g(71, 70, loc=1e4 + 1, scale=10.0), reference="mc"))
    cases.append(mmd_case("larger_900_600", g(72, 900, decimals=4), g(73, 600, decimals=4, loc=0.02)))
    cases.append(mmd_case("even_ref_1000", g(74, 1000), g(75, 300, loc=0.05)))
    return cases


def exact_floats(v):
    """Every float as its repr string (NaN as None), recursively."""
    if isinstance(v, float):
        return None if math.isnan(v) else repr(float(v))
    if isinstance(v, dict):
        return {k: exact_floats(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [exact_floats(x) for x in v]
    return v


def main():
    data = {
        "versions": {"evidently": evidently.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
        "anderson": anderson_cases(),
        "cvm": cvm_cases(),
        "kv": kv_cases(),
        "epps": epps_cases(),
        "mmd": mmd_cases(),
    }
    text = json.dumps(exact_floats(data), separators=(",", ":"), allow_nan=False)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text + "\n")
    print(f"wrote {OUT}: {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
