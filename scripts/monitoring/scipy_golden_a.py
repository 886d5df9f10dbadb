#!/usr/bin/env python3
"""Golden values from scipy 1.17.1 for the Rust ports in crates/monitoring/src/stats/{ks,
contingency,location}.rs, written to crates/monitoring/fixtures/scipy_a.json.

    /tmp/ev-venv/bin/python scripts/monitoring/scipy_golden_a.py

Deterministic (numpy `default_rng` with fixed seeds, no network). Every float is stored as
the string of its `repr` (which Rust's `str::parse::<f64>` reads back to the same bits; JSON
numbers would go through serde_json's best-effort float parser), so "nan", "inf" and "-inf"
need no special case. Samples too long to store inline are stored as a generator spec that
Rust evaluates with the same IEEE operations (see `gen` below):

    {"kind": "unit", "n": n, "mul": k, "mod": m, "scale": s, "offset": o}
        x[i] = ((i * k) % m) / m * s + o          (i = 0..n, integer arithmetic, then floats)
    {"kind": "int", "n": n, "mul": k, "add": c, "mod": m, "offset": o}
        x[i] = ((i * k + c) % m) + o

Sections: `ks_2samp` (two-sided, method 'auto'), `kstwo_sf` (the distribution ks_2samp's
asymptotic branch evaluates, on a grid covering every branch of scipy's `_kolmogn`),
`mannwhitneyu_less`, `ttest_ind`, `chisquare`, `g_test` (power_divergence with
lambda_='log-likelihood'), `fisher_exact` (two-sided), and the special functions behind the
p-values on grids over their branches: `stdtr` (`special.stdtr(df, -t)`, Boost's t CDF) and
`chdtrc` (cephes' igamc). A case whose call raised has `error` (the message) instead of
`statistic`/`pvalue`.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import scipy
from scipy import stats

assert scipy.__version__ == "1.17.1", scipy.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "monitoring",
                   "fixtures", "scipy_a.json")


def f(v) -> str:
    """A float as the string of its repr (round-trips exactly)."""
    return repr(float(v))


def fs(values) -> list[str]:
    return [f(v) for v in np.asarray(values, dtype=np.float64)]


def gen(spec: dict) -> np.ndarray:
    """Evaluates a generator spec exactly as the Rust test does."""
    n = spec["n"]
    if spec["kind"] == "unit":
        k, m, s, o = spec["mul"], spec["mod"], float(spec["scale"]), float(spec["offset"])
        return np.array([((i * k) % m) / m * s + o for i in range(n)], dtype=np.float64)
    if spec["kind"] == "int":
        k, c, m, o = spec["mul"], spec["add"], spec["mod"], float(spec["offset"])
        return np.array([float((i * k + c) % m) + o for i in range(n)], dtype=np.float64)
    raise ValueError(spec)


def u(n, mul, mod, scale=1.0, offset=0.0) -> dict:
    """n points of the grid k/mod (a permutation-like walk), scaled and shifted."""
    assert n <= mod
    return {"kind": "unit", "n": n, "mul": mul, "mod": mod, "scale": scale, "offset": offset}


def ints(n, mul, add, mod, offset=0.0) -> dict:
    """n integers in 0..mod (heavy ties when n >> mod)."""
    return {"kind": "int", "n": n, "mul": mul, "add": add, "mod": mod, "offset": offset}


def ar(n, offset=0.0) -> dict:
    """offset + 0, 1, ..., n-1."""
    return ints(n, 1, 0, 1 << 40, offset)


def sample(x):
    """An inline sample (list of repr strings) or a generator spec (dict) -> (json, array)."""
    if isinstance(x, dict):
        return x, gen(x)
    arr = np.asarray(x, dtype=np.float64)
    return fs(arr), arr


def result(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = fn(*args)
        except ValueError as e:
            return {"error": str(e)}
    return {"statistic": f(r[0]), "pvalue": f(r[1])}


def two_sample_cases(section: str, pairs, fn) -> list[dict]:
    out = []
    for name, a, b in pairs:
        ja, xa = sample(a)
        jb, xb = sample(b)
        case = {"name": name, "a": ja, "b": jb}
        case.update(result(fn, xa, xb))
        out.append(case)
    print(f"{section}: {len(out)} cases")
    return out


# ---------------------------------------------------------------------------------------
# ks_2samp
# ---------------------------------------------------------------------------------------
def ks_pairs():
    rng = np.random.default_rng(20240601)
    p = []
    # tiny samples (sizes 1..10), continuous
    for n1 in range(1, 11):
        for n2 in (1, 2, 3, 5, 7, 10):
            p.append((f"tiny {n1}x{n2}", rng.normal(size=n1), rng.normal(0.3, 1, size=n2)))
    # identical, disjoint
    x = rng.normal(size=40)
    p.append(("identical 40", x, x.copy()))
    p.append(("disjoint 30x30", np.arange(30.0), np.arange(30.0) + 100))
    p.append(("disjoint 30x45", np.arange(30.0) + 100, np.arange(45.0)))
    p.append(("disjoint 500x500", ar(500), ar(500, 1000.0)))
    p.append(("disjoint 700x650", ar(700), ar(650, 1000.0)))
    p.append(("disjoint 1x1", [0.0], [1.0]))
    p.append(("same value 1x1", [1.0], [1.0]))
    # heavy ties
    for n1, n2, k in ((20, 20, 3), (50, 80, 4), (7, 13, 2)):
        p.append((f"ties {n1}x{n2} in 0..{k}", rng.integers(0, k, n1).astype(float),
                  rng.integers(0, k + 1, n2).astype(float)))
    p.append(("ties 300x300", ints(300, 7919, 1, 5), ints(300, 6007, 2, 6)))
    p.append(("ties 1000x1500", ints(1000, 7919, 3, 6), ints(1500, 104729, 0, 7)))
    # equal sizes (_compute_prob_outside_square)
    for n, shift in ((5, 0.0), (13, 0.0), (30, 0.0), (60, 0.1), (100, 0.0), (100, 0.5)):
        p.append((f"equal {n} shift {shift}", rng.normal(size=n), rng.normal(shift, 1, size=n)))
    for n, shift, m1, m2 in ((250, 0.1, 257, 263), (1000, 0.02, 1009, 1013),
                             (1000, 0.1, 1019, 1021), (3000, 0.03, 3001, 3011),
                             (5000, 0.5, 5003, 5009)):
        p.append((f"equal {n} shift {shift}", u(n, 7919, m1), u(n, 6007, m2, 1.0, shift)))
    # D = 1/n or 2/n: the exact probability rounds above 1 for some n, scipy then falls
    # back to the asymptotic distribution
    for n in (5, 7, 30, 60, 69, 72):
        a = np.arange(n, dtype=float) * 2
        p.append((f"interleaved {n}", a, a + 1))
        b2 = a.copy()
        b2[0] = 1.0
        b2[1:] += 1.5
        p.append((f"interleaved2 {n}", a, b2))
    # unequal sizes (_compute_outer_prob_inside_method), gcd 1 and > 1
    for n1, n2, shift in ((37, 59, 0.0), (37, 59, 0.8), (40, 60, 0.5), (100, 150, 1.0)):
        p.append((f"unequal {n1}x{n2} shift {shift}", rng.normal(size=n1),
                  rng.normal(shift, 1, size=n2)))
    for n1, n2, shift, m1, m2 in ((500, 800, 0.05, 503, 809), (999, 1000, 0.03, 1009, 1013),
                                  (2000, 3000, 0.02, 2003, 3001), (64, 4096, 0.1, 67, 4099),
                                  (1234, 5678, 0.6, 1237, 5683)):
        p.append((f"unequal {n1}x{n2} shift {shift}", u(n1, 7919, m1),
                  u(n2, 6007, m2, 1.0, shift)))
    p.append(("unequal 8x900", rng.normal(0.5, 0.1, size=8), u(900, 6007, 907)))
    p.append(("unequal 3x2000", rng.uniform(size=3), u(2000, 6007, 2003)))
    p.append(("unequal 1x500", [0.7], u(500, 6007, 503)))
    p.append(("unequal 1x10000", [0.3], u(10000, 6007, 10007)))
    p.append(("unequal 10000x7", u(10000, 6007, 10007), rng.uniform(size=7)))
    # very small exact p-values (not disjoint)
    p.append(("strong shift 200x300", u(200, 7919, 211), u(300, 6007, 307, 1.0, 0.9)))
    p.append(("strong shift 400x400", u(400, 7919, 401), u(400, 6007, 409, 1.0, 0.95)))
    p.append(("exact 10000x9999", u(10000, 7919, 10007), u(9999, 6007, 10009, 1.0, 0.02)))
    p.append(("exact 10000x10000", u(10000, 7919, 10007), u(10000, 104729, 100003, 1.0, 0.01)))
    p.append(("exact 10000x2500 far", u(10000, 7919, 10007), u(2500, 613, 2503, 1.0, 0.9)))
    # asymptotic: max(n1, n2) > 10000
    p.append(("asymp 10001x10001 same", u(10001, 7919, 10007), u(10001, 6007, 10009)))
    p.append(("asymp 10001x10001 shift", u(10001, 7919, 10007), u(10001, 6007, 10009, 1.0, 0.01)))
    p.append(("asymp 10001x50", u(10001, 7919, 10007), u(50, 37, 53, 1.0, 0.1)))
    p.append(("asymp 10001x1", u(10001, 7919, 10007), [0.999]))
    p.append(("asymp 10001x1 low", u(10001, 7919, 10007), [0.25]))
    p.append(("asymp 10001x2", u(10001, 7919, 10007), [0.5, 0.75]))
    p.append(("asymp 10001x3", u(10001, 7919, 10007), [0.1, 0.5, 0.75]))
    p.append(("asymp 20000x15000 small shift", u(20000, 7919, 20011),
              u(15000, 6007, 15013, 1.0, 0.004)))
    p.append(("asymp 20000x15000 shift", u(20000, 7919, 20011), u(15000, 6007, 15013, 1.0, 0.02)))
    p.append(("asymp 30000x30000 tiny shift", u(30000, 7919, 30011),
              u(30000, 6007, 30013, 1.0, 0.002)))
    p.append(("asymp 30000x30000 big shift", u(30000, 7919, 30011),
              u(30000, 6007, 30013, 1.0, 0.3)))
    p.append(("asymp 40000x12000 scaled", u(40000, 7919, 40009), u(12000, 6007, 12007, 1.1, -0.05)))
    p.append(("asymp 100000x100000 shift", u(100000, 7919, 100003),
              u(100000, 6007, 100019, 1.0, 0.004)))
    p.append(("asymp 250000x250000 shift", u(250000, 7919, 250007),
              u(250000, 6007, 250013, 1.0, 0.001)))
    p.append(("asymp 20000x300 disjoint", u(20000, 7919, 20011), u(300, 37, 307, 1.0, 2.0)))
    p.append(("asymp ties", ints(12000, 7919, 3, 7), ints(9000, 6007, 1, 8)))
    return p


def kstwo_cases():
    out = []
    ns = [1, 2, 3, 5, 10, 50, 139, 140, 141, 200, 1000, 5000, 10000, 50000, 100000, 100001, 200000]
    for n in ns:
        xs = {0.5 / n, 0.5 / n * (1 + 1e-12), 0.75 / n, 1.0 / n, 1.5 / n, (n - 1) / n,
              (n - 0.5) / n, 0.25, 0.4999, 0.5, 0.6, 0.9, 0.99, 1.0, 1.2,
              (1.4 / n) ** (2 / 3), (1.4 / n) ** (2 / 3) * 1.001}
        for c in (0.05, 0.1, 0.3, 0.5, 0.754693, 0.76, 1.0, 1.5, 2.0, 2.19, 2.21, 3.0, 4.0, 4.1,
                  8.0, 17.9, 18.1, 50.0, 150.0, 369.0, 371.0, 700.0):
            xs.add((c / n) ** 0.5)
        for x in sorted(xs):
            if not (0.0 < x <= 1.2):
                continue
            sf = stats.kstwo.sf(x, n)
            out.append({"n": n, "x": f(x), "sf": f(sf)})
    print(f"kstwo_sf: {len(out)} cases")
    return out


# ---------------------------------------------------------------------------------------
# mannwhitneyu(x, y, alternative='less')
# ---------------------------------------------------------------------------------------
def mwu_pairs():
    rng = np.random.default_rng(20240602)
    p = []
    # exact: min size <= 8, no ties
    for n1 in range(1, 9):
        for n2 in (1, 2, 3, 5, 8, 9, 12, 20):
            shift = rng.choice([-1.0, 0.0, 0.7])
            p.append((f"exact {n1}x{n2}", rng.normal(size=n1), rng.normal(shift, 1, size=n2)))
    p.append(("exact 8x8 disjoint low", np.arange(8.0), np.arange(8.0) + 10))
    p.append(("exact 8x8 disjoint high", np.arange(8.0) + 10, np.arange(8.0)))
    p.append(("exact 3x40", rng.normal(size=3), rng.normal(size=40)))
    p.append(("exact 40x3", rng.normal(0.5, 1, size=40), rng.normal(size=3)))
    p.append(("exact 8x100", rng.normal(size=8), rng.normal(0.4, 1, size=100)))
    p.append(("exact 8x400 (counts above 2^53)", rng.normal(0.45, 0.3, size=8),
              u(400, 6007, 401, 1.0, 0.0)))
    p.append(("exact 8x400 disjoint", np.arange(8.0), ar(400, 100.0)))
    p.append(("exact 5x1500", rng.normal(0.55, 0.3, size=5), u(1500, 6007, 1511)))
    p.append(("exact 1x1", [1.0], [2.0]))
    p.append(("exact 1x1 reversed", [2.0], [1.0]))
    # ties with a small sample: asymptotic
    p.append(("ties 3x5", [1.0, 2.0, 2.0], [0.0, 2.0, 3.0, 4.0, 5.0]))
    p.append(("ties across 4x4", [1.0, 2.0, 3.0, 4.0], [4.0, 5.0, 6.0, 7.0]))
    p.append(("identical 6", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    p.append(("all equal 5x7", [3.0] * 5, [3.0] * 7))
    p.append(("all equal 1x1", [3.0], [3.0]))
    # asymptotic: both sizes > 8
    for n1, n2, shift in ((9, 9, 0.0), (9, 9, 1.0), (9, 50, 0.3), (30, 30, -0.5)):
        p.append((f"asymp {n1}x{n2} shift {shift}", rng.normal(size=n1),
                  rng.normal(shift, 1, size=n2)))
    for n1, n2, shift, m1, m2 in ((200, 300, 0.05, 211, 307), (1000, 1200, 0.02, 1009, 1201),
                                  (5000, 7000, 0.0, 5003, 7001)):
        p.append((f"asymp {n1}x{n2} shift {shift}", u(n1, 7919, m1), u(n2, 6007, m2, 1.0, shift)))
    p.append(("asymp ties 10x12", rng.integers(0, 3, 10).astype(float),
              rng.integers(0, 3, 12).astype(float)))
    p.append(("asymp ties 100x90", ints(100, 7919, 0, 4), ints(90, 6007, 1, 4)))
    p.append(("asymp ties 2000x3000", ints(2000, 7919, 0, 5), ints(3000, 6007, 2, 5)))
    p.append(("asymp ties 400x400 binary", ints(400, 7919, 0, 2), ints(400, 6007, 1, 3)))
    p.append(("asymp disjoint 300x300 (tiny p)", ar(300), ar(300, 1000.0)))
    p.append(("asymp disjoint 300x300 reversed (p=1)", ar(300, 1000.0), ar(300)))
    p.append(("asymp disjoint 900x900 (p ~ 1e-295)", ar(900), ar(900, 5000.0)))
    p.append(("asymp disjoint 2000x2000 (p underflows)", ar(2000), ar(2000, 5000.0)))
    p.append(("asymp 60000x50000", u(60000, 7919, 60013), u(50000, 6007, 50021, 1.0, 0.003)))
    p.append(("asymp ties 60000x50000", ints(60000, 7919, 0, 11), ints(50000, 6007, 5, 11)))
    return p


# ---------------------------------------------------------------------------------------
# ttest_ind(a, b)
# ---------------------------------------------------------------------------------------
def ttest_pairs():
    rng = np.random.default_rng(20240603)
    p = []
    for n1 in (1, 2, 3, 5, 10):
        for n2 in (1, 2, 4, 7):
            p.append((f"tiny {n1}x{n2}", rng.normal(size=n1), rng.normal(0.5, 1, size=n2)))
    p.append(("constant equal", [2.0] * 5, [2.0] * 7))
    p.append(("constant different", [2.0] * 5, [3.0] * 7))
    p.append(("constant different reversed", [3.0] * 5, [2.0] * 7))
    p.append(("one constant", [2.0] * 5, [1.0, 2.0, 3.0]))
    p.append(("single and constant", [2.0], [3.0, 3.0, 3.0]))
    p.append(("identical", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]))
    p.append(("offset 1e9", 1e9 + rng.normal(size=50), 1e9 + rng.normal(0.2, 1, size=60)))
    p.append(("normal 30x30", rng.normal(size=30), rng.normal(size=30)))
    p.append(("normal 30x40 shift", rng.normal(size=30), rng.normal(0.5, 1, size=40)))
    p.append(("disjoint small", [0.0, 0.001, 0.002], [1.0, 1.001, 1.002, 1.003]))
    p.append(("integers", ints(100, 7919, 0, 5), ints(120, 6007, 3, 6)))
    for n1, n2, scale, shift, m1, m2 in (
            (100, 100, 1.0, 0.3, 101, 103), (1000, 1500, 1.0, 0.01, 1009, 1511),
            (1000, 1000, 1.0, 0.2, 1013, 1019), (1000, 1000, 1.0, 0.6, 1021, 1031),
            (1000, 1000, 1.0, 0.55, 1021, 1031), (1000, 1000, 1.0, 0.58, 1021, 1031),
            (3000, 3000, 0.1, 0.35, 3001, 3011), (3000, 3000, 0.01, 0.5, 3019, 3023),
            (5000, 4000, 1.0, 0.003, 5003, 4001), (40000, 50000, 1.0, 0.003, 40009, 50021),
            (40000, 50000, 1.0, 0.01, 40009, 50021), (20, 5000, 1.0, 0.05, 23, 5003),
            (100000, 120000, 1.0, 0.002, 100003, 120011),
            (100000, 120000, 1.0, 0.05, 100003, 120011)):
        p.append((f"gen {n1}x{n2} scale {scale} shift {shift}", u(n1, 7919, m1, scale),
                  u(n2, 6007, m2, scale, shift)))
    return p


# ---------------------------------------------------------------------------------------
# chisquare / g-test / fisher_exact
# ---------------------------------------------------------------------------------------
def count_cases(fn, section):
    rng = np.random.default_rng(20240604)
    out = []

    def add(name, obs, exp):
        case = {"name": name, "f_obs": fs(obs), "f_exp": fs(exp)}
        case.update(result(fn, np.asarray(obs, float), np.asarray(exp, float)))
        out.append(case)

    for k in (2, 3, 5, 10, 30):
        obs = rng.integers(0, 50, k).astype(float) + 1
        exp = obs.sum() * rng.dirichlet(np.ones(k) * 5)
        add(f"random {k}", obs, exp)
        add(f"random {k} equal", obs, obs.copy())
    obs = np.array([10.0, 20.0, 30.0])
    add("scaled expected", obs, np.array([1.0, 2.0, 3.0]) * (60.0 / 6.0))
    add("zero observed", [0.0, 10.0, 5.0], [5.0, 5.0, 5.0])
    add("zero expected, zero observed", [0.0, 10.0, 5.0], [0.0, 7.5, 7.5])
    add("zero expected", [1.0, 9.0, 5.0], [0.0, 7.5, 7.5])
    add("single category", [5.0], [5.0])
    add("single category off by 1e-12", [5.0], [5.0 + 5e-12])
    add("large counts", [100000.0, 120000.0, 80000.0], [100000.0, 100000.0, 100000.0])
    add("huge counts (p ~ 1e-45)", [1e5, 1.0321e5, 0.9679e5], [1e5, 1e5, 1e5])
    add("huge counts (p ~ 1e-300)", [1e5, 1e5 + 8307, 1e5 - 8307], [1e5, 1e5, 1e5])
    add("huge counts (p subnormal)", [1e5, 1e5 + 8426, 1e5 - 8426], [1e5, 1e5, 1e5])
    add("huge counts (p underflows)", [1e6, 1.1e6, 0.9e6], [1e6, 1e6, 1e6])
    add("p near 1", [100.0, 101.0, 99.0], [100.0, 100.0, 100.0])
    obs = rng.integers(50, 150, 200).astype(float)
    add("many categories", obs, np.full(200, obs.sum() / 200))
    add("many categories, sum off", obs, np.full(200, 100.0))
    # sums within scipy's tolerance (sqrt(eps) relative) and just outside
    add("sums agree to 1e-9", [10.0, 20.0, 30.0], [10.0, 20.0, 30.0 + 6e-8])
    add("sums differ by 1e-7", [10.0, 20.0, 30.0], [10.0, 20.0, 30.0 + 6e-6])
    add("sums differ", [10.0, 20.0, 30.0], [10.0, 20.0, 31.0])
    add("raw reference counts", [5.0, 15.0, 30.0], [40.0, 100.0, 60.0])
    add("expected all zero", [1.0, 2.0], [0.0, 0.0])
    add("both all zero", [0.0, 0.0], [0.0, 0.0])
    print(f"{section}: {len(out)} cases")
    return out


def fisher_cases():
    rng = np.random.default_rng(20240605)
    tables = [
        [[0, 0], [0, 0]], [[1, 0], [0, 0]], [[0, 5], [0, 7]], [[3, 4], [0, 0]], [[5, 0], [3, 0]],
        [[1, 0], [0, 1]], [[0, 1], [1, 0]], [[2, 0], [0, 2]], [[10, 0], [0, 10]],
        [[8, 2], [1, 5]], [[1, 9], [11, 3]], [[3, 1], [1, 3]], [[5, 5], [5, 5]], [[6, 4], [4, 6]],
        [[0, 10], [10, 0]], [[0, 3], [4, 5]], [[7, 0], [2, 9]], [[12, 5], [29, 2]],
        [[100, 50], [40, 90]], [[500, 480], [510, 520]], [[1000, 10], [10, 1000]],
        [[2000, 0], [0, 2000]], [[50000, 50100], [49900, 50050]],
        [[60000, 50000], [40000, 50010]], [[300000, 310000], [299000, 305000]],
        [[1, 100000], [5, 100000]], [[0, 150000], [3, 140000]], [[20, 80], [80, 20]],
        [[170, 0], [0, 0]], [[85, 0], [0, 85]], [[84, 1], [1, 84]],
    ]
    for _ in range(25):
        k = int(rng.choice([5, 20, 60, 300, 3000]))
        tables.append(rng.integers(0, k, (2, 2)).tolist())
    out = []
    for t in tables:
        r = stats.fisher_exact(t)
        out.append({"table": [[int(v) for v in row] for row in t], "statistic": f(r.statistic),
                    "pvalue": f(r.pvalue)})
    print(f"fisher_exact: {len(out)} cases")
    return out


# ---------------------------------------------------------------------------------------
# the special functions behind the p-values: student t (boost, via special.stdtr) and
# chi-squared (cephes igamc, via special.chdtrc), on grids covering their branches
# ---------------------------------------------------------------------------------------
def stdtr_cases():
    from scipy import special
    out = []
    dfs = [1, 2, 3, 4, 5, 7, 10, 20, 29, 30, 50, 100, 500, 1000, 1998, 5000, 10000, 50000,
           100000, 220000, 1e6, 1e9]
    ts = [0.0, 1e-8, 0.01, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 37.0,
          40.0, 44.0, 45.0, 46.0, 50.0, 70.0, 100.0, 1e3, 1e5, 1e10, 1e200, np.inf]
    for df in dfs:
        for t in ts:
            out.append({"df": f(df), "t": f(t), "cdf": f(special.stdtr(df, -t))})
    print(f"stdtr: {len(out)} cases")
    return out


def chdtrc_cases():
    from scipy import special
    out = []
    dfs = [1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 39, 40, 41, 41.5, 60, 100, 199, 399, 400, 401, 402,
           1000, 5000, 10000, 100000, 1e6]
    for df in dfs:
        xs = [-1.0, 0.0, 1e-300, 1e-10, 1e-3, 0.2, 0.5, 0.55, 0.6, 1.0, 1.1, 1.2, 2.0, 2.2, 3.0]
        xs += [m * df for m in (0.01, 0.1, 0.3, 0.5, 0.69, 0.71, 0.8, 0.9, 0.95, 0.99, 1.0, 1.01,
                                1.05, 1.1, 1.3, 1.5, 2.0, 3.0, 5.0, 10.0, 50.0)]
        xs += [df + c * df ** 0.5 for c in (-6.0, -4.0, -2.0, 2.0, 4.0, 6.0, 10.0, 20.0)]
        xs += [df + 1400.0 + 60 * df ** 0.5, 1420.0, 1400.0, 1500.0, 1e5, np.inf]
        for x in sorted(set(xs)):
            out.append({"df": f(df), "x": f(x), "sf": f(special.chdtrc(df, x))})
    print(f"chdtrc: {len(out)} cases")
    return out


def main():
    doc = {
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "ks_2samp": two_sample_cases("ks_2samp", ks_pairs(), stats.ks_2samp),
        "kstwo_sf": kstwo_cases(),
        "mannwhitneyu_less": two_sample_cases(
            "mannwhitneyu_less", mwu_pairs(),
            lambda x, y: stats.mannwhitneyu(x, y, alternative="less")),
        "ttest_ind": two_sample_cases("ttest_ind", ttest_pairs(), stats.ttest_ind),
        "chisquare": count_cases(stats.chisquare, "chisquare"),
        "g_test": count_cases(
            lambda o, e: stats.power_divergence(o, e, lambda_="log-likelihood"), "g_test"),
        "fisher_exact": fisher_cases(),
        "stdtr": stdtr_cases(),
        "chdtrc": chdtrc_cases(),
    }
    with open(OUT, "w") as fh:
        json.dump(doc, fh, indent=None, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
