//! A policy's checks (every field a person can get wrong, named) and what a policy says
//! about an event: whether it triggers a retrain of its model.

use mlops_proto::events::v1 as ev;
use mlops_proto::retraining::v1 as pb;

use crate::error::{invalid, Result};
use crate::schedule;

// The states of a retrain; the last four are terminal (see `is_terminal`).
pub const TRIGGERED: &str = "TRIGGERED";
pub const TRAINING: &str = "TRAINING";
pub const TRAINED: &str = "TRAINED";
pub const REGISTERED: &str = "REGISTERED";
pub const EVALUATED: &str = "EVALUATED";
pub const GATED: &str = "GATED";
pub const CANARY: &str = "CANARY";
pub const PROMOTED: &str = "PROMOTED";
pub const GATE_FAILED: &str = "GATE_FAILED";
pub const ROLLED_BACK: &str = "ROLLED_BACK";
pub const FAILED: &str = "FAILED";

/// Whether a retrain in `state` is over.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, PROMOTED | GATE_FAILED | ROLLED_BACK | FAILED)
}

/// The canary's weight when the policy leaves it 0.
pub const DEFAULT_CANARY_WEIGHT: u32 = 10;
/// A trainer's and a canary's time limit when the policy leaves it 0, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;

/// Checks a policy before it is stored.
pub fn validate(p: &pb::Policy) -> Result<()> {
    let model = p.model.trim();
    if model.is_empty() {
        return Err(invalid("policy.model must name a registered model"));
    }
    if p.cooldown_seconds < 0 {
        return Err(invalid(format!(
            "policy.cooldown_seconds must be >= 0, got {}",
            p.cooldown_seconds
        )));
    }
    let trainer = p
        .trainer
        .as_ref()
        .ok_or_else(|| invalid("policy.trainer is required: the command that trains the model"))?;
    if trainer.command.is_empty() || trainer.command[0].trim().is_empty() {
        return Err(invalid(
            "policy.trainer.command must name a program and its arguments, e.g. [\"python\", \"train.py\"]",
        ));
    }
    for key in trainer.parameters.keys() {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(format!(
                "policy.trainer.parameters: `{key}` must be letters, digits and `_` (it becomes MLOPS_PARAM_{})",
                key.to_ascii_uppercase()
            )));
        }
    }
    let data = p.data.as_ref().ok_or_else(|| {
        invalid("policy.data is required: the features, the label and the datasets")
    })?;
    if data.features.is_empty() {
        return Err(invalid(
            "policy.data.features must list the model's inputs as `view:feature`, in order",
        ));
    }
    for f in &data.features {
        match f.split_once(':') {
            Some((v, c)) if !v.is_empty() && !c.is_empty() => {}
            _ => {
                return Err(invalid(format!(
                    "policy.data.features: `{f}` is not a feature reference `view:feature`"
                )))
            }
        }
    }
    if data.label.trim().is_empty() {
        return Err(invalid(
            "policy.data.label must name the label column of the entity tables",
        ));
    }
    for (field, d) in [
        ("training", &data.training),
        ("evaluation", &data.evaluation),
    ] {
        let d = d.as_ref().ok_or_else(|| {
            invalid(format!(
                "policy.data.{field} is required: an entity table with the label"
            ))
        })?;
        if d.entity_table.trim().is_empty() {
            return Err(invalid(format!(
                "policy.data.{field}.entity_table must name a Parquet file on the feature store's offline store"
            )));
        }
        if d.window_seconds < 0 {
            return Err(invalid(format!(
                "policy.data.{field}.window_seconds must be >= 0"
            )));
        }
    }
    if !matches!(data.task.as_str(), "" | "regression" | "classification") {
        return Err(invalid(format!(
            "policy.data.task must be `regression` or `classification`, got `{}`",
            data.task
        )));
    }
    let gate = p
        .gate
        .as_ref()
        .map(|g| g.thresholds.as_slice())
        .unwrap_or(&[]);
    if gate.is_empty() {
        return Err(invalid(
            "policy.gate.thresholds must hold at least one threshold (e.g. an absolute floor on rmse \
             and non-inferiority against the champion)",
        ));
    }
    let known = metrics_of(&data.task);
    let mut seen = std::collections::HashSet::new();
    for t in gate {
        if !known.contains(&t.metric.as_str()) {
            return Err(invalid(format!(
                "policy.gate: metric `{}` is not one the evaluation computes for this task ({})",
                t.metric,
                known.join(", ")
            )));
        }
        // the registry's rule, checked here so the policy fails now, not at its first gate
        if !seen.insert(t.metric.as_str()) {
            return Err(invalid(format!(
                "policy.gate: metric `{}` has two thresholds; put all its limits in one \
                 (e.g. `{}<=0.5,worse=0.02`)",
                t.metric, t.metric
            )));
        }
    }
    if let Some(r) = &p.rollout {
        if r.canary_weight > 100 {
            return Err(invalid(format!(
                "policy.rollout.canary_weight is a percentage (1 to 100), got {}",
                r.canary_weight
            )));
        }
        if let Some(a) = &r.analysis {
            if a.successes_to_promote == 0 {
                return Err(invalid(
                    "policy.rollout.analysis.successes_to_promote must be at least 1: the canary's \
                     analysis is what promotes the candidate",
                ));
            }
            if a.interval_ms < 100 {
                return Err(invalid(
                    "policy.rollout.analysis.interval_ms must be at least 100",
                ));
            }
        }
    }
    if let Some(t) = &p.triggers {
        if t.new_data_min_rows < 0 {
            return Err(invalid("policy.triggers.new_data_min_rows must be >= 0"));
        }
        let tz = schedule::time_zone(&t.time_zone)
            .map_err(|e| invalid(format!("policy.triggers.time_zone: {e}")))?;
        if !t.schedule.trim().is_empty() {
            schedule::Schedule::parse(&t.schedule, tz)
                .map_err(|e| invalid(format!("policy.triggers.schedule: {e}")))?;
        }
    }
    Ok(())
}

