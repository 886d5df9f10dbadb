//! `mlops serve deploy|undeploy|describe|list`: deployments, over the inference service's
//! own `mlops.inference.v1.DeploymentService` (on the same port as Triton's protocol).

use mlops_proto::inference::v1 as pb;
use pb::target::Choice;
use serde_json::{json, Value};

use crate::client::DeploymentClient as Client;
use crate::output::Output;
use crate::serve::Serving;

#[derive(Debug, clap::Args)]
pub struct Deploy {
    /// The registered model's name.
    model: String,
    /// Follow this alias: when it moves in the registry, the new version is loaded, warmed
    /// up and swapped in (the default: champion, else the newest READY version).
    #[arg(long, conflicts_with = "version")]
    alias: Option<String>,
    /// Serve this version, whatever the aliases do.
    #[arg(long)]
    version: Option<i64>,
    #[command(flatten)]
    serving: Serving,
}

impl Deploy {
    fn request(&self) -> pb::DeployRequest {
        use mlops_proto::triton::model_repository_parameter::ParameterChoice as P;
        let choice = match (&self.alias, self.version) {
            (Some(a), _) => Some(Choice::Alias(a.clone())),
            (None, Some(v)) => Some(Choice::Version(v)),
            (None, None) => None,
        };
        pb::DeployRequest {
            name: self.model.clone(),
            target: Some(pb::Target { choice }),
            parameters: self
                .serving
                .pairs()
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        P::BoolParam(b) => b.to_string(),
                        P::Int64Param(i) => i.to_string(),
                        P::StringParam(s) => s,
                        P::BytesParam(b) => String::from_utf8_lossy(&b).into_owned(),
                    };
                    (k.to_owned(), v)
                })
                .collect(),
        }
    }

    pub async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let call = c.deploy(self.request());
        show(
            out,
            call,
            |r| r.deployment,
            |d| {
                println!(
                    "{} serves version {} ({}, {})",
                    d.name,
                    d.version,
                    target_text(d),
                    d.state
                )
            },
        )
        .await
    }
}

