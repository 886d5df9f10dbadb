//! `mlops models`: the model registry from the command line. `mlops models gate`
//! exits non-zero when the gate fails, so any CI system can run it as a step.

use anyhow::{bail, Context};
use mlops_proto::registry::v1 as pb;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_runtime::grpc::{endpoint_uri, ClientAuth};
use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::models_view::{
    gate_json, model_json, print_gate, print_json, print_version, stage_name, status_name,
    version_json,
};
use crate::table;
use crate::tracking::Output;

type Client = RegistryServiceClient<InterceptedService<Channel, ClientAuth>>;

/// The exit code of `mlops models gate` when the candidate fails.
pub const GATE_FAILED_EXIT: i32 = 3;

/// Connects to the registry.
pub async fn connect(addr: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let addr = endpoint_uri(addr);
    let channel = Channel::from_shared(addr.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the registry at {addr} (is `mlops up` running?)"))?;
    Ok(
        RegistryServiceClient::with_interceptor(channel, ClientAuth::new(token)?)
            .max_decoding_message_size(64 * 1024 * 1024),
    )
}

/// Model registry commands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCmd {
    /// List registered models.
    List {
        /// A filter like "name LIKE 'fraud%' AND tags.team = 'risk'".
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long, default_value_t = 100)]
        max_results: i32,
    },
    /// Create a registered model.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Require a passed evaluation gate before an alias moves.
        #[arg(long)]
        require_gate: bool,
        /// The aliases the gate requirement covers (repeatable); none means all.
        #[arg(long = "gate-alias")]
        gate_aliases: Vec<String>,
    },
    /// Show a model: aliases, latest version per stage, gate policy, tags.
    Show { name: String },
    /// List a model's versions.
    Versions {
        name: String,
        /// More conditions, e.g. "tags.validated = 'yes'".
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 100)]
        max_results: i32,
    },
    /// Show one version with its lineage, signature and newest gate result.
    Version { name: String, version: i64 },
    /// Register a new version from a run's artifact (--run, --path) or a local file (--file).
    Register {
        name: String,
        /// The tracking run whose artifact is registered.
        #[arg(long, requires = "path", conflicts_with = "file")]
        run: Option<String>,
        /// The artifact's path in the run, like `model`.
        #[arg(long)]
        path: Option<String>,
        /// A local model file to upload instead (a `.onnx` file has its signature read).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Aliases: set, unset, get.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Move a version to a stage (None, Staging, Production, Archived).
    Stage {
        name: String,
        version: i64,
        stage: String,
        /// Archive the versions already in that stage.
        #[arg(long)]
        archive_existing: bool,
    },
    /// Record evaluation metrics of a version on a dataset.
    Evaluate {
        name: String,
        version: i64,
        #[arg(long)]
        dataset: String,
        /// METRIC=VALUE, repeatable, e.g. --metric auc=0.93.
        #[arg(long = "metric", required = true)]
        metrics: Vec<String>,
    },
    /// Validate a candidate against a baseline with thresholds; exits 0 when it
    /// passes, 3 when it fails (1 on errors).
    ///
    /// Thresholds, repeatable, in MLflow's semantics:
    ///   auc>=0.9            absolute threshold, greater is better
    ///   loss<=0.3           absolute threshold, lower is better
    ///   auc:higher,abs=0.01 beat the baseline by at least 0.01
    ///   loss:lower,rel=0.05 beat the baseline by at least 5%
    ///   auc>=0.9,abs=0.01   both
    #[command(verbatim_doc_comment)]
    Gate {
        name: String,
        /// The candidate version.
        version: i64,
        /// Compare with this version.
        #[arg(long, conflicts_with = "baseline_alias")]
        baseline_version: Option<i64>,
        /// Compare with the version this alias names, e.g. champion.
        #[arg(long)]
        baseline_alias: Option<String>,
        /// A threshold (see above); repeatable.
        #[arg(long = "threshold", required = true)]
        thresholds: Vec<String>,
        /// Only use evaluations on this dataset.
        #[arg(long, default_value = "")]
        dataset: String,
    },
    /// Delete a version, or with no version the whole model.
    Delete { name: String, version: Option<i64> },
}

/// Alias commands.
#[derive(Debug, clap::Subcommand)]
pub enum AliasCmd {
    /// Point an alias at a version (moving it if set).
    Set {
        name: String,
        alias: String,
        version: i64,
    },
    /// Remove an alias.
    Unset { name: String, alias: String },
    /// Show the version an alias names.
    Get { name: String, alias: String },
}

