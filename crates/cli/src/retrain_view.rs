//! How `mlops retrain` shows policies and retrains: JSON for scripts (the proto's field
//! names), lines and tables for people.

use std::collections::BTreeSet;

use mlops_proto::registry::v1::MetricThreshold;
use mlops_proto::retraining::v1 as pb;
use serde_json::{json, Value};

use crate::table;

/// The columns of `mlops retrain policy list`.
pub const POLICY_HEADER: &[&str] = &["model", "version", "triggers", "trainer", "updated"];

/// The columns of `mlops retrain status`.
pub const RETRAIN_HEADER: &[&str] = &["id", "state", "trigger", "version", "champion", "updated"];

fn threshold_json(t: &MetricThreshold) -> Value {
    json!({
        "metric": t.metric,
        "threshold": t.threshold,
        "min_absolute_change": t.min_absolute_change,
        "min_relative_change": t.min_relative_change,
        "greater_is_better": t.greater_is_better,
        "max_absolute_degradation": t.max_absolute_degradation,
    })
}

/// A policy as JSON for scripts.
pub fn policy_json(p: &pb::Policy) -> Value {
    let dataset = |d: &Option<pb::Dataset>| {
        d.as_ref()
            .map(|d| json!({"entity_table": d.entity_table, "window_seconds": d.window_seconds}))
    };
    json!({
        "model": p.model,
        "triggers": p.triggers.as_ref().map(|t| json!({
            "drift": t.drift, "drift_monitors": t.drift_monitors, "performance": t.performance,
            "new_data_views": t.new_data_views, "new_data_min_rows": t.new_data_min_rows,
            "schedule": t.schedule, "time_zone": t.time_zone,
        })),
        "cooldown_seconds": p.cooldown_seconds,
        "max_concurrent": p.max_concurrent,
        "trainer": p.trainer.as_ref().map(|t| json!({
            "command": t.command, "image": t.image, "env": t.env, "parameters": t.parameters,
            "timeout_seconds": t.timeout_seconds, "retries": t.retries,
            "experiment": t.experiment,
        })),
        "data": p.data.as_ref().map(|d| json!({
            "features": d.features, "label": d.label, "training": dataset(&d.training),
            "evaluation": dataset(&d.evaluation), "task": d.task,
        })),
        "gate": p.gate.as_ref().map(|g| json!({
            "thresholds": g.thresholds.iter().map(threshold_json).collect::<Vec<_>>(),
        })),
        "rollout": p.rollout.as_ref().map(|r| json!({
            "canary_weight": r.canary_weight,
            "analysis": r.analysis.as_ref().map(|a| json!({
                "interval_ms": a.interval_ms, "max_error_rate": a.max_error_rate,
                "max_error_rate_increase": a.max_error_rate_increase,
                "max_p99_ms": a.max_p99_ms, "max_p99_ratio": a.max_p99_ratio,
                "min_requests": a.min_requests, "failure_limit": a.failure_limit,
                "consecutive_error_limit": a.consecutive_error_limit,
                "successes_to_promote": a.successes_to_promote,
            })),
            "fault": r.fault.as_ref().map(|f| json!({
                "error_rate": f.error_rate, "delay_us": f.delay_us,
            })),
            "timeout_seconds": r.timeout_seconds,
        })),
        "version": p.version,
        "updated_at": p.updated_at,
    })
}

/// A retrain as JSON for scripts.
pub fn retrain_json(r: &pb::Retrain) -> Value {
    json!({
        "id": r.id,
        "model": r.model,
        "state": r.state,
        "trigger": r.trigger,
        "trigger_detail": r.trigger_detail,
        "policy_version": r.policy_version,
        "run_id": r.run_id,
        "version": r.version,
        "champion_version": r.champion_version,
        "reason": r.reason,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "transitions": r.transitions.iter().map(|t| json!({
            "state": t.state, "time": t.time, "reason": t.reason,
        })).collect::<Vec<_>>(),
        "candidate_metrics": r.candidate_metrics,
        "champion_metrics": r.champion_metrics,
        "attempts": r.attempts,
    })
}

/// A threshold as `--gate` takes it: `rmse<=0.6`, `rmse:lower,worse=0.02`.
pub fn threshold_spec(t: &MetricThreshold) -> String {
    let mut s = match (t.threshold, t.greater_is_better) {
        (Some(v), true) => format!("{}>={v}", t.metric),
        (Some(v), false) => format!("{}<={v}", t.metric),
        (None, true) => format!("{}:higher", t.metric),
        (None, false) => format!("{}:lower", t.metric),
    };
    for (name, v) in [
        ("abs", t.min_absolute_change),
        ("rel", t.min_relative_change),
        ("worse", t.max_absolute_degradation),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(",{name}={v}"));
        }
    }
    s
}

