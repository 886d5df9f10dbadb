//! `mlops retrain policy|run|status|show`: the retraining service's policies (what
//! starts a retrain of a model and what a retrain does) and its retrains.

use std::time::Duration;

use mlops_proto::inference::v1 as inference;
use mlops_proto::registry::v1::MetricThreshold;
use mlops_proto::retraining::v1 as pb;
use serde_json::json;

use crate::client::RetrainingClient as Client;
use crate::output::{print_json, Output};
use crate::retrain_view::{
    policy_json, policy_row, print_newest, print_policy, print_retrain, print_transition,
    retrain_json, retrain_row, POLICY_HEADER, RETRAIN_HEADER,
};

/// How often `mlops retrain run --wait` asks for the retrain's state.
const POLL: Duration = Duration::from_millis(500);

/// The states a retrain ends in.
pub const TERMINAL: &[&str] = &["PROMOTED", "GATE_FAILED", "ROLLED_BACK", "FAILED"];

/// The retraining service's commands.
#[derive(Debug, clap::Subcommand)]
pub enum RetrainCmd {
    /// Policies: what starts a model's retrain and what a retrain does.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Start a retrain of a model now (a manual trigger); prints its id and state.
    ///
    /// With --wait, follows it until it ends, printing each transition as it appears, and
    /// exits 0 when the candidate was promoted, 3 when it ended otherwise (GATE_FAILED,
    /// ROLLED_BACK, FAILED), 1 on an error.
    Run {
        /// The registered model.
        model: String,
        /// Start even inside the policy's cooldown (never beyond --max-concurrent).
        #[arg(long)]
        force: bool,
        /// Why (recorded as the trigger's detail).
        #[arg(long, default_value = "", hide_default_value = true)]
        reason: String,
        /// Follow the retrain until it is PROMOTED, GATE_FAILED, ROLLED_BACK or FAILED.
        #[arg(long)]
        wait: bool,
    },
    /// A model's retrains, newest first; the newest's transitions and the candidate's
    /// metrics against the champion's.
    Status {
        /// The registered model.
        model: String,
        /// At most this many retrains.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One retrain in full: its transitions, run, versions and metrics.
    Show {
        /// The retrain's id.
        id: String,
    },
}

/// A model's retraining policy.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Create or replace a model's policy from flags; prints it with its new version
    ///
    /// A gate SPEC is a threshold as `mlops models gate` takes it, checked against the
    /// champion on the evaluation set:
    ///   rmse<=0.6               an absolute floor, lower is better
    ///   accuracy>=0.9           an absolute floor, higher is better
    ///   rmse:lower,worse=0.02   at most 0.02 worse than the champion
    ///   auc:higher,abs=0.01     better than the champion by at least 0.01
    ///   rmse<=0.6,worse=0.02    both: one SPEC per metric, with all its limits
    #[command(verbatim_doc_comment)]
    Set(Box<PolicyArgs>),
    /// Every policy, by model.
    List,
    /// A model's policy.
    Show {
        /// The registered model.
        model: String,
    },
    /// Delete a model's policy (retrains under way finish).
    Delete {
        /// The registered model.
        model: String,
    },
}

/// `mlops retrain policy set`: the flags a [`pb::Policy`] is built from.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The registered model retrained, registered and rolled out.
    model: String,
    #[command(flatten, next_help_heading = "Trainer")]
    trainer: TrainerArgs,
    #[command(flatten, next_help_heading = "Data")]
    data: DataArgs,
    /// A threshold the candidate must pass (repeat; see above).
    #[arg(long = "gate", value_name = "SPEC", required = true, value_parser = gate_arg, help_heading = "Gate")]
    gates: Vec<MetricThreshold>,
    #[command(flatten, next_help_heading = "Triggers")]
    triggers: TriggerArgs,
    #[command(flatten, next_help_heading = "Rollout")]
    rollout: RolloutArgs,
}

