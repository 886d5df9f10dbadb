//! `mlops models`: the model registry from the command line. `mlops models gate`
//! exits non-zero when the gate fails, so any CI system can run it as a step.

use std::future::Future;

use anyhow::{bail, Context};
use mlops_proto::registry::v1 as pb;
use serde_json::json;

use crate::client::RegistryClient as Client;
use crate::models_view::{
    gate_json, model_json, model_row, print_gate, print_model, print_version, stage_name,
    version_json, version_row, MODEL_HEADER, VERSION_HEADER,
};
use crate::output::Output;

/// The exit code of `mlops models gate` when the candidate fails.
pub const GATE_FAILED_EXIT: i32 = 3;

/// Model registry commands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCmd {
    /// List registered models.
    List(List),
    /// Create a registered model.
    Create(Create),
    /// Show a model: aliases, latest version per stage, gate policy, tags.
    Show(Show),
    /// List a model's versions.
    Versions(Versions),
    /// Show one version with its lineage, signature and newest gate result.
    Version(Version),
    /// Register a new version from a run's artifact (--run, --path) or a local file (--file).
    Register(Register),
    /// Aliases: set, unset, get.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Move a version to a stage (None, Staging, Production, Archived).
    Stage(Stage),
    /// Record evaluation metrics of a version on a dataset.
    Evaluate(Evaluate),
    /// Validate a candidate against a baseline with thresholds; exits 0 when it
    /// passes, 3 when it fails (1 on errors).
    ///
    /// Thresholds, repeatable, in MLflow's semantics:
    ///   auc>=0.9            absolute threshold, greater is better
    ///   loss<=0.3           absolute threshold, lower is better
    ///   auc:higher,abs=0.01 beat the baseline by at least 0.01
    ///   loss:lower,rel=0.05 beat the baseline by at least 5%
    ///   rmse:lower,worse=0.02 no worse than the baseline by more than 0.02 (ours)
    ///   auc>=0.9,abs=0.01   both
    #[command(verbatim_doc_comment)]
    Gate(Gate),
    /// Delete a version, or with no version the whole model.
    Delete(Delete),
}

/// Alias commands.
#[derive(Debug, clap::Subcommand)]
pub enum AliasCmd {
    /// Point an alias at a version (moving it if set).
    Set(AliasSet),
    /// Remove an alias.
    Unset(AliasUnset),
    /// Show the version an alias names.
    Get(AliasGet),
}

/// Runs a models command; returns the process exit code.
pub async fn run(c: Client, cmd: ModelsCmd, out: Output) -> anyhow::Result<i32> {
    match cmd {
        ModelsCmd::List(a) => a.run(c, out).await?,
        ModelsCmd::Create(a) => a.run(c, out).await?,
        ModelsCmd::Show(a) => a.run(c, out).await?,
        ModelsCmd::Versions(a) => a.run(c, out).await?,
        ModelsCmd::Version(a) => a.run(c, out).await?,
        ModelsCmd::Register(a) => a.run(c, out).await?,
        ModelsCmd::Alias(AliasCmd::Set(a)) => a.run(c, out).await?,
        ModelsCmd::Alias(AliasCmd::Unset(a)) => a.run(c, out).await?,
        ModelsCmd::Alias(AliasCmd::Get(a)) => a.run(c, out).await?,
        ModelsCmd::Stage(a) => a.run(c, out).await?,
        ModelsCmd::Evaluate(a) => a.run(c, out).await?,
        ModelsCmd::Gate(a) => return a.run(c, out).await,
        ModelsCmd::Delete(a) => a.run(c, out).await?,
    }
    Ok(0)
}

// Each subcommand: its arguments (documented on the variant above), and what it does.

#[derive(Debug, clap::Args)]
pub struct List {
    /// A filter like "name LIKE 'fraud%' AND tags.team = 'risk'".
    #[arg(long, default_value = "")]
    filter: String,
    #[arg(long, default_value_t = 100)]
    max_results: i32,
}

