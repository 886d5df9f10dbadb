//! Automatic analysis of a deployment's traffic variants, with Argo Rollouts' semantics,
//! in-process: every interval each variant's requests since the last measurement (its
//! [`Window`](crate::window::Window)) are compared with the analysis' limits and with the
//! stable target's; failed measurements past `failure_limit`, or errors in a row past
//! `consecutive_error_limit`, roll the deployment back; `successes_to_promote` successful
//! ones promote a single variant. Every measurement and decision is an event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_proto::events::v1 as ev;
use mlops_runtime::shutdown::CancellationToken;

use crate::manager::{Manager, Split};
use crate::traffic::AnalysisSpec;
use crate::window::Measured;

/// How often the task looks for measurements that are due.
const TICK: Duration = Duration::from_millis(50);

/// A measurement's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every limit held.
    Successful,
    /// A limit was passed.
    Failed,
    /// Too few requests to measure.
    Error,
}

impl Outcome {
    /// Its name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Successful => "successful",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
        }
    }
}

/// Compares each variant's measurement with `spec`'s limits and with the stable target's.
pub fn evaluate(
    spec: &AnalysisSpec,
    stable: &Measured,
    variants: &[(String, Measured)],
) -> (Outcome, Vec<ev::AnalysisFinding>) {
    let mut findings = vec![];
    let mut outcome = Outcome::Successful;
    for (name, m) in variants {
        let mut finding = |metric: &str, value: f64, limit: f64, passed: bool| {
            findings.push(ev::AnalysisFinding {
                variant: name.clone(),
                metric: metric.into(),
                value,
                limit,
                passed,
            });
            passed
        };
        if m.requests() < spec.min_requests {
            finding(
                "requests",
                m.requests() as f64,
                spec.min_requests as f64,
                false,
            );
            if outcome == Outcome::Successful {
                outcome = Outcome::Error;
            }
            continue;
        }
        let mut passed = true;
        if spec.max_error_rate > 0.0 {
            let r = m.error_rate();
            passed &= finding(
                "error_rate",
                r,
                spec.max_error_rate,
                r <= spec.max_error_rate,
            );
        }
        if spec.max_error_rate_increase > 0.0 {
            let d = m.error_rate() - stable.error_rate();
            passed &= finding(
                "error_rate_increase",
                d,
                spec.max_error_rate_increase,
                d <= spec.max_error_rate_increase,
            );
        }
        if spec.max_p99_ms > 0.0 {
            passed &= finding(
                "p99_ms",
                m.p99_ms,
                spec.max_p99_ms,
                m.p99_ms <= spec.max_p99_ms,
            );
        }
        if spec.max_p99_ratio > 0.0 && stable.requests() >= spec.min_requests && stable.p99_ms > 0.0
        {
            let ratio = m.p99_ms / stable.p99_ms;
            passed &= finding(
                "p99_ratio",
                ratio,
                spec.max_p99_ratio,
                ratio <= spec.max_p99_ratio,
            );
        }
        if !passed {
            outcome = Outcome::Failed;
        }
    }
    (outcome, findings)
}

/// The reason a rollback gives: the failed findings.
pub fn reason(findings: &[ev::AnalysisFinding]) -> String {
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| !f.passed)
        .map(|f| {
            format!(
                "{} {} {:.4} over {:.4}",
                f.variant, f.metric, f.value, f.limit
            )
        })
        .collect();
    format!("analysis: {}", failed.join("; "))
}

/// One deployment's analysis so far.
struct Progress {
    split: Arc<Split>,
    due: Instant,
    failures: u32,
    errors_in_row: u32,
    successes: u32,
}