/// The trainer: a command run with the training set, against a tracking run.
#[derive(Debug, clap::Args)]
struct TrainerArgs {
    /// The trainer's command, one argument per flag, in order (repeat): e.g.
    /// `--trainer python --trainer train.py`.
    #[arg(
        long = "trainer",
        value_name = "ARG",
        required = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
    /// The container image (for the Kubernetes runner).
    #[arg(long)]
    image: Option<String>,
    /// An environment variable of the trainer, KEY=VALUE (repeat).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = pair)]
    env: Vec<(String, String)>,
    /// A parameter, KEY=VALUE (repeat): MLOPS_PARAM_<KEY> in its environment, and a
    /// param of its run.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = pair)]
    params: Vec<(String, String)>,
    /// Kill and fail a training longer than this (default 3600).
    #[arg(long, value_name = "SECS")]
    trainer_timeout: Option<u64>,
    /// Attempts after a failed one, with backoff.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// The tracking experiment of the runs (default retrain-<model>).
    #[arg(long, value_name = "NAME")]
    experiment: Option<String>,
}

/// What the model is trained and evaluated on, joined in the feature store.
#[derive(Debug, clap::Args)]
struct DataArgs {
    /// A feature, `view:feature`, in the order of the model's inputs (repeat).
    #[arg(long = "feature", value_name = "VIEW:FEATURE", required = true, value_parser = feature_arg)]
    features: Vec<String>,
    /// The label column of the entity tables.
    #[arg(long, value_name = "COL", required = true)]
    label: String,
    /// The training entity table: a Parquet path on the feature store's offline store.
    #[arg(long, value_name = "PATH", required = true)]
    train_entities: String,
    /// Only training rows of the last this many seconds (default: every row).
    #[arg(long, value_name = "SECS")]
    train_window: Option<i64>,
    /// The evaluation entity table (the candidate and the champion are evaluated on it).
    #[arg(long, value_name = "PATH", required = true)]
    eval_entities: String,
    /// Only evaluation rows of the last this many seconds (default: every row).
    #[arg(long, value_name = "SECS")]
    eval_window: Option<i64>,
    /// The task: regression (rmse, mae, r2) or classification (accuracy); default
    /// regression.
    #[arg(long, value_parser = ["regression", "classification"])]
    task: Option<String>,
}

/// What starts a retrain besides a manual one, and how often.
#[derive(Debug, clap::Args)]
struct TriggerArgs {
    /// Retrain on DriftDetected of a monitor watching the model.
    #[arg(long)]
    on_drift: bool,
    /// Only this monitor's drift (repeat; implies --on-drift).
    #[arg(long = "drift-monitor", value_name = "NAME")]
    drift_monitors: Vec<String>,
    /// Retrain on PerformanceDegraded (realised or estimated) of a monitor watching the
    /// model.
    #[arg(long)]
    on_performance: bool,
    /// Retrain on a schedule: a cron expression (minute hour day-of-month month
    /// day-of-week, or @hourly, @daily, @weekly, @monthly, @yearly), e.g. "0 3 * * mon".
    #[arg(long, value_name = "CRON")]
    schedule: Option<String>,
    /// The schedule's time zone, an IANA name like Europe/Paris (default UTC).
    #[arg(long, value_name = "TZ", requires = "schedule")]
    time_zone: Option<String>,
    /// Retrain when this feature view is materialized (repeat).
    #[arg(long = "on-new-data", value_name = "VIEW")]
    new_data_views: Vec<String>,
    /// ... with at least this many rows.
    #[arg(long, value_name = "N", requires = "new_data_views")]
    new_data_min_rows: Option<i64>,
    /// At most one retrain started per this many seconds, whatever starts it (but
    /// `mlops retrain run --force`); default none.
    #[arg(long, value_name = "SECS")]
    cooldown: Option<i64>,
    /// Retrains of the model under way at once (default 1).
    #[arg(long, value_name = "N")]
    max_concurrent: Option<u32>,
}