/// `drift (a, b), performance, new data in tx (>= 1000 rows)`, or `manual only`.
fn triggers_text(t: Option<&pb::Triggers>) -> String {
    let t = t.cloned().unwrap_or_default();
    let mut parts = Vec::new();
    if t.drift {
        parts.push(if t.drift_monitors.is_empty() {
            "drift".to_owned()
        } else {
            format!("drift ({})", t.drift_monitors.join(", "))
        });
    }
    if t.performance {
        parts.push("performance".to_owned());
    }
    if !t.new_data_views.is_empty() {
        let rows = if t.new_data_min_rows > 0 {
            format!(" (>= {} rows)", t.new_data_min_rows)
        } else {
            String::new()
        };
        parts.push(format!("new data in {}{rows}", t.new_data_views.join(", ")));
    }
    if !t.schedule.is_empty() {
        let tz = if t.time_zone.is_empty() {
            "UTC"
        } else {
            t.time_zone.as_str()
        };
        parts.push(format!("schedule `{}` ({tz})", t.schedule));
    }
    if parts.is_empty() {
        "manual only".to_owned()
    } else {
        parts.join(", ")
    }
}

fn pairs(m: &std::collections::HashMap<String, String>) -> String {
    let mut kv: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    kv.sort();
    kv.join(" ")
}

/// `n` seconds, or `default` when it is 0.
fn secs(n: u64, default: &str) -> String {
    if n == 0 {
        default.to_owned()
    } else {
        format!("{n}s")
    }
}

/// A row of `mlops retrain policy list`.
pub fn policy_row(p: &pb::Policy) -> Vec<String> {
    vec![
        p.model.clone(),
        format!("v{}", p.version),
        triggers_text(p.triggers.as_ref()),
        p.trainer
            .as_ref()
            .map_or(String::new(), |t| t.command.join(" ")),
        table::time(Some(p.updated_at)),
    ]
}

/// A policy for people.
pub fn print_policy(p: &pb::Policy) {
    println!(
        "policy of {} v{} (updated {})",
        p.model,
        p.version,
        table::time(Some(p.updated_at))
    );
    println!("triggers:    {}", triggers_text(p.triggers.as_ref()));
    println!(
        "limits:      cooldown {}, at most {} at once",
        secs(p.cooldown_seconds.max(0) as u64, "none"),
        p.max_concurrent.max(1)
    );
    let t = p.trainer.clone().unwrap_or_default();
    println!("trainer:     {}", t.command.join(" "));
    if !t.image.is_empty() {
        println!("  image:     {}", t.image);
    }
    if !t.env.is_empty() {
        println!("  env:       {}", pairs(&t.env));
    }
    if !t.parameters.is_empty() {
        println!("  params:    {}", pairs(&t.parameters));
    }
    println!(
        "  timeout {}, retries {}, experiment {}",
        secs(t.timeout_seconds, "3600s"),
        t.retries,
        if t.experiment.is_empty() {
            format!("retrain-{}", p.model)
        } else {
            t.experiment
        }
    );
    let d = p.data.clone().unwrap_or_default();
    println!(
        "data:        {} -> {} ({})",
        d.features.join(", "),
        d.label,
        if d.task.is_empty() {
            "regression"
        } else {
            &d.task
        }
    );
    for (name, set) in [("training:", &d.training), ("evaluation:", &d.evaluation)] {
        let set = set.clone().unwrap_or_default();
        let window = if set.window_seconds > 0 {
            format!("the last {}s", set.window_seconds)
        } else {
            "every row".to_owned()
        };
        println!("  {name:<12}{} ({window})", set.entity_table);
    }
    let gate = p.gate.clone().unwrap_or_default().thresholds;
    let gate: Vec<_> = gate.iter().map(threshold_spec).collect();
    println!("gate:        {}", gate.join("; "));
    let r = p.rollout.unwrap_or_default();
    let weight = if r.canary_weight == 0 {
        10
    } else {
        r.canary_weight
    };
    println!(
        "rollout:     canary {weight}%, undecided after {} rolled back",
        secs(r.timeout_seconds, "3600s")
    );
    if let Some(a) = &r.analysis {
        let mut limits = Vec::new();
        for (name, v) in [
            ("error rate <=", a.max_error_rate),
            ("error rate increase <=", a.max_error_rate_increase),
            ("p99 ms <=", a.max_p99_ms),
            ("p99 ratio <=", a.max_p99_ratio),
        ] {
            if v > 0.0 {
                limits.push(format!("{name} {v}"));
            }
        }
        println!(
            "  analysis:  every {}ms{}; min {} requests, {} failures, {} errors in a row; promote after {}",
            a.interval_ms,
            if limits.is_empty() {
                String::new()
            } else {
                format!(", {}", limits.join(", "))
            },
            a.min_requests.max(1),
            a.failure_limit,
            a.consecutive_error_limit,
            a.successes_to_promote
        );
    }
    if let Some(f) = &r.fault {
        println!(
            "  fault:     error rate {}, delay {}us",
            f.error_rate, f.delay_us
        );
    }
}

