//! The evaluation gate's verdicts, in MLflow's `MetricThreshold` semantics
//! (`mlflow.models.evaluation.validation`):
//!
//! - `threshold`: the candidate's value must be `>= threshold` when greater is better,
//!   `<= threshold` otherwise;
//! - `min_absolute_change` (> 0): the candidate must beat the baseline by at least that
//!   much: `candidate >= baseline + change` (greater is better) or
//!   `candidate <= baseline - change`;
//! - `min_relative_change` (in (0, 1]): `(candidate - baseline) / baseline >= change`
//!   (greater is better) or `(baseline - candidate) / baseline >= change`; when the
//!   baseline is 0, MLflow falls back to `candidate >= baseline` (or `<=`), and so do we;
//! - `max_absolute_degradation` (>= 0; ours, not MLflow's): non-inferiority, the candidate
//!   may trail the baseline by at most that much: `candidate >= baseline - degradation`
//!   (greater is better) or `candidate <= baseline + degradation`.
//!
//! A metric passes when every limit set on it passes; values within 1e-12 (relative)
//! of a limit count as meeting it, so decimal arithmetic reads as people expect. This
//! module is pure: the store looks the values up and records the result.

use std::collections::BTreeMap;

use mlops_proto::registry::v1 as pb;

use crate::error::{invalid, precondition, Result};

/// A metric's value and where it came from ("evaluation:<dataset>" or "run").
#[derive(Debug, Clone, PartialEq)]
pub struct Valued {
    /// The value.
    pub value: f64,
    /// Its source.
    pub source: String,
}

/// Metric name to value, for one version.
pub type MetricValues = BTreeMap<String, Valued>;

/// Checks the thresholds themselves, before anything is looked up.
pub fn check_thresholds(thresholds: &[pb::MetricThreshold], has_baseline: bool) -> Result<()> {
    if thresholds.is_empty() {
        return Err(invalid(
            "thresholds must name at least one metric, e.g. {metric: \"auc\", threshold: 0.9, greater_is_better: true}",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for t in thresholds {
        let m = &t.metric;
        if m.trim().is_empty() {
            return Err(invalid("every threshold needs a metric name"));
        }
        if !seen.insert(m.as_str()) {
            return Err(invalid(format!(
                "metric `{m}` has two thresholds; put all its limits in one"
            )));
        }
        if t.threshold.is_none()
            && t.min_absolute_change.is_none()
            && t.min_relative_change.is_none()
            && t.max_absolute_degradation.is_none()
        {
            return Err(invalid(format!(
                "threshold on `{m}` sets no limit: give threshold, min_absolute_change, min_relative_change \
                 or max_absolute_degradation"
            )));
        }
        if let Some(v) = t.threshold {
            if !v.is_finite() {
                return Err(invalid(format!(
                    "threshold on `{m}` must be a finite number"
                )));
            }
        }
        if let Some(v) = t.min_absolute_change {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(format!(
                    "min_absolute_change on `{m}` must be a positive number, got {v}"
                )));
            }
        }
        if let Some(v) = t.min_relative_change {
            if !(v > 0.0 && v <= 1.0) {
                return Err(invalid(format!(
                    "min_relative_change on `{m}` must be in (0, 1] (a fraction of the baseline), got {v}"
                )));
            }
        }
        if let Some(v) = t.max_absolute_degradation {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(format!(
                    "max_absolute_degradation on `{m}` must be a number >= 0, got {v}"
                )));
            }
        }
        if compares(t) && !has_baseline {
            return Err(invalid(format!(
                "threshold on `{m}` compares with a baseline (min_absolute_change, min_relative_change \
                 or max_absolute_degradation) \
                 but no baseline was given: name a baseline version or alias"
            )));
        }
    }
    Ok(())
}