/// The metrics the evaluation computes for a task.
pub fn metrics_of(task: &str) -> &'static [&'static str] {
    if task == "classification" {
        &["accuracy"]
    } else {
        &["rmse", "mae", "r2"]
    }
}

/// A trigger a policy accepted: its kind and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: &'static str,
    pub detail: String,
}

/// Whether `DriftDetected` triggers the policy.
pub fn on_drift(p: &pb::Policy, e: &ev::DriftDetected) -> Option<Trigger> {
    let t = p.triggers.as_ref()?;
    let watched = if t.drift_monitors.is_empty() {
        e.model == p.model
    } else {
        t.drift_monitors.contains(&e.monitor)
    };
    (t.drift && watched).then(|| Trigger {
        kind: "drift",
        detail: format!(
            "monitor {} report {}: {:.0}% of columns drifted (limit {:.0}%)",
            e.monitor,
            e.report_id,
            e.share * 100.0,
            e.drift_share * 100.0
        ),
    })
}

/// Whether `PerformanceDegraded` triggers the policy.
pub fn on_performance(p: &pb::Policy, e: &ev::PerformanceDegraded) -> Option<Trigger> {
    let t = p.triggers.as_ref()?;
    (t.performance && e.model == p.model).then(|| Trigger {
        kind: "performance",
        detail: format!(
            "monitor {}: {} {} = {} past {}",
            e.monitor, e.kind, e.metric, e.value, e.threshold
        ),
    })
}