#[derive(Debug, clap::Args)]
pub struct TrafficCmd {
    /// The model's name.
    model: String,
    /// A canary: this version (a number) or alias gets --weight percent of the requests.
    #[arg(long, value_name = "VERSION|ALIAS", conflicts_with = "variant")]
    canary: Option<String>,
    /// The canary's percent of requests.
    #[arg(long, default_value_t = 10, requires = "canary", value_parser = clap::value_parser!(u32).range(0..=100))]
    weight: u32,
    /// An A/B variant, NAME=VERSION|ALIAS:WEIGHT (repeatable), e.g. b=3:50; the stable
    /// target gets what the variants leave.
    #[arg(long, value_name = "NAME=TARGET:WEIGHT")]
    variant: Vec<String>,
    /// A shadow: this version or alias gets a copy of requests; its answers are logged,
    /// never returned.
    #[arg(long, value_name = "VERSION|ALIAS")]
    shadow: Option<String>,
    /// The share of requests the shadow gets, above 0 and at most 1.
    #[arg(long, default_value_t = 1.0, requires = "shadow")]
    shadow_share: f64,
    /// The header that routes a request to a variant by name, or sticks a caller (any other
    /// value, e.g. a user id) to one; default mlops-route.
    #[arg(long, value_name = "HEADER")]
    route_header: Option<String>,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

/// The automatic analysis of the variants (Argo Rollouts' semantics): on when --analyze-every is given.
#[derive(Debug, clap::Args)]
struct AnalysisArgs {
    /// Measure the variants every this many milliseconds, and roll back or promote by the limits.
    #[arg(long, value_name = "MS")]
    analyze_every: Option<u64>,
    /// A variant's error rate at most this (0 to 1).
    #[arg(long, requires = "analyze_every", default_value_t = 0.0)]
    max_error_rate: f64,
    /// A variant's error rate at most the stable target's plus this.
    #[arg(long, requires = "analyze_every", default_value_t = 0.0)]
    max_error_rate_increase: f64,
    /// A variant's p99 latency at most this many milliseconds.
    #[arg(long, requires = "analyze_every", default_value_t = 0.0)]
    max_p99_ms: f64,
    /// A variant's p99 at most the stable target's times this.
    #[arg(long, requires = "analyze_every", default_value_t = 0.0)]
    max_p99_ratio: f64,
    /// Requests a variant needs per measurement (fewer: an error).
    #[arg(long, requires = "analyze_every", default_value_t = 20)]
    min_requests: u64,
    /// Failed measurements tolerated before a rollback.
    #[arg(long, requires = "analyze_every", default_value_t = 0)]
    failure_limit: u32,
    /// Measurements without enough requests tolerated in a row before a rollback.
    #[arg(long, requires = "analyze_every", default_value_t = 4)]
    consecutive_error_limit: u32,
    /// Successful measurements that promote a single variant (its alias moves); 0: never.
    #[arg(long, requires = "analyze_every", default_value_t = 0)]
    promote_after: u32,
}

impl AnalysisArgs {
    fn analysis(&self) -> Option<pb::Analysis> {
        Some(pb::Analysis {
            interval_ms: self.analyze_every?,
            max_error_rate: self.max_error_rate,
            max_error_rate_increase: self.max_error_rate_increase,
            max_p99_ms: self.max_p99_ms,
            max_p99_ratio: self.max_p99_ratio,
            min_requests: self.min_requests,
            failure_limit: self.failure_limit,
            consecutive_error_limit: self.consecutive_error_limit,
            successes_to_promote: self.promote_after,
        })
    }
}

/// `3` or `v3`: that version; anything else: an alias.
fn target_of(s: &str) -> pb::Target {
    let digits = s.strip_prefix('v').unwrap_or(s);
    let choice = match digits.parse::<i64>() {
        Ok(v) => Choice::Version(v),
        Err(_) => Choice::Alias(s.to_owned()),
    };
    pb::Target {
        choice: Some(choice),
    }
}

impl TrafficCmd {
    fn request(&self) -> anyhow::Result<pb::SetTrafficRequest> {
        let mut variants = Vec::new();
        if let Some(c) = &self.canary {
            variants.push(pb::Variant {
                name: "canary".into(),
                target: Some(target_of(c)),
                weight: self.weight,
                fault: None,
            });
        }
        for v in &self.variant {
            let parsed = v.split_once('=').and_then(|(name, rest)| {
                let (target, weight) = rest.rsplit_once(':')?;
                Some((name, target, weight.parse::<u32>().ok()?))
            });
            let Some((name, target, weight)) = parsed else {
                anyhow::bail!("--variant {v:?}: write NAME=VERSION|ALIAS:WEIGHT, e.g. b=3:50");
            };
            variants.push(pb::Variant {
                name: name.into(),
                target: Some(target_of(target)),
                weight,
                fault: None,
            });
        }
        Ok(pb::SetTrafficRequest {
            name: self.model.clone(),
            traffic: Some(pb::Traffic {
                variants,
                shadow: self.shadow.as_ref().map(|s| pb::Shadow {
                    target: Some(target_of(s)),
                    share: self.shadow_share,
                    fault: None,
                }),
                route_header: self.route_header.clone().unwrap_or_default(),
                analysis: self.analysis.analysis(),
            }),
        })
    }

    pub async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let call = c.set_traffic(self.request()?);
        show(out, call, |r| r.deployment, print_deployment).await
    }
}

#[derive(Debug, clap::Args)]
pub struct Rollback {
    /// The model's name.
    model: String,
}

impl Rollback {
    pub async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let call = c.rollback(pb::RollbackRequest { name: self.model });
        show(
            out,
            call,
            |r| r.deployment,
            |d| println!("{} serves version {} on all its traffic", d.name, d.version),
        )
        .await
    }
}

#[derive(Debug, clap::Args)]
pub struct Undeploy {
    /// The model's name.
    model: String,
}

impl Undeploy {
    pub async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let name = self.model;
        out.call(
            c.undeploy(pb::UndeployRequest { name: name.clone() }),
            drop,
            |_| Some(json!({"name": name, "undeployed": true})),
            |_| println!("undeployed {name}"),
        )
        .await
    }
}

#[derive(Debug, clap::Args)]
pub struct Describe {
    /// The model's name.
    model: String,
}