/// Parses a threshold spec (see `mlops models gate --help`).
pub fn parse_threshold(spec: &str) -> anyhow::Result<pb::MetricThreshold> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "threshold `{spec}`: {why}; write e.g. `auc>=0.9`, `loss<=0.3` or `auc:higher,abs=0.01`"
        )
    };
    let mut parts = spec.split(',');
    let head = parts.next().unwrap_or("").trim();
    let mut t = pb::MetricThreshold::default();
    let mut direction = None;
    if let Some((m, v)) = head.split_once(">=") {
        t.metric = m.trim().to_owned();
        t.threshold = Some(
            v.trim()
                .parse()
                .map_err(|_| bad("the threshold is not a number"))?,
        );
        direction = Some(true);
    } else if let Some((m, v)) = head.split_once("<=") {
        t.metric = m.trim().to_owned();
        t.threshold = Some(
            v.trim()
                .parse()
                .map_err(|_| bad("the threshold is not a number"))?,
        );
        direction = Some(false);
    } else if let Some((m, d)) = head.split_once(':') {
        t.metric = m.trim().to_owned();
        direction = match d.trim() {
            "higher" => Some(true),
            "lower" => Some(false),
            _ => return Err(bad("after `:` comes `higher` or `lower`")),
        };
    } else {
        t.metric = head.to_owned();
    }
    for opt in parts {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| bad("options are abs=NUMBER or rel=NUMBER"))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| bad("an option's value is not a number"))?;
        match k.trim() {
            "abs" => t.min_absolute_change = Some(v),
            "rel" => t.min_relative_change = Some(v),
            _ => return Err(bad("options are abs=NUMBER or rel=NUMBER")),
        }
    }
    if t.metric.is_empty() {
        return Err(bad("no metric name"));
    }
    t.greater_is_better = direction
        .ok_or_else(|| bad("say which way is better: `>=`, `<=`, `:higher` or `:lower`"))?;
    Ok(t)
}

fn stage_of(s: &str) -> anyhow::Result<pb::Stage> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" => pb::Stage::None,
        "staging" => pb::Stage::Staging,
        "production" => pb::Stage::Production,
        "archived" => pb::Stage::Archived,
        _ => bail!("stage `{s}` is not one of None, Staging, Production, Archived"),
    })
}