/// Whether `Materialized` triggers the policy.
pub fn on_materialized(p: &pb::Policy, e: &ev::Materialized) -> Option<Trigger> {
    let t = p.triggers.as_ref()?;
    (t.new_data_views.contains(&e.name) && e.rows >= t.new_data_min_rows.max(1)).then(|| Trigger {
        kind: "new_data",
        detail: format!("feature view {}: {} new rows", e.name, e.rows),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn policy() -> pb::Policy {
        pb::Policy {
            model: "m".into(),
            trainer: Some(pb::Trainer {
                command: vec!["train".into()],
                ..Default::default()
            }),
            data: Some(pb::Data {
                features: vec!["v:a".into(), "v:b".into()],
                label: "y".into(),
                training: Some(pb::Dataset {
                    entity_table: "train.parquet".into(),
                    window_seconds: 0,
                }),
                evaluation: Some(pb::Dataset {
                    entity_table: "eval.parquet".into(),
                    window_seconds: 0,
                }),
                task: String::new(),
            }),
            gate: Some(pb::Gate {
                thresholds: vec![mlops_proto::registry::v1::MetricThreshold {
                    metric: "rmse".into(),
                    threshold: Some(1.0),
                    ..Default::default()
                }],
            }),
            triggers: Some(pb::Triggers {
                drift: true,
                performance: false,
                new_data_views: vec!["v".into()],
                new_data_min_rows: 10,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_policy_names_what_is_wrong() {
        assert!(validate(&policy()).is_ok());
        let mut scheduled = policy();
        let t = scheduled.triggers.as_mut().unwrap();
        (t.schedule, t.time_zone) = (" 0 3 * * mon-fri ".into(), "Europe/Paris".into());
        assert!(validate(&scheduled).is_ok());
        type Change = Box<dyn Fn(&mut pb::Policy)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|p| p.model.clear()), "policy.model"),
            (Box::new(|p| p.trainer = None), "policy.trainer is required"),
            (
                Box::new(|p| p.data.as_mut().unwrap().features = vec!["a".into()]),
                "`a` is not a feature reference",
            ),
            (
                Box::new(|p| p.data.as_mut().unwrap().task = "ranking".into()),
                "policy.data.task",
            ),
            (
                Box::new(|p| p.gate.as_mut().unwrap().thresholds[0].metric = "auc".into()),
                "metric `auc` is not one the evaluation computes",
            ),
            (Box::new(|p| p.cooldown_seconds = -1), "cooldown_seconds"),
            (
                Box::new(|p| {
                    let g = p.gate.as_mut().unwrap();
                    g.thresholds.push(g.thresholds[0].clone());
                }),
                "metric `rmse` has two thresholds",
            ),
            (
                Box::new(|p| {
                    p.trainer
                        .as_mut()
                        .unwrap()
                        .parameters
                        .insert("a-b".into(), "1".into());
                }),
                "MLOPS_PARAM_A-B",
            ),
            (
                Box::new(|p| p.triggers.as_mut().unwrap().schedule = "0 25 * * *".into()),
                "policy.triggers.schedule: hour: 25 is out of range (0-23)",
            ),
            (
                Box::new(|p| p.triggers.as_mut().unwrap().time_zone = "Mars/Olympus".into()),
                "policy.triggers.time_zone: `Mars/Olympus` is not an IANA time zone name",
            ),
        ];
        for (change, expected) in cases {
            let mut p = policy();
            change(&mut p);
            let e = validate(&p).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn events_trigger_the_policy_of_their_model() {
        let p = policy();
        let drift = ev::DriftDetected {
            monitor: "mon".into(),
            model: "m".into(),
            share: 0.5,
            drift_share: 0.3,
            ..Default::default()
        };
        assert_eq!(on_drift(&p, &drift).unwrap().kind, "drift");
        let other = ev::DriftDetected {
            model: "other".into(),
            ..drift.clone()
        };
        assert!(on_drift(&p, &other).is_none());
        let perf = ev::PerformanceDegraded {
            model: "m".into(),
            ..Default::default()
        };
        assert!(on_performance(&p, &perf).is_none(), "performance is off");
        let few = ev::Materialized {
            name: "v".into(),
            rows: 9,
            ..Default::default()
        };
        assert!(on_materialized(&p, &few).is_none());
        let enough = ev::Materialized { rows: 10, ..few };
        assert_eq!(on_materialized(&p, &enough).unwrap().kind, "new_data");
    }
}