/// Fails when a threshold names a metric the candidate or the baseline lacks.
pub fn check_present(
    thresholds: &[pb::MetricThreshold],
    candidate: &MetricValues,
    candidate_label: &str,
    baseline: Option<(&MetricValues, &str)>,
) -> Result<()> {
    let names = |m: &MetricValues| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    for t in thresholds {
        if !candidate.contains_key(&t.metric) {
            return Err(precondition(format!(
                "{candidate_label} has no metric `{}`: log an evaluation with it first \
                 (metrics it has: {})",
                t.metric,
                names(candidate)
            )));
        }
        if let (true, Some((b, label))) = (compares(t), baseline) {
            if !b.contains_key(&t.metric) {
                return Err(precondition(format!(
                    "baseline {label} has no metric `{}` to compare with (metrics it has: {})",
                    t.metric,
                    names(b)
                )));
            }
        }
    }
    Ok(())
}

/// Whether a threshold compares the candidate with a baseline.
fn compares(t: &pb::MetricThreshold) -> bool {
    t.min_absolute_change.is_some()
        || t.min_relative_change.is_some()
        || t.max_absolute_degradation.is_some()
}

fn fmt(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// The verdict on each threshold; both maps must hold every metric named
/// ([`check_present`]).
pub fn evaluate(
    thresholds: &[pb::MetricThreshold],
    candidate: &MetricValues,
    baseline: Option<&MetricValues>,
) -> Vec<pb::MetricValidation> {
    thresholds
        .iter()
        .map(|t| {
            let m = &t.metric;
            let c = &candidate[m];
            let b = baseline.and_then(|b| b.get(m));
            let gib = t.greater_is_better;
            let (worse, cmp) = if gib { ("below", ">=") } else { ("above", "<=") };
            // Within a few ulps counts as equal, so `0.93 >= 0.90 + 0.03` holds as a
            // person reads it, though 0.90 + 0.03 is 0.9300000000000002 in binary.
            let beats = |x: f64, y: f64| {
                let eps = 1e-12 * y.abs().max(1.0);
                if gib {
                    x >= y - eps
                } else {
                    x <= y + eps
                }
            };
            let mut failures = vec![];
            let mut passes = vec![];
            if let Some(th) = t.threshold {
                if beats(c.value, th) {
                    passes.push(format!("{m} = {} is {cmp} the threshold {}", fmt(c.value), fmt(th)));
                } else {
                    failures.push(format!(
                        "{m} = {} is {worse} the threshold {} ({} is better)",
                        fmt(c.value),
                        fmt(th),
                        if gib { "higher" } else { "lower" }
                    ));
                }
            }
            if let (Some(change), Some(b)) = (t.min_absolute_change, b) {
                let needed = if gib { b.value + change } else { b.value - change };
                if beats(c.value, needed) {
                    passes.push(format!(
                        "{m} improves on the baseline's {} by at least {}",
                        fmt(b.value),
                        fmt(change)
                    ));
                } else {
                    failures.push(format!(
                        "{m} = {} does not beat the baseline's {} by the minimum absolute change {} \
                         (needs {cmp} {})",
                        fmt(c.value),
                        fmt(b.value),
                        fmt(change),
                        fmt(needed)
                    ));
                }
            }
            if let (Some(margin), Some(b)) = (t.max_absolute_degradation, b) {
                let floor = if gib { b.value - margin } else { b.value + margin };
                if beats(c.value, floor) {
                    passes.push(format!(
                        "{m} = {} is within {} of the baseline's {}",
                        fmt(c.value),
                        fmt(margin),
                        fmt(b.value)
                    ));
                } else {
                    failures.push(format!(
                        "{m} = {} is worse than the baseline's {} by more than the allowed degradation {} \
                         (needs {cmp} {})",
                        fmt(c.value),
                        fmt(b.value),
                        fmt(margin),
                        fmt(floor)
                    ));
                }
            }
            if let (Some(change), Some(b)) = (t.min_relative_change, b) {
                if b.value == 0.0 {
                    if beats(c.value, b.value) {
                        passes.push(format!(
                            "{m} = {} is not worse than the baseline's 0 (relative change is undefined at 0)",
                            fmt(c.value)
                        ));
                    } else {
                        failures.push(format!(
                            "{m} = {} is {worse} the baseline's 0 (relative change is undefined at 0, \
                             so the candidate must at least match it)",
                            fmt(c.value)
                        ));
                    }
                } else {
                    let rel = if gib {
                        (c.value - b.value) / b.value
                    } else {
                        (b.value - c.value) / b.value
                    };
                    if rel >= change - 1e-12 {
                        passes.push(format!(
                            "{m} improves on the baseline's {} by {:.2}% (at least {:.2}%)",
                            fmt(b.value),
                            rel * 100.0,
                            change * 100.0
                        ));
                    } else {
                        failures.push(format!(
                            "{m} = {} changes the baseline's {} by {:.2}%; the minimum relative \
                             improvement is {:.2}%",
                            fmt(c.value),
                            fmt(b.value),
                            rel * 100.0,
                            change * 100.0
                        ));
                    }
                }
            }
            let passed = failures.is_empty();
            pb::MetricValidation {
                metric: m.clone(),
                candidate_value: c.value,
                baseline_value: b.map(|b| b.value),
                threshold: Some(t.clone()),
                passed,
                reason: if passed {
                    passes.join("; ")
                } else {
                    failures.join("; ")
                },
                candidate_source: c.source.clone(),
                baseline_source: b.map(|b| b.source.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// One line about a set of verdicts.
pub fn summary(verdicts: &[pb::MetricValidation]) -> String {
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.passed)
        .map(|v| v.metric.as_str())
        .collect();
    if failed.is_empty() {
        format!(
            "passed: {} of {} thresholds met",
            verdicts.len(),
            verdicts.len()
        )
    } else {
        format!(
            "failed: {} of {} thresholds not met ({})",
            failed.len(),
            verdicts.len(),
            failed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, f64)]) -> MetricValues {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Valued {
                        value: *v,
                        source: "run".into(),
                    },
                )
            })
            .collect()
    }

    fn th(metric: &str, gib: bool) -> pb::MetricThreshold {
        pb::MetricThreshold {
            metric: metric.into(),
            greater_is_better: gib,
            ..Default::default()
        }
    }

    #[test]
    fn absolute_threshold_in_both_directions() {
        let c = values(&[("auc", 0.91), ("loss", 0.30)]);
        let mut auc = th("auc", true);
        auc.threshold = Some(0.9);
        let mut loss = th("loss", false);
        loss.threshold = Some(0.25);
        let v = evaluate(&[auc.clone(), loss], &c, None);
        assert!(v[0].passed, "{}", v[0].reason);
        assert!(!v[1].passed);
        assert!(
            v[1].reason.contains("above the threshold 0.25"),
            "{}",
            v[1].reason
        );
        // equality passes (>=, <=) as in MLflow
        auc.threshold = Some(0.91);
        assert!(evaluate(&[auc], &c, None)[0].passed);
        assert_eq!(summary(&v), "failed: 1 of 2 thresholds not met (loss)");
    }

    #[test]
    fn non_inferiority_allows_a_bounded_degradation() {
        let c = values(&[("rmse", 0.52), ("r2", 0.89)]);
        let b = values(&[("rmse", 0.50), ("r2", 0.90)]);
        let mut rmse = th("rmse", false);
        rmse.max_absolute_degradation = Some(0.05);
        let mut r2 = th("r2", true);
        r2.max_absolute_degradation = Some(0.0);
        let v = evaluate(&[rmse.clone(), r2], &c, Some(&b));
        assert!(v[0].passed, "{}", v[0].reason);
        assert!(!v[1].passed);
        assert!(v[1].reason.contains("needs >= 0.9"), "{}", v[1].reason);
        rmse.max_absolute_degradation = Some(0.01);
        assert!(!evaluate(&[rmse.clone()], &c, Some(&b))[0].passed);
        // a comparison needs a baseline; a negative margin is refused
        assert!(check_thresholds(std::slice::from_ref(&rmse), false).is_err());
        rmse.max_absolute_degradation = Some(-0.1);
        assert!(check_thresholds(&[rmse], true).is_err());
    }

    #[test]
    fn min_absolute_change() {
        let c = values(&[("auc", 0.93), ("loss", 0.20)]);
        let b = values(&[("auc", 0.90), ("loss", 0.25)]);
        let mut auc = th("auc", true);
        auc.min_absolute_change = Some(0.02);
        let mut loss = th("loss", false);
        loss.min_absolute_change = Some(0.1);
        let v = evaluate(&[auc.clone(), loss], &c, Some(&b));
        assert!(v[0].passed, "{}", v[0].reason);
        assert_eq!(v[0].baseline_value, Some(0.90));
        assert!(!v[1].passed);
        assert!(v[1].reason.contains("needs <= 0.15"), "{}", v[1].reason);
        auc.min_absolute_change = Some(0.05);
        assert!(!evaluate(&[auc], &c, Some(&b))[0].passed);
    }

    #[test]
    fn min_relative_change_and_zero_baseline() {
        let c = values(&[("auc", 0.99), ("err", 0.0)]);
        let b = values(&[("auc", 0.90), ("err", 0.0)]);
        let mut auc = th("auc", true);
        auc.min_relative_change = Some(0.1); // needs 0.99
        let v = evaluate(&[auc.clone()], &c, Some(&b));
        assert!(v[0].passed, "{}", v[0].reason);
        auc.min_relative_change = Some(0.2);
        assert!(!evaluate(&[auc], &c, Some(&b))[0].passed);
        // baseline 0: plain comparison
        let mut err = th("err", false);
        err.min_relative_change = Some(0.5);
        assert!(evaluate(&[err.clone()], &c, Some(&b))[0].passed);
        let worse = values(&[("err", 0.1)]);
        let v = evaluate(&[err], &worse, Some(&b));
        assert!(!v[0].passed);
        assert!(v[0].reason.contains("undefined at 0"));
    }

    #[test]
    fn exact_boundaries_pass() {
        let c = values(&[("auc", 0.93), ("acc", 0.99)]);
        let b = values(&[("auc", 0.90), ("acc", 0.90)]);
        let mut auc = th("auc", true);
        auc.min_absolute_change = Some(0.03);
        let mut acc = th("acc", true);
        acc.min_relative_change = Some(0.1);
        let v = evaluate(&[auc, acc], &c, Some(&b));
        assert!(v[0].passed, "{}", v[0].reason);
        assert!(v[1].passed, "{}", v[1].reason);
    }

    #[test]
    fn all_limits_must_pass() {
        let c = values(&[("auc", 0.95)]);
        let b = values(&[("auc", 0.94)]);
        let mut t = th("auc", true);
        t.threshold = Some(0.9);
        t.min_absolute_change = Some(0.05);
        let v = evaluate(&[t], &c, Some(&b));
        assert!(!v[0].passed);
        assert!(v[0].reason.contains("minimum absolute change"));
    }

    #[test]
    fn bad_thresholds_are_refused() {
        assert!(check_thresholds(&[], false).is_err());
        assert!(check_thresholds(&[th("auc", true)], false).is_err());
        let mut t = th("auc", true);
        t.min_absolute_change = Some(0.1);
        let e = check_thresholds(&[t.clone()], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no baseline"), "{e}");
        assert!(check_thresholds(&[t.clone()], true).is_ok());
        t.min_absolute_change = Some(-1.0);
        assert!(check_thresholds(&[t], true).is_err());
        let mut r = th("auc", true);
        r.min_relative_change = Some(1.5);
        assert!(check_thresholds(&[r], true).is_err());
        let mut a = th("auc", true);
        a.threshold = Some(0.5);
        assert!(check_thresholds(&[a.clone(), a], false).is_err());
    }

    #[test]
    fn missing_metrics_are_named() {
        let c = values(&[("auc", 0.9)]);
        let mut t = th("f1", true);
        t.threshold = Some(0.5);
        let e = check_present(&[t], &c, "version 2", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no metric `f1`") && e.contains("auc"), "{e}");
        let mut t = th("auc", true);
        t.min_absolute_change = Some(0.1);
        let b = values(&[]);
        let e = check_present(&[t], &c, "version 2", Some((&b, "version 1")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("baseline version 1 has no metric `auc`"), "{e}");
    }
}