impl Describe {
    pub async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let call = c.get_deployment(pb::GetDeploymentRequest { name: self.model });
        show(out, call, |r| r.deployment, print_deployment).await
    }
}

/// Awaits `call` and prints the deployment it answers (`deployment` takes it from the
/// answer): as JSON with `--json`, else with `text`.
async fn show<R>(
    out: Output,
    call: impl std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    deployment: fn(R) -> Option<pb::Deployment>,
    text: impl FnOnce(&pb::Deployment),
) -> anyhow::Result<()> {
    out.call(
        call,
        |r| deployment(r).unwrap_or_default(),
        |d| Some(deployment_json(d)),
        text,
    )
    .await?;
    Ok(())
}

/// Every deployment, as a table.
pub async fn list(mut c: Client, out: Output) -> anyhow::Result<()> {
    out.list(
        c.list_deployments(pb::ListDeploymentsRequest {}),
        |r| r.deployments,
        deployment_json,
        &["NAME", "TARGET", "VERSION", "STATE", "REASON"],
        |d| {
            vec![
                d.name.clone(),
                target_text(d),
                if d.version == 0 {
                    "-".into()
                } else {
                    d.version.to_string()
                },
                d.state.clone(),
                if d.reason.is_empty() {
                    "-".into()
                } else {
                    d.reason.clone()
                },
            ]
        },
    )
    .await?;
    Ok(())
}

/// `alias champion`, `version 3`, or `champion, else latest`.
fn target_text(d: &pb::Deployment) -> String {
    match d.target.as_ref().and_then(|t| t.choice.as_ref()) {
        Some(Choice::Alias(a)) => format!("alias {a}"),
        Some(Choice::Version(v)) => format!("version {v}"),
        None => "champion, else latest".into(),
    }
}

fn target_json(t: &pb::Target) -> Value {
    match t.choice.as_ref() {
        Some(Choice::Alias(a)) => json!({"alias": a}),
        Some(Choice::Version(v)) => json!({"version": v}),
        None => json!({}),
    }
}

fn deployment_json(d: &pb::Deployment) -> Value {
    let target = d.target.as_ref().map(target_json).unwrap_or(json!({}));
    json!({
        "name": d.name,
        "model_id": d.model_id,
        "target": target,
        "state": d.state,
        "version": d.version,
        "reason": d.reason,
        "parameters": d.parameters,
        "recent_errors": d.recent_errors.iter().map(|e| json!({
            "time": e.time, "version": e.version, "message": e.message,
        })).collect::<Vec<_>>(),
        "updated_at": d.updated_at,
        "variant_versions": d.variant_versions,
        "previous_version": d.previous_version,
        "traffic": d.traffic.as_ref().map(|t| json!({
            "variants": t.variants.iter().map(|v| json!({
                "name": v.name,
                "target": v.target.as_ref().map(target_json),
                "weight": v.weight,
            })).collect::<Vec<_>>(),
            "shadow": t.shadow.as_ref().map(|s| json!({
                "target": s.target.as_ref().map(target_json),
                "share": s.share,
            })),
            "route_header": t.route_header,
        })),
    })
}

