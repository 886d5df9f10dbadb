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
        out.call(
            c.deploy(self.request()),
            |r| r.deployment.unwrap_or_default(),
            |d| Some(deployment_json(d)),
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
        .await?;
        Ok(())
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
        out.call(
            c.get_deployment(pb::GetDeploymentRequest { name: self.model }),
            |r| r.deployment.unwrap_or_default(),
            |d| Some(deployment_json(d)),
            print_deployment,
        )
        .await?;
        Ok(())
    }
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

fn deployment_json(d: &pb::Deployment) -> Value {
    let target = match d.target.as_ref().and_then(|t| t.choice.as_ref()) {
        Some(Choice::Alias(a)) => json!({"alias": a}),
        Some(Choice::Version(v)) => json!({"version": v}),
        None => json!({}),
    };
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
    })
}

fn print_deployment(d: &pb::Deployment) {
    println!("name:      {}", d.name);
    println!("model id:  {}", d.model_id);
    println!("target:    {}", target_text(d));
    println!("state:     {}", d.state);
    println!("version:   {}", d.version);
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