/// How a gated candidate reaches traffic: a canary with the inference service's analysis.
#[derive(Debug, clap::Args)]
struct RolloutArgs {
    /// The canary's percent of the requests, 1 to 100 (default 10).
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..=100))]
    canary_weight: Option<u32>,
    /// Measure the canary every this many milliseconds (at least 100).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    analysis_interval_ms: u64,
    /// The canary's error rate at most this, 0 to 1 (default: no limit).
    #[arg(long, value_name = "F")]
    max_error_rate: Option<f64>,
    /// The canary's error rate at most the champion's plus this (default: no comparison).
    #[arg(long, value_name = "F")]
    max_error_rate_increase: Option<f64>,
    /// The canary's p99 latency at most this many milliseconds (default: no limit).
    #[arg(long, value_name = "F")]
    max_p99_ms: Option<f64>,
    /// The canary's p99 at most the champion's times this (default: no comparison).
    #[arg(long, value_name = "F")]
    max_p99_ratio: Option<f64>,
    /// Requests the canary needs per measurement, fewer is an error (default 1).
    #[arg(long, value_name = "N")]
    min_requests: Option<u64>,
    /// Failed measurements tolerated (default 0: the first rolls back).
    #[arg(long, value_name = "N")]
    failure_limit: Option<u32>,
    /// Measurement errors (too few requests) tolerated in a row.
    #[arg(long, value_name = "N", default_value_t = 0)]
    consecutive_error_limit: u32,
    /// Successful measurements that promote the candidate (at least 1).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    successes_to_promote: u32,
    /// Inject errors into this share (0 to 1) of the canary's answers, to rehearse a
    /// rollback.
    #[arg(long, value_name = "F")]
    fault_error_rate: Option<f64>,
    /// Delay each of the canary's answers by this many microseconds, to rehearse a
    /// rollback.
    #[arg(long, value_name = "N")]
    fault_delay_us: Option<u64>,
    /// Roll back a canary still undecided after this many seconds (default 3600).
    #[arg(long, value_name = "SECS")]
    canary_timeout: Option<u64>,
}

impl PolicyArgs {
    /// The policy the flags describe (its version and time are the service's).
    pub fn policy(&self) -> pb::Policy {
        let t = &self.trainer;
        let d = &self.data;
        let tr = &self.triggers;
        let r = &self.rollout;
        let dataset = |entity_table: &str, window: Option<i64>| pb::Dataset {
            entity_table: entity_table.to_owned(),
            window_seconds: window.unwrap_or(0),
        };
        pb::Policy {
            model: self.model.clone(),
            triggers: Some(pb::Triggers {
                drift: tr.on_drift || !tr.drift_monitors.is_empty(),
                drift_monitors: tr.drift_monitors.clone(),
                performance: tr.on_performance,
                new_data_views: tr.new_data_views.clone(),
                new_data_min_rows: tr.new_data_min_rows.unwrap_or(0),
                schedule: tr.schedule.clone().unwrap_or_default(),
                time_zone: tr.time_zone.clone().unwrap_or_default(),
            }),
            cooldown_seconds: tr.cooldown.unwrap_or(0),
            max_concurrent: tr.max_concurrent.unwrap_or(0),
            trainer: Some(pb::Trainer {
                command: t.command.clone(),
                image: t.image.clone().unwrap_or_default(),
                env: t.env.iter().cloned().collect(),
                parameters: t.params.iter().cloned().collect(),
                timeout_seconds: t.trainer_timeout.unwrap_or(0),
                retries: t.retries,
                experiment: t.experiment.clone().unwrap_or_default(),
            }),
            data: Some(pb::Data {
                features: d.features.clone(),
                label: d.label.clone(),
                training: Some(dataset(&d.train_entities, d.train_window)),
                evaluation: Some(dataset(&d.eval_entities, d.eval_window)),
                task: d.task.clone().unwrap_or_default(),
            }),
            gate: Some(pb::Gate {
                thresholds: self.gates.clone(),
            }),
            rollout: Some(pb::Rollout {
                canary_weight: r.canary_weight.unwrap_or(0),
                analysis: Some(inference::Analysis {
                    interval_ms: r.analysis_interval_ms,
                    max_error_rate: r.max_error_rate.unwrap_or(0.0),
                    max_error_rate_increase: r.max_error_rate_increase.unwrap_or(0.0),
                    max_p99_ms: r.max_p99_ms.unwrap_or(0.0),
                    max_p99_ratio: r.max_p99_ratio.unwrap_or(0.0),
                    min_requests: r.min_requests.unwrap_or(0),
                    failure_limit: r.failure_limit.unwrap_or(0),
                    consecutive_error_limit: r.consecutive_error_limit,
                    successes_to_promote: r.successes_to_promote,
                }),
                fault: (r.fault_error_rate.is_some() || r.fault_delay_us.is_some()).then(|| {
                    inference::Fault {
                        error_rate: r.fault_error_rate.unwrap_or(0.0),
                        delay_us: r.fault_delay_us.unwrap_or(0),
                    }
                }),
                timeout_seconds: r.canary_timeout.unwrap_or(0),
            }),
            version: 0,
            updated_at: 0,
        }
    }
}