impl List {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::SearchRegisteredModelsRequest {
            filter: self.filter,
            max_results: self.max_results,
            ..Default::default()
        };
        let call = c.search_registered_models(req);
        out.list(
            call,
            |r| r.registered_models,
            model_json,
            MODEL_HEADER,
            model_row,
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Create {
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// Require a passed evaluation gate before an alias moves.
    #[arg(long)]
    require_gate: bool,
    /// The aliases the gate requirement covers (repeatable); none means all.
    #[arg(long = "gate-alias")]
    gate_aliases: Vec<String>,
}

impl Create {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::CreateRegisteredModelRequest {
            name: self.name,
            description: self.description,
            tags: vec![],
            gate_policy: Some(pb::GatePolicy {
                require_passed_gate: self.require_gate,
                aliases: self.gate_aliases,
            }),
        };
        out.call(
            c.create_registered_model(req),
            |r| r.registered_model.unwrap_or_default(),
            |m| Some(model_json(m)),
            |m| println!("created model {} (id {})", m.name, m.id),
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Show {
    name: String,
}

impl Show {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        out.call(
            c.get_registered_model(pb::GetRegisteredModelRequest { name: self.name }),
            |r| r.registered_model.unwrap_or_default(),
            |m| Some(model_json(m)),
            print_model,
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Versions {
    name: String,
    /// More conditions, e.g. "tags.validated = 'yes'".
    #[arg(long)]
    filter: Option<String>,
    #[arg(long, default_value_t = 100)]
    max_results: i32,
}

impl Versions {
    /// A search for the model's versions, narrowed by `filter`.
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let mut f = format!("name = '{}'", self.name.replace('\'', "\\'"));
        if let Some(more) = self.filter {
            f = format!("{f} AND {more}");
        }
        let req = pb::SearchModelVersionsRequest {
            filter: f,
            max_results: self.max_results,
            ..Default::default()
        };
        let call = c.search_model_versions(req);
        out.list(
            call,
            |r| r.model_versions,
            version_json,
            VERSION_HEADER,
            version_row,
        )
        .await?;
        Ok(())
    }
}

/// Prints the version the registry answered with, as `mlops models version` does.
async fn answered_version(
    out: Output,
    call: impl Future<Output = Result<tonic::Response<pb::ModelVersionResponse>, tonic::Status>>,
) -> anyhow::Result<()> {
    out.call(
        call,
        |r| r.model_version.unwrap_or_default(),
        |v| Some(version_json(v)),
        print_version,
    )
    .await?;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct Version {
    name: String,
    version: i64,
}

impl Version {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let Version { name, version } = self;
        answered_version(
            out,
            c.get_model_version(pb::GetModelVersionRequest { name, version }),
        )
        .await
    }
}

#[derive(Debug, clap::Args)]
pub struct Register {
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
}

impl Register {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let Register {
            name,
            run,
            path,
            file,
            description,
        } = self;
        match (run, path, file) {
            (Some(run_id), Some(artifact_path), None) => {
                let req = pb::CreateModelVersionRequest {
                    name,
                    run_id,
                    artifact_path,
                    description,
                    ..Default::default()
                };
                answered_version(out, c.create_model_version(req)).await
            }
            (None, None, Some(file)) => {
                let msgs = upload_messages(&file, name, description)?;
                answered_version(out, c.upload_model_version(futures::stream::iter(msgs))).await
            }
            _ => bail!("give either --run RUN_ID --path ARTIFACT_PATH, or --file FILE"),
        }
    }
}

/// The upload of a local model file: a header, then the content in 1 MiB chunks.
fn upload_messages(
    file: &std::path::Path,
    name: String,
    description: String,
) -> anyhow::Result<Vec<pb::UploadModelVersionRequest>> {
    use pb::upload_model_version_request::Item;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let file_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file has no usable name")?
        .to_owned();
    let header = pb::UploadHeader {
        name,
        file_name,
        description,
        tags: vec![],
        run_id: String::new(),
    };
    let mut msgs = vec![pb::UploadModelVersionRequest {
        item: Some(Item::Header(header)),
    }];
    for chunk in bytes.chunks(1024 * 1024) {
        msgs.push(pb::UploadModelVersionRequest {
            item: Some(Item::Chunk(chunk.to_vec())),
        });
    }
    Ok(msgs)
}

#[derive(Debug, clap::Args)]
pub struct AliasSet {
    name: String,
    alias: String,
    version: i64,
}

impl AliasSet {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let AliasSet {
            name,
            alias,
            version,
        } = self;
        let req = pb::SetRegisteredModelAliasRequest {
            name: name.clone(),
            alias: alias.clone(),
            version,
        };
        out.call(
            c.set_registered_model_alias(req),
            |r| r.previous_version,
            |prev| Some(json!({"name": name, "alias": alias, "version": version, "previous_version": prev})),
            |&prev| match prev {
                0 => println!("{name}@{alias} -> version {version}"),
                _ => println!("{name}@{alias} -> version {version} (was {prev})"),
            },
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct AliasUnset {
    name: String,
    alias: String,
}

impl AliasUnset {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let AliasUnset { name, alias } = self;
        let req = pb::DeleteRegisteredModelAliasRequest {
            name: name.clone(),
            alias: alias.clone(),
        };
        let call = c.delete_registered_model_alias(req);
        out.call(call, drop, |_| None, |_| println!("{name}@{alias} removed"))
            .await
    }
}

#[derive(Debug, clap::Args)]
pub struct AliasGet {
    name: String,
    alias: String,
}

impl AliasGet {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let AliasGet { name, alias } = self;
        let req = pb::GetModelVersionByAliasRequest { name, alias };
        answered_version(out, c.get_model_version_by_alias(req)).await
    }
}

#[derive(Debug, clap::Args)]
pub struct Stage {
    name: String,
    version: i64,
    stage: String,
    /// Archive the versions already in that stage.
    #[arg(long)]
    archive_existing: bool,
}

impl Stage {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::TransitionModelVersionStageRequest {
            name: self.name,
            version: self.version,
            stage: stage_of(&self.stage)? as i32,
            archive_existing_versions: self.archive_existing,
        };
        out.call(
            c.transition_model_version_stage(req),
            |r| r.model_version.unwrap_or_default(),
            |v| Some(version_json(v)),
            |v| {
                let stage = stage_name(v.current_stage);
                println!("{} version {} is now in {stage}", v.name, v.version);
            },
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Evaluate {
    name: String,
    version: i64,
    #[arg(long)]
    dataset: String,
    /// METRIC=VALUE, repeatable, e.g. --metric auc=0.93.
    #[arg(long = "metric", required = true)]
    metrics: Vec<String>,
}

impl Evaluate {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let mut metrics = std::collections::HashMap::new();
        for spec in &self.metrics {
            let (k, v) = spec
                .split_once('=')
                .with_context(|| format!("metric `{spec}`: write NAME=VALUE, like auc=0.93"))?;
            let v: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("metric `{spec}`: the value is not a number"))?;
            metrics.insert(k.trim().to_owned(), v);
        }
        let req = pb::LogEvaluationRequest {
            name: self.name,
            version: self.version,
            dataset: self.dataset,
            dataset_digest: String::new(),
            metrics,
        };
        out.call(
            c.log_evaluation(req),
            |r| r.evaluation.unwrap_or_default(),
            |e| Some(json!({"id": e.id, "version": e.version, "dataset": e.dataset, "metrics": e.metrics})),
            |e| {
                let (id, version, dataset) = (e.id, e.version, &e.dataset);
                println!("evaluation #{id} of version {version} on {dataset} recorded");
            },
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Gate {
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
}

impl Gate {
    /// Returns 0 when the candidate passes, [`GATE_FAILED_EXIT`] when it fails.
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<i32> {
        use pb::validate_candidate_request::Baseline;
        let thresholds = self
            .thresholds
            .iter()
            .map(|t| parse_threshold(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let baseline = match (self.baseline_version, self.baseline_alias) {
            (Some(v), _) => Some(Baseline::BaselineVersion(v)),
            (None, Some(a)) => Some(Baseline::BaselineAlias(a)),
            (None, None) => None,
        };
        let req = pb::ValidateCandidateRequest {
            name: self.name,
            candidate_version: self.version,
            baseline,
            thresholds,
            dataset: self.dataset,
        };
        let g = out
            .call(
                c.validate_candidate(req),
                |r| r.result.unwrap_or_default(),
                |g| Some(gate_json(g)),
                print_gate,
            )
            .await?;
        Ok(if g.passed { 0 } else { GATE_FAILED_EXIT })
    }
}

#[derive(Debug, clap::Args)]
pub struct Delete {
    name: String,
    version: Option<i64>,
}

impl Delete {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let name = self.name;
        match self.version {
            Some(version) => {
                let req = pb::DeleteModelVersionRequest {
                    name: name.clone(),
                    version,
                };
                let call = c.delete_model_version(req);
                let text = |_: &()| println!("{name} version {version} deleted");
                out.call(call, drop, |_| None, text).await
            }
            None => {
                let req = pb::DeleteRegisteredModelRequest { name: name.clone() };
                let call = c.delete_registered_model(req);
                let text = |_: &()| println!("model {name} deleted");
                out.call(call, drop, |_| None, text).await
            }
        }
    }
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
            .ok_or_else(|| bad("options are abs=NUMBER, rel=NUMBER or worse=NUMBER"))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| bad("an option's value is not a number"))?;
        match k.trim() {
            "abs" => t.min_absolute_change = Some(v),
            "rel" => t.min_relative_change = Some(v),
            "worse" => t.max_absolute_degradation = Some(v),
            _ => return Err(bad("options are abs=NUMBER, rel=NUMBER or worse=NUMBER")),
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
        let t = parse_threshold("rmse<=0.6,worse=0.02").unwrap();
        assert_eq!(
            (t.threshold, t.max_absolute_degradation, t.greater_is_better),
            (Some(0.6), Some(0.02), false)
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
