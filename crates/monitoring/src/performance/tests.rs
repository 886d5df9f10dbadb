//! Tests of the performance module:
//!
//! - [`golden`]: parity with scikit-learn 1.9.1 (`fixtures/sklearn_metrics.json`, written by
//!   `scripts/monitoring/sklearn_golden.py`) and NannyML 0.13.1
//!   (`fixtures/nannyml_cbpe.json`, written by `scripts/monitoring/nannyml_golden.py`);
//! - [`shift`]: CBPE under a synthetic covariate shift, against the realised metrics;
//!   the accumulators against the batch functions;
//! - [`inputs`]: malformed input and undefined metrics.
//!
//! The generators here expand the fixtures' `{"gen": …}` specs with the scripts'
//! SplitMix64 stream and the same IEEE operations, so both sides see the same rows.

mod golden;
mod inputs;
mod shift;

use serde_json::Value;

use crate::stats::rng::Rng;

/// The scripts' uniform stream: SplitMix64 draws as `(z >> 11) · 2⁻⁵³` (exact).
pub(super) struct Uniforms(Rng);

impl Uniforms {
    pub(super) fn new(seed: u64) -> Self {
        Uniforms(Rng::new(seed))
    }

    pub(super) fn next(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * 2f64.powi(-53)
    }

    /// A standard normal draw (Box–Muller; for the synthetic tests only).
    pub(super) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next();
        let u2 = self.next();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn seed_and_n(spec: &Value) -> (u64, usize) {
    let seed = spec["seed"].as_u64().expect("seed");
    let n = spec["n"].as_u64().expect("n") as usize;
    (seed, n)
}

/// `gen_binary`: (y_true, y_pred, scores).
pub(super) fn gen_binary(spec: &Value) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
    let (seed, n) = seed_and_n(spec);
    let q = spec.get("quantize").and_then(Value::as_f64);
    let mut u = Uniforms::new(seed);
    let (mut y_true, mut y_pred, mut scores) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let (u1, u2, u3) = (u.next(), u.next(), u.next());
        let s = q.map_or(u1, |q| (u1 * q).floor() / q);
        scores.push(s);
        y_true.push(i64::from(u2 < s));
        y_pred.push(i64::from(u3 < s));
    }
    (y_true, y_pred, scores)
}

/// `gen_multiclass`: (y_true, y_pred, probabilities row-major, k).
pub(super) fn gen_multiclass(spec: &Value) -> (Vec<i64>, Vec<i64>, Vec<f64>, usize) {
    let (seed, n) = seed_and_n(spec);
    let k = spec["k"].as_u64().expect("k") as usize;
    let mut u = Uniforms::new(seed);
    let (mut y_true, mut y_pred, mut probs) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let w: Vec<f64> = (0..k).map(|_| u.next() + 0.05).collect();
        let mut s = 0.0;
        for v in &w {
            s += v;
        }
        let p: Vec<f64> = w.iter().map(|v| v / s).collect();
        let (draw, mut cum, mut t) = (u.next(), 0.0, k - 1);
        for (j, pj) in p.iter().enumerate() {
            cum += pj;
            if draw < cum {
                t = j;
                break;
            }
        }
        let y = if u.next() < 0.25 {
            (u.next() * k as f64) as usize
        } else {
            // the first maximum
            (0..k).fold(0, |best, j| if p[j] > p[best] { j } else { best })
        };
        y_true.push(t as i64);
        y_pred.push(y as i64);
        probs.extend_from_slice(&p);
    }
    (y_true, y_pred, probs, k)
}

/// `gen_regression`: (y_true, y_pred).
pub(super) fn gen_regression(spec: &Value) -> (Vec<f64>, Vec<f64>) {
    let (seed, n) = seed_and_n(spec);
    let number = |k: &str| spec[k].as_f64().expect("a number");
    let (loc, scale, noise) = (number("loc"), number("scale"), number("noise"));
    let zeros_every = spec.get("zeros_every").and_then(Value::as_u64);
    let mut u = Uniforms::new(seed);
    let (mut y_true, mut y_pred) = (vec![], vec![]);
    for i in 0..n {
        let d: Vec<f64> = (0..5).map(|_| u.next()).collect();
        let mut t = loc + scale * (((d[0] + d[1]) + (d[2] + d[3])) - 2.0);
        if zeros_every.is_some_and(|z| (i as u64).is_multiple_of(z)) {
            t = 0.0;
        }
        y_true.push(t);
        y_pred.push(t + noise * (d[4] - 0.5));
    }
    (y_true, y_pred)
}

/// `gen_table` of the NannyML script: (scores, predictions, labels).
pub(super) fn gen_table(spec: &Value) -> (Vec<f64>, Vec<bool>, Vec<bool>) {
    let (seed, n) = seed_and_n(spec);
    let q = spec.get("quantize").and_then(Value::as_f64);
    let mut u = Uniforms::new(seed);
    let (mut scores, mut predictions, mut labels) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let (u1, u2) = (u.next(), u.next());
        let s = match spec["shape"].as_str() {
            Some("u") => u1,
            Some("sqrt") => u1.sqrt(),
            Some("square") => u1 * u1,
            other => panic!("unknown shape {other:?}"),
        };
        let s = q.map_or(s, |q| (s * q).floor() / q);
        let p = if spec["truth"] == "identity" {
            s
        } else {
            s * s
        };
        scores.push(s);
        predictions.push(s >= 0.5);
        labels.push(u2 < p);
    }
    (scores, predictions, labels)
}

/// A fixture float: its Python repr in a string, `null` for NaN or no value.
pub(super) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.parse().unwrap_or_else(|_| panic!("float {s}"))),
        other => panic!("not a float: {other}"),
    }
}

/// Asserts `got` within `rtol` (relative) of `want`, both `None` alike; returns the
/// relative error.
pub(super) fn close(got: Option<f64>, want: Option<f64>, rtol: f64, what: &str) -> f64 {
    match (got, want) {
        (None, None) => 0.0,
        (Some(g), Some(w)) => {
            let err = if g == w {
                0.0
            } else {
                (g - w).abs() / w.abs().max(f64::MIN_POSITIVE)
            };
            assert!(
                err <= rtol,
                "{what}: got {g:e}, want {w:e} (relative error {err:e})"
            );
            err
        }
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}