fn print_deployment(d: &pb::Deployment) {
    println!("name:      {}", d.name);
    println!("model id:  {}", d.model_id);
    println!("target:    {}", target_text(d));
    println!("state:     {}", d.state);
    println!("version:   {}", d.version);
    if d.previous_version > 0 {
        println!("rollback:  to version {}", d.previous_version);
    }
    if let Some(t) = d
        .traffic
        .as_ref()
        .filter(|t| !t.variants.is_empty() || t.shadow.is_some())
    {
        let version = |name: &str| d.variant_versions.get(name).copied().unwrap_or(0);
        let rest = 100 - t.variants.iter().map(|v| v.weight).sum::<u32>();
        println!("traffic:   stable v{} {rest}%", d.version);
        for v in &t.variants {
            println!("           {} v{} {}%", v.name, version(&v.name), v.weight);
        }
        if let Some(s) = &t.shadow {
            println!(
                "           shadow v{} (a copy of {}% of requests)",
                version("shadow"),
                s.share * 100.0
            );
        }
    }
    if !d.reason.is_empty() {
        println!("reason:    {}", d.reason);
    }
    let mut params: Vec<_> = d.parameters.iter().collect();
    params.sort();
    for (k, v) in params {
        println!("  {k} = {v}");
    }
    if !d.recent_errors.is_empty() {
        println!("recent errors (newest first):");
        for e in &d.recent_errors {
            println!("  {} v{}: {}", e.time, e.version, e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        deploy: Deploy,
    }

    #[derive(Debug, Parser)]
    struct TrafficCli {
        #[command(flatten)]
        traffic: TrafficCmd,
    }

    #[test]
    fn traffic_flags_become_the_split() {
        let parse = |args: &[&str]| {
            TrafficCli::try_parse_from(std::iter::once("traffic").chain(args.iter().copied()))
        };
        let t = parse(&[
            "fraud",
            "--canary",
            "3",
            "--weight",
            "20",
            "--shadow",
            "challenger",
        ])
        .unwrap()
        .traffic
        .request()
        .unwrap()
        .traffic
        .unwrap();
        assert_eq!(t.variants.len(), 1);
        assert_eq!(
            (t.variants[0].name.as_str(), t.variants[0].weight),
            ("canary", 20)
        );
        assert_eq!(
            t.variants[0].target.clone().unwrap().choice,
            Some(Choice::Version(3))
        );
        let shadow = t.shadow.unwrap();
        assert_eq!(
            shadow.target.unwrap().choice,
            Some(Choice::Alias("challenger".into()))
        );
        assert_eq!(shadow.share, 1.0);
        let t = parse(&["fraud", "--variant", "a=v2:30", "--variant", "b=blue:20"])
            .unwrap()
            .traffic
            .request()
            .unwrap()
            .traffic
            .unwrap();
        let names: Vec<_> = t
            .variants
            .iter()
            .map(|v| (v.name.as_str(), v.weight))
            .collect();
        assert_eq!(names, [("a", 30), ("b", 20)]);
        let bad = parse(&["fraud", "--variant", "a=2"])
            .unwrap()
            .traffic
            .request();
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("NAME=VERSION|ALIAS:WEIGHT"));
        assert!(parse(&["fraud", "--canary", "2", "--weight", "101"]).is_err());
        let t = parse(&[
            "fraud",
            "--canary",
            "2",
            "--analyze-every",
            "60000",
            "--max-error-rate",
            "0.01",
            "--promote-after",
            "5",
        ])
        .unwrap()
        .traffic
        .request()
        .unwrap()
        .traffic
        .unwrap();
        let a = t.analysis.unwrap();
        assert_eq!(
            (a.interval_ms, a.max_error_rate, a.successes_to_promote),
            (60000, 0.01, 5)
        );
        assert!(
            parse(&["fraud", "--max-error-rate", "0.01"]).is_err(),
            "needs --analyze-every"
        );
        assert!(parse(&["fraud", "--canary", "2", "--variant", "a=3:10"]).is_err());
    }

    #[test]
    fn deploy_flags_become_the_request() {
        let c = Cli::try_parse_from([
            "deploy",
            "fraud",
            "--alias",
            "challenger",
            "--dynamic-batching",
            "--max-batch-size",
            "64",
            "--prediction-log-sample",
            "0.25",
        ])
        .unwrap();
        let r = c.deploy.request();
        assert_eq!(r.name, "fraud");
        assert_eq!(
            r.target.unwrap().choice,
            Some(Choice::Alias("challenger".into()))
        );
        assert_eq!(r.parameters["dynamic_batching"], "true");
        assert_eq!(r.parameters["max_batch_size"], "64");
        assert_eq!(r.parameters["prediction_log_sample"], "0.25");
        let c = Cli::try_parse_from(["deploy", "fraud", "--version", "3"]).unwrap();
        assert_eq!(
            c.deploy.request().target.unwrap().choice,
            Some(Choice::Version(3))
        );
        let c = Cli::try_parse_from(["deploy", "fraud"]).unwrap();
        assert_eq!(c.deploy.request().target.unwrap().choice, None);
        assert!(Cli::try_parse_from(["deploy", "m", "--version", "1", "--alias", "a"]).is_err());
    }
}