/// Runs a models command; returns the process exit code.
pub async fn run(mut c: Client, cmd: ModelsCmd, out: Output) -> anyhow::Result<i32> {
    match cmd {
        ModelsCmd::List {
            filter,
            max_results,
        } => {
            let r = c
                .search_registered_models(pb::SearchRegisteredModelsRequest {
                    filter,
                    max_results,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if out.json {
                print_json(&json!(r
                    .registered_models
                    .iter()
                    .map(model_json)
                    .collect::<Vec<_>>()));
            } else {
                let rows = r
                    .registered_models
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.clone(),
                            m.aliases
                                .iter()
                                .map(|a| format!("{}=v{}", a.alias, a.version))
                                .collect::<Vec<_>>()
                                .join(" "),
                            m.latest_versions
                                .iter()
                                .map(|v| format!("{}=v{}", stage_name(v.current_stage), v.version))
                                .collect::<Vec<_>>()
                                .join(" "),
                            table::time(Some(m.last_updated_timestamp)),
                        ]
                    })
                    .collect::<Vec<_>>();
                table::print(&["NAME", "ALIASES", "LATEST BY STAGE", "UPDATED"], &rows);
            }
        }
        ModelsCmd::Create {
            name,
            description,
            require_gate,
            gate_aliases,
        } => {
            let m = c
                .create_registered_model(pb::CreateRegisteredModelRequest {
                    name,
                    description,
                    tags: vec![],
                    gate_policy: Some(pb::GatePolicy {
                        require_passed_gate: require_gate,
                        aliases: gate_aliases,
                    }),
                })
                .await?
                .into_inner()
                .registered_model
                .unwrap_or_default();
            if out.json {
                print_json(&model_json(&m));
            } else {
                println!("created model {} (id {})", m.name, m.id);
            }
        }
        ModelsCmd::Show { name } => {
            let m = c
                .get_registered_model(pb::GetRegisteredModelRequest { name })
                .await?
                .into_inner()
                .registered_model
                .unwrap_or_default();
            if out.json {
                print_json(&model_json(&m));
            } else {
                println!("{} (id {})", m.name, m.id);
                if !m.description.is_empty() {
                    println!("  description {}", m.description);
                }
                println!("  created     {}", table::time(Some(m.creation_timestamp)));
                println!(
                    "  updated     {}",
                    table::time(Some(m.last_updated_timestamp))
                );
                for a in &m.aliases {
                    println!("  alias       {} -> version {}", a.alias, a.version);
                }
                for v in &m.latest_versions {
                    println!(
                        "  latest      {} version {} ({})",
                        stage_name(v.current_stage),
                        v.version,
                        status_name(v.status)
                    );
                }
                let p = m.gate_policy.unwrap_or_default();
                if p.require_passed_gate {
                    let which = if p.aliases.is_empty() {
                        "every alias".to_owned()
                    } else {
                        p.aliases.join(", ")
                    };
                    println!("  gate policy a passed gate before {which} moves");
                }
                for t in &m.tags {
                    println!("  tag         {} = {}", t.key, t.value);
                }
            }
        }
        ModelsCmd::Versions {
            name,
            filter,
            max_results,
        } => {
            let mut f = format!("name = '{}'", name.replace('\'', "\\'"));
            if let Some(more) = filter {
                f = format!("{f} AND {more}");
            }
            let r = c
                .search_model_versions(pb::SearchModelVersionsRequest {
                    filter: f,
                    max_results,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if out.json {
                print_json(&json!(r
                    .model_versions
                    .iter()
                    .map(version_json)
                    .collect::<Vec<_>>()));
            } else {
                let rows = r
                    .model_versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.version.to_string(),
                            status_name(v.status).into(),
                            stage_name(v.current_stage).into(),
                            v.aliases.join(","),
                            v.run_id.clone(),
                            table::time(Some(v.creation_timestamp)),
                            v.last_gate
                                .as_ref()
                                .map(|g| if g.passed { "passed" } else { "failed" })
                                .unwrap_or("-")
                                .into(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table::print(
                    &[
                        "VERSION", "STATUS", "STAGE", "ALIASES", "RUN", "CREATED", "GATE",
                    ],
                    &rows,
                );
            }
        }
        ModelsCmd::Version { name, version } => {
            let v = c
                .get_model_version(pb::GetModelVersionRequest { name, version })
                .await?
                .into_inner()
                .model_version
                .unwrap_or_default();
            if out.json {
                print_json(&version_json(&v));
            } else {
                print_version(&v);
            }
        }
        ModelsCmd::Register {
            name,
            run,
            path,
            file,
            description,
        } => {
            let v = match (run, path, file) {
                (Some(run_id), Some(artifact_path), None) => c
                    .create_model_version(pb::CreateModelVersionRequest {
                        name,
                        run_id,
                        artifact_path,
                        description,
                        tags: vec![],
                        logged_model_id: String::new(),
                    })
                    .await?
                    .into_inner(),
                (None, None, Some(file)) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let file_name = file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .context("the file has no usable name")?
                        .to_owned();
                    let mut msgs = vec![pb::UploadModelVersionRequest {
                        item: Some(pb::upload_model_version_request::Item::Header(
                            pb::UploadHeader {
                                name,
                                file_name,
                                description,
                                tags: vec![],
                                run_id: String::new(),
                            },
                        )),
                    }];
                    for chunk in bytes.chunks(1024 * 1024) {
                        msgs.push(pb::UploadModelVersionRequest {
                            item: Some(pb::upload_model_version_request::Item::Chunk(
                                chunk.to_vec(),
                            )),
                        });
                    }
                    c.upload_model_version(futures::stream::iter(msgs))
                        .await?
                        .into_inner()
                }
                _ => bail!("give either --run RUN_ID --path ARTIFACT_PATH, or --file FILE"),
            }
            .model_version
            .unwrap_or_default();
            if out.json {
                print_json(&version_json(&v));
            } else {
                print_version(&v);
            }
        }
        ModelsCmd::Alias(AliasCmd::Set {
            name,
            alias,
            version,
        }) => {
            let prev = c
                .set_registered_model_alias(pb::SetRegisteredModelAliasRequest {
                    name: name.clone(),
                    alias: alias.clone(),
                    version,
                })
                .await?
                .into_inner()
                .previous_version;
            if out.json {
                print_json(
                    &json!({"name": name, "alias": alias, "version": version, "previous_version": prev}),
                );
            } else if prev == 0 {
                println!("{name}@{alias} -> version {version}");
            } else {
                println!("{name}@{alias} -> version {version} (was {prev})");
            }
        }
        ModelsCmd::Alias(AliasCmd::Unset { name, alias }) => {
            c.delete_registered_model_alias(pb::DeleteRegisteredModelAliasRequest {
                name: name.clone(),
                alias: alias.clone(),
            })
            .await?;
            if !out.json {
                println!("{name}@{alias} removed");
            }
        }
        ModelsCmd::Alias(AliasCmd::Get { name, alias }) => {
            let v = c
                .get_model_version_by_alias(pb::GetModelVersionByAliasRequest { name, alias })
                .await?
                .into_inner()
                .model_version
                .unwrap_or_default();
            if out.json {
                print_json(&version_json(&v));
            } else {
                print_version(&v);
            }
        }
        ModelsCmd::Stage {
            name,
            version,
            stage,
            archive_existing,
        } => {
            let v = c
                .transition_model_version_stage(pb::TransitionModelVersionStageRequest {
                    name,
                    version,
                    stage: stage_of(&stage)? as i32,
                    archive_existing_versions: archive_existing,
                })
                .await?
                .into_inner()
                .model_version
                .unwrap_or_default();
            if out.json {
                print_json(&version_json(&v));
            } else {
                println!(
                    "{} version {} is now in {}",
                    v.name,
                    v.version,
                    stage_name(v.current_stage)
                );
            }
        }
        ModelsCmd::Evaluate {
            name,
            version,
            dataset,
            metrics,
        } => {
            let mut m = std::collections::HashMap::new();
            for spec in &metrics {
                let (k, v) = spec
                    .split_once('=')
                    .with_context(|| format!("metric `{spec}`: write NAME=VALUE, like auc=0.93"))?;
                let v: f64 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("metric `{spec}`: the value is not a number"))?;
                m.insert(k.trim().to_owned(), v);
            }
            let e = c
                .log_evaluation(pb::LogEvaluationRequest {
                    name,
                    version,
                    dataset,
                    dataset_digest: String::new(),
                    metrics: m,
                })
                .await?
                .into_inner()
                .evaluation
                .unwrap_or_default();
            if out.json {
                print_json(
                    &json!({"id": e.id, "version": e.version, "dataset": e.dataset, "metrics": e.metrics}),
                );
            } else {
                println!(
                    "evaluation #{} of version {} on {} recorded",
                    e.id, e.version, e.dataset
                );
            }
        }
        ModelsCmd::Gate {
            name,
            version,
            baseline_version,
            baseline_alias,
            thresholds,
            dataset,
        } => {
            let thresholds = thresholds
                .iter()
                .map(|t| parse_threshold(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let baseline = match (baseline_version, baseline_alias) {
                (Some(v), _) => Some(pb::validate_candidate_request::Baseline::BaselineVersion(v)),
                (None, Some(a)) => Some(pb::validate_candidate_request::Baseline::BaselineAlias(a)),
                (None, None) => None,
            };
            let g = c
                .validate_candidate(pb::ValidateCandidateRequest {
                    name,
                    candidate_version: version,
                    baseline,
                    thresholds,
                    dataset,
                })
                .await?
                .into_inner()
                .result
                .unwrap_or_default();
            if out.json {
                print_json(&gate_json(&g));
            } else {
                print_gate(&g);
            }
            if !g.passed {
                return Ok(GATE_FAILED_EXIT);
            }
        }
        ModelsCmd::Delete { name, version } => match version {
            Some(version) => {
                c.delete_model_version(pb::DeleteModelVersionRequest {
                    name: name.clone(),
                    version,
                })
                .await?;
                if !out.json {
                    println!("{name} version {version} deleted");
                }
            }
            None => {
                c.delete_registered_model(pb::DeleteRegisteredModelRequest { name: name.clone() })
                    .await?;
                if !out.json {
                    println!("model {name} deleted");
                }
            }
        },
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_specs() {
        let t = parse_threshold("auc>=0.9").unwrap();
        assert_eq!(
            (t.metric.as_str(), t.threshold, t.greater_is_better),
            ("auc", Some(0.9), true)
        );
        let t = parse_threshold("loss<=0.3,abs=0.01").unwrap();
        assert_eq!(
            (t.threshold, t.min_absolute_change, t.greater_is_better),
            (Some(0.3), Some(0.01), false)
        );
        let t = parse_threshold("auc:higher,rel=0.05").unwrap();
        assert_eq!(
            (t.threshold, t.min_relative_change, t.greater_is_better),
            (None, Some(0.05), true)
        );
        for bad in [
            "auc",
            "auc>=x",
            "auc:up",
            "auc>=1,foo=2",
            ">=1",
            "auc:lower,abs",
        ] {
            assert!(parse_threshold(bad).is_err(), "{bad}");
        }
    }
}