/// `KEY=VALUE`, with a key.
fn pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}`: write KEY=VALUE, e.g. EPOCHS=10")),
    }
}

/// A gate threshold, as `mlops models gate --threshold` takes it.
fn gate_arg(s: &str) -> Result<MetricThreshold, String> {
    crate::models::parse_threshold(s).map_err(|e| e.to_string())
}

/// `view:feature`, both named.
fn feature_arg(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((v, f)) if !v.is_empty() && !f.is_empty() => Ok(s.to_owned()),
        _ => Err(format!(
            "`{s}`: a feature is VIEW:FEATURE, e.g. driver_stats:trips_today"
        )),
    }
}

/// Runs a retraining command; returns the exit code.
pub async fn run(mut c: Client, cmd: RetrainCmd, out: Output) -> anyhow::Result<i32> {
    match cmd {
        RetrainCmd::Policy(cmd) => policy(c, cmd, out).await.map(|()| 0),
        RetrainCmd::Run {
            model,
            force,
            reason,
            wait,
        } => {
            let r = c
                .start_retrain(pb::StartRetrainRequest {
                    model,
                    force,
                    reason,
                })
                .await?
                .into_inner()
                .retrain
                .unwrap_or_default();
            if !wait {
                if out.json {
                    print_json(&retrain_json(&r));
                } else {
                    println!("retrain {} of {}: {}", r.id, r.model, r.state);
                }
                return Ok(0);
            }
            if !out.json {
                println!("retrain {} of {} started", r.id, r.model);
            }
            let r = follow(&mut c, r, out).await?;
            if out.json {
                print_json(&retrain_json(&r));
            } else {
                println!("retrain {} ended {}: {}", r.id, r.state, r.reason);
            }
            Ok(if r.state == "PROMOTED" { 0 } else { 3 })
        }
        RetrainCmd::Status { model, limit } => {
            let retrains = out
                .list(
                    c.list_retrains(pb::ListRetrainsRequest {
                        model: model.clone(),
                        limit,
                    }),
                    |r| r.retrains,
                    retrain_json,
                    RETRAIN_HEADER,
                    retrain_row,
                )
                .await?;
            if !out.json {
                match retrains.first() {
                    Some(r) => print_newest(r),
                    None => println!("no retrains of {model} yet"),
                }
            }
            Ok(0)
        }
        RetrainCmd::Show { id } => {
            out.call(
                c.get_retrain(pb::GetRetrainRequest { id }),
                |r| r.retrain.unwrap_or_default(),
                |r| Some(retrain_json(r)),
                print_retrain,
            )
            .await?;
            Ok(0)
        }
    }
}

/// Polls `r` until it reaches a terminal state, printing each new transition (not with
/// `--json`); returns it as it ended.
async fn follow(c: &mut Client, mut r: pb::Retrain, out: Output) -> anyhow::Result<pb::Retrain> {
    let mut shown = 0;
    loop {
        if !out.json {
            for t in r.transitions.iter().skip(shown) {
                print_transition(t);
            }
        }
        shown = shown.max(r.transitions.len());
        if TERMINAL.contains(&r.state.as_str()) {
            return Ok(r);
        }
        tokio::time::sleep(POLL).await;
        r = c
            .get_retrain(pb::GetRetrainRequest { id: r.id.clone() })
            .await?
            .into_inner()
            .retrain
            .unwrap_or_default();
    }
}

async fn policy(mut c: Client, cmd: PolicyCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Set(args) => {
            out.call(
                c.set_policy(pb::SetPolicyRequest {
                    policy: Some(args.policy()),
                }),
                |r| r.policy.unwrap_or_default(),
                |p| Some(policy_json(p)),
                print_policy,
            )
            .await?;
        }
        PolicyCmd::List => {
            out.list(
                c.list_policies(pb::ListPoliciesRequest {}),
                |r| r.policies,
                policy_json,
                POLICY_HEADER,
                policy_row,
            )
            .await?;
        }
        PolicyCmd::Show { model } => {
            out.call(
                c.get_policy(pb::GetPolicyRequest { model }),
                |r| r.policy.unwrap_or_default(),
                |p| Some(policy_json(p)),
                print_policy,
            )
            .await?;
        }
        PolicyCmd::Delete { model } => {
            c.delete_policy(pb::DeletePolicyRequest {
                model: model.clone(),
            })
            .await?;
            if out.json {
                print_json(&json!({"model": model, "deleted": true}));
            } else {
                println!("policy of {model} deleted");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: PolicyArgs,
    }

    /// The required flags, then `extra` (split on whitespace).
    const REQUIRED: &str = "fraud --trainer python --trainer train.py --trainer --epochs=3 \
        --feature tx:amount --feature tx:count_1h --label is_fraud \
        --train-entities entities/train.parquet --eval-entities entities/eval.parquet \
        --gate rmse<=0.6 --gate mae:lower,worse=0.02";

    fn parse_all(args: &str) -> Result<pb::Policy, clap::Error> {
        Cli::try_parse_from(std::iter::once("set").chain(args.split_whitespace()))
            .map(|c| c.args.policy())
    }

    fn parse(extra: &str) -> Result<pb::Policy, clap::Error> {
        parse_all(&format!("{REQUIRED} {extra}"))
    }

    #[test]
    fn flags_build_the_policy() {
        let p = parse("--env A=1 --env B=x=y --param lr=0.1 --retries 2 --train-window 86400 --task classification").unwrap();
        assert_eq!(p.model, "fraud");
        let t = p.trainer.unwrap();
        assert_eq!(t.command, ["python", "train.py", "--epochs=3"]);
        assert_eq!((t.env["A"].as_str(), t.env["B"].as_str()), ("1", "x=y"));
        assert_eq!(t.parameters["lr"], "0.1");
        assert_eq!((t.retries, t.timeout_seconds), (2, 0));
        let d = p.data.unwrap();
        assert_eq!(d.features, ["tx:amount", "tx:count_1h"]);
        assert_eq!(
            (d.label.as_str(), d.task.as_str()),
            ("is_fraud", "classification")
        );
        let train = d.training.unwrap();
        assert_eq!(
            (train.entity_table.as_str(), train.window_seconds),
            ("entities/train.parquet", 86400)
        );
        assert_eq!(d.evaluation.unwrap().window_seconds, 0);
        let g = p.gate.unwrap().thresholds;
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].metric.as_str(), g[0].threshold, g[0].greater_is_better),
            ("rmse", Some(0.6), false)
        );
        assert_eq!(
            (g[1].threshold, g[1].max_absolute_degradation),
            (None, Some(0.02))
        );
        // Nothing triggers it but a person; the analysis has its defaults, no fault.
        assert_eq!(p.triggers.unwrap(), pb::Triggers::default());
        let r = p.rollout.unwrap();
        assert_eq!((r.canary_weight, r.timeout_seconds), (0, 0));
        let a = r.analysis.unwrap();
        assert_eq!((a.interval_ms, a.successes_to_promote), (1000, 3));
        assert_eq!(
            (a.max_error_rate, a.min_requests, a.failure_limit),
            (0.0, 0, 0)
        );
        assert_eq!(r.fault, None);
        assert_eq!(
            parse("").unwrap().data.unwrap().task,
            "",
            "regression by default"
        );
    }

    #[test]
    fn triggers_rollout_and_fault_flags() {
        let p = parse(
            "--drift-monitor fraud-inputs --on-performance --on-new-data tx \
             --new-data-min-rows 1000 --cooldown 600 --max-concurrent 2 --canary-weight 20 \
             --max-error-rate 0.05 --successes-to-promote 5 --fault-delay-us 2000 \
             --canary-timeout 120 --schedule @daily --time-zone Europe/Paris",
        )
        .unwrap();
        let t = p.triggers.unwrap();
        assert_eq!(
            (t.schedule.as_str(), t.time_zone.as_str()),
            ("@daily", "Europe/Paris")
        );
        assert!(t.drift, "--drift-monitor implies --on-drift");
        assert!(t.performance);
        assert_eq!(t.drift_monitors, ["fraud-inputs"]);
        assert_eq!(
            (t.new_data_views, t.new_data_min_rows),
            (vec!["tx".to_owned()], 1000)
        );
        assert_eq!((p.cooldown_seconds, p.max_concurrent), (600, 2));
        let r = p.rollout.unwrap();
        assert_eq!((r.canary_weight, r.timeout_seconds), (20, 120));
        let a = r.analysis.unwrap();
        assert_eq!((a.max_error_rate, a.successes_to_promote), (0.05, 5));
        let f = r.fault.map(|f| (f.error_rate, f.delay_us));
        assert_eq!(f, Some((0.0, 2000)));
        let f = parse("--fault-error-rate 0.5")
            .unwrap()
            .rollout
            .unwrap()
            .fault;
        assert_eq!(f.map(|f| (f.error_rate, f.delay_us)), Some((0.5, 0)));
        assert!(parse("--on-drift").unwrap().triggers.unwrap().drift);
    }

    #[test]
    fn bad_flags_are_refused_with_what_to_write() {
        let err = parse("--env NOEQUALS").unwrap_err().to_string();
        assert!(err.contains("`NOEQUALS`: write KEY=VALUE"), "{err}");
        let err = parse("--param =1").unwrap_err().to_string();
        assert!(err.contains("write KEY=VALUE"), "{err}");
        let err = parse("--gate rmse").unwrap_err().to_string();
        assert!(err.contains("threshold `rmse`"), "{err}");
        assert!(err.contains("which way is better"), "{err}");
        let err = parse("--gate rmse<=abc").unwrap_err().to_string();
        assert!(err.contains("not a number"), "{err}");
        let err = parse("--feature amount").unwrap_err().to_string();
        assert!(err.contains("VIEW:FEATURE"), "{err}");
        for bad in [
            "--canary-weight 0",
            "--successes-to-promote 0",
            "--analysis-interval-ms 10",
            "--task ranking",
            "--new-data-min-rows 5",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for required in [
            "--trainer",
            "--feature",
            "--label",
            "--train-entities",
            "--eval-entities",
            "--gate",
        ] {
            let words: Vec<&str> = REQUIRED.split_whitespace().collect();
            let kept: Vec<&str> = words
                .iter()
                .enumerate()
                .filter(|&(i, w)| *w != required && (i == 0 || words[i - 1] != required))
                .map(|(_, w)| *w)
                .collect();
            assert!(
                parse_all(&kept.join(" ")).is_err(),
                "{required} is required"
            );
        }
    }
}