/// Measures every deployment that has an analysis, when due, until `stop`.
pub async fn run(manager: Manager, stop: CancellationToken) -> anyhow::Result<()> {
    let mut progress: HashMap<String, Progress> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(TICK) => {}
        }
        let analyzed = manager.analyzed();
        progress.retain(|name, p| {
            analyzed
                .iter()
                .any(|(n, _, s)| n == name && Arc::ptr_eq(s, &p.split))
        });
        for (name, spec, split) in analyzed {
            let interval = Duration::from_millis(spec.interval_ms);
            let p = progress.entry(name.clone()).or_insert_with(|| {
                // A new split: its measurements start now.
                manager.take_windows(&name, &split);
                Progress {
                    split: split.clone(),
                    due: Instant::now() + interval,
                    failures: 0,
                    errors_in_row: 0,
                    successes: 0,
                }
            });
            if Instant::now() < p.due {
                continue;
            }
            p.due += interval;
            let Some((stable, variants)) = manager.take_windows(&name, &split) else {
                continue;
            };
            let (outcome, findings) = evaluate(&spec, &stable, &variants);
            match outcome {
                Outcome::Successful => {
                    p.successes += 1;
                    p.errors_in_row = 0;
                }
                Outcome::Failed => {
                    p.failures += 1;
                    p.errors_in_row = 0;
                }
                Outcome::Error => p.errors_in_row += 1,
            }
            manager
                .analyzed_event(
                    &name,
                    outcome.as_str(),
                    &findings,
                    (p.failures, p.errors_in_row, p.successes),
                )
                .await;
            if p.failures > spec.failure_limit || p.errors_in_row > spec.consecutive_error_limit {
                let why = if p.failures > spec.failure_limit {
                    reason(&findings)
                } else {
                    format!(
                        "analysis: {} measurements in a row without enough requests ({})",
                        p.errors_in_row,
                        reason(&findings)
                    )
                };
                if let Err(e) = manager.rollback_with(&name, &why, findings).await {
                    tracing::error!(model = %name, error = %e, "the analysis could not roll back");
                }
                progress.remove(&name);
            } else if spec.successes_to_promote > 0
                && p.successes >= spec.successes_to_promote
                && split.variants.len() == 1
            {
                match manager.promote(&name, findings).await {
                    Ok(()) => {
                        progress.remove(&name);
                    }
                    // Blocked (an event says why): try again after as many successes.
                    Err(e) => {
                        tracing::warn!(model = %name, error = %e, "the analysis could not promote");
                        p.successes = 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ok: u64, failed: u64, p99_ms: f64) -> Measured {
        Measured { ok, failed, p99_ms }
    }

    fn spec() -> AnalysisSpec {
        AnalysisSpec {
            interval_ms: 1000,
            max_error_rate: 0.01,
            max_p99_ratio: 2.0,
            min_requests: 20,
            ..Default::default()
        }
    }

    #[test]
    fn limits_and_comparisons_decide_the_outcome() {
        let stable = m(1000, 0, 2.0);
        let (o, f) = evaluate(&spec(), &stable, &[("canary".into(), m(95, 5, 2.0))]);
        assert_eq!(o, Outcome::Failed);
        let rate = f.iter().find(|f| f.metric == "error_rate").unwrap();
        assert!(!rate.passed && (rate.value - 0.05).abs() < 1e-9 && rate.limit == 0.01);
        assert!(
            reason(&f).contains("canary error_rate 0.0500 over 0.0100"),
            "{}",
            reason(&f)
        );
        let (o, _) = evaluate(&spec(), &stable, &[("canary".into(), m(100, 0, 5.0))]);
        assert_eq!(o, Outcome::Failed, "p99 2.5x the stable's");
        let (o, f) = evaluate(&spec(), &stable, &[("canary".into(), m(100, 0, 3.0))]);
        assert_eq!(o, Outcome::Successful, "{f:?}");
        let (o, _) = evaluate(&spec(), &stable, &[("canary".into(), m(5, 0, 1.0))]);
        assert_eq!(o, Outcome::Error, "too few requests");
        // Without enough stable requests, the ratio is not compared.
        let (o, f) = evaluate(&spec(), &m(3, 0, 1.0), &[("canary".into(), m(100, 0, 9.0))]);
        assert_eq!(o, Outcome::Successful);
        assert!(f.iter().all(|f| f.metric != "p99_ratio"));
    }
}