/// The first 8 characters of an id.
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn version(v: i64) -> String {
    if v > 0 {
        format!("v{v}")
    } else {
        "-".to_owned()
    }
}

fn trigger_text(r: &pb::Retrain) -> String {
    if r.trigger_detail.is_empty() {
        r.trigger.clone()
    } else {
        format!("{} ({})", r.trigger, r.trigger_detail)
    }
}

/// A row of `mlops retrain status`.
pub fn retrain_row(r: &pb::Retrain) -> Vec<String> {
    vec![
        short(&r.id),
        r.state.clone(),
        trigger_text(r),
        version(r.version),
        version(r.champion_version),
        table::time(Some(r.updated_at)),
    ]
}

/// A transition on one line: time, state, reason.
pub fn print_transition(t: &pb::Transition) {
    println!(
        "  {}  {:<11}  {}",
        table::time(Some(t.time)),
        t.state,
        t.reason
    );
}

/// The candidate's metrics against the champion's.
fn print_metrics(r: &pb::Retrain) {
    let names: BTreeSet<&String> = r
        .candidate_metrics
        .keys()
        .chain(r.champion_metrics.keys())
        .collect();
    if names.is_empty() {
        return;
    }
    let cell = |v: Option<&f64>| v.map_or("-".to_owned(), |v| format!("{v:.6}"));
    let rows: Vec<Vec<String>> = names
        .into_iter()
        .map(|m| {
            let (c, b) = (r.candidate_metrics.get(m), r.champion_metrics.get(m));
            vec![
                m.clone(),
                cell(c),
                cell(b),
                match (c, b) {
                    (Some(c), Some(b)) => format!("{:+.6}", c - b),
                    _ => "-".to_owned(),
                },
            ]
        })
        .collect();
    println!();
    table::print(
        &[
            "metric",
            &format!("candidate {}", version(r.version)),
            &format!("champion {}", version(r.champion_version)),
            "difference",
        ],
        &rows,
    );
}

/// The newest retrain under `mlops retrain status`'s table.
pub fn print_newest(r: &pb::Retrain) {
    println!();
    println!("newest: {} {} ({})", r.id, r.state, r.reason);
    for t in &r.transitions {
        print_transition(t);
    }
    print_metrics(r);
}

/// A retrain in full for people.
pub fn print_retrain(r: &pb::Retrain) {
    println!("id:          {}", r.id);
    println!("model:       {}", r.model);
    println!("state:       {}", r.state);
    if !r.reason.is_empty() {
        println!("reason:      {}", r.reason);
    }
    println!("trigger:     {}", trigger_text(r));
    println!("policy:      v{}", r.policy_version);
    println!(
        "run:         {}",
        if r.run_id.is_empty() { "-" } else { &r.run_id }
    );
    println!("version:     {}", version(r.version));
    println!("champion:    {}", version(r.champion_version));
    println!("attempts:    {}", r.attempts);
    println!("created:     {}", table::time(Some(r.created_at)));
    println!("updated:     {}", table::time(Some(r.updated_at)));
    println!("transitions:");
    for t in &r.transitions {
        print_transition(t);
    }
    print_metrics(r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_prints_as_the_gate_spec_it_came_from() {
        for spec in [
            "rmse<=0.6",
            "accuracy>=0.9",
            "rmse:lower,worse=0.02",
            "auc:higher,abs=0.01,rel=0.1",
        ] {
            let t = crate::models::parse_threshold(spec).unwrap();
            assert_eq!(threshold_spec(&t), spec);
        }
    }

    #[test]
    fn policy_json_has_the_proto_field_names() {
        let p = pb::Policy {
            model: "fraud".into(),
            cooldown_seconds: 60,
            trainer: Some(pb::Trainer {
                command: vec!["python".into(), "train.py".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = policy_json(&p);
        assert_eq!(v["cooldown_seconds"], 60);
        assert_eq!(v["trainer"]["command"][1], "train.py");
        assert_eq!(v["trainer"]["timeout_seconds"], 0);
        assert!(v["rollout"].is_null());
        let r = retrain_json(&pb::Retrain {
            id: "abc".into(),
            champion_version: 3,
            ..Default::default()
        });
        assert_eq!(
            (r["id"].as_str(), r["champion_version"].as_i64()),
            (Some("abc"), Some(3))
        );
    }
}
