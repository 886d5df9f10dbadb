//! `mlops serve`: the inference service from the command line, over Triton's gRPC API
//! (`RepositoryModelLoad`, `RepositoryModelUnload`, `RepositoryIndex`, `ModelInfer`), so
//! what it does is what `tritonclient` does.

use std::collections::HashMap;

use anyhow::Context;
use mlops_proto::triton as pb;
use pb::model_repository_parameter::ParameterChoice;
use serde_json::json;

use crate::client::InferenceClient as Client;
use crate::output::Output;
use crate::serve_input;
use crate::serve_view::{
    index_json, index_row, outputs, print_outputs, response_json, INDEX_HEADER,
};

/// Inference commands.
#[derive(Debug, clap::Subcommand)]
pub enum ServeCmd {
    /// Load a registered model, or load it again with another version or settings.
    ///
    /// The version: its champion alias, else its newest READY version, unless --version
    /// or --alias says which. A model already loaded keeps serving until the new one is
    /// ready. The settings are kept across restarts of the service.
    Load(Load),
    /// Stop serving a model (Triton's unload; the same as undeploy).
    Unload(Unload),
    /// Deploy a registered model: follow an alias (hot swapped when it moves), or pin a version.
    ///
    /// By default the deployment follows the champion alias (else serves the newest READY
    /// version). Answers once the version is loaded, warmed up and serving; on a deployed
    /// model a failure keeps the old version serving. Kept across restarts of the service.
    Deploy(crate::deploy::Deploy),
    /// Stop serving a model and forget its deployment.
    Undeploy(crate::deploy::Undeploy),
    /// Show one deployment: what it follows, the version serving, its state and recent errors.
    Describe(crate::deploy::Describe),
    /// Split a deployment's traffic: a canary, A/B variants, a shadow (no flags: all to stable).
    ///
    /// Answers once every version named is loaded and warmed up; on a failure nothing
    /// changes. A request's route header (default mlops-route) naming a variant goes there;
    /// any other value (a user id) keeps that caller on one variant.
    Traffic(crate::deploy::TrafficCmd),
    /// Return all traffic to the last version that served 100% (its alias moves back too).
    Rollback(crate::deploy::Rollback),
    /// List the deployments here, or with --all every registered model with its state.
    ///
    /// READY (and the version served), LOADING, or UNAVAILABLE (and why).
    List(List),
    /// Run a model on the rows of a file and print its outputs
    ///
    /// The file (--input) is JSON or CSV:
    ///   {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 30], "data": [...]}]}
    ///       the Open Inference Protocol's request, as curl sends it to /v2/models/NAME/infer
    ///   {"input": [[...], [...]]}
    ///       input names to rows; shapes from the nesting, datatypes from the model
    ///   a CSV file: a header row naming the features in order, then one row per line,
    ///       for a model with one 2-D input (converted to its datatype; NaN for a missing float)
    #[command(verbatim_doc_comment)]
    Infer(Infer),
}

/// Runs a serve command against the inference service at `addr`.
pub async fn run(
    addr: &str,
    token: Option<&str>,
    cmd: ServeCmd,
    out: Output,
) -> anyhow::Result<()> {
    use crate::client::{connect, DeploymentClient};
    match cmd {
        ServeCmd::Load(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::Unload(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::List(a) if a.all => a.run(connect(addr, token).await?, out).await,
        ServeCmd::List(_) => {
            crate::deploy::list(connect::<DeploymentClient>(addr, token).await?, out).await
        }
        ServeCmd::Infer(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::Deploy(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::Undeploy(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::Describe(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::Traffic(a) => a.run(connect(addr, token).await?, out).await,
        ServeCmd::Rollback(a) => a.run(connect(addr, token).await?, out).await,
    }
}

/// Serving settings, for `load` and `deploy`; unset ones keep the model's or the service's.
#[derive(Debug, Default, clap::Args)]
pub struct Serving {
    /// Batch requests together (--dynamic-batching=false turns it off again).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    dynamic_batching: Option<bool>,
    /// Most rows per request and per batch.
    #[arg(long, value_name = "N")]
    max_batch_size: Option<u32>,
    /// With dynamic batching: the longest the oldest request waits for others, in microseconds.
    #[arg(long, value_name = "US")]
    max_queue_delay_us: Option<u64>,
    /// With dynamic batching: batch sizes run as soon as they are reached, e.g. 4,8.
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    preferred_batch_size: Vec<u32>,
    /// With dynamic batching: requests waiting before new ones are refused (RESOURCE_EXHAUSTED).
    #[arg(long, value_name = "N")]
    max_queue_size: Option<u32>,
    /// From a request's arrival to the start of its computation, in microseconds (0: none).
    #[arg(long, value_name = "US")]
    default_timeout_us: Option<u64>,
    /// The share of this model's predictions on the prediction log, from 0 (none) to 1
    /// (every one); unset: the service's --prediction-log-sample.
    #[arg(long, value_name = "SHARE")]
    prediction_log_sample: Option<f64>,
}

impl Serving {
    /// The settings given, by the load parameters' names, as typed parameter values.
    pub fn pairs(&self) -> Vec<(&'static str, ParameterChoice)> {
        let int = |v: u64| ParameterChoice::Int64Param(v as i64);
        let mut p: Vec<(&str, ParameterChoice)> = Vec::new();
        if let Some(b) = self.dynamic_batching {
            p.push(("dynamic_batching", ParameterChoice::BoolParam(b)));
        }
        if let Some(v) = self.max_batch_size {
            p.push(("max_batch_size", int(v.into())));
        }
        if let Some(v) = self.max_queue_delay_us {
            p.push(("max_queue_delay_us", int(v)));
        }
        if !self.preferred_batch_size.is_empty() {
            let sizes: Vec<String> = self
                .preferred_batch_size
                .iter()
                .map(u32::to_string)
                .collect();
            p.push((
                "preferred_batch_size",
                ParameterChoice::StringParam(sizes.join(",")),
            ));
        }
        if let Some(v) = self.max_queue_size {
            p.push(("max_queue_size", int(v.into())));
        }
        if let Some(v) = self.default_timeout_us {
            p.push(("default_timeout_us", int(v)));
        }
        if let Some(v) = self.prediction_log_sample {
            // Triton's parameters carry no floating-point kind: the service parses the text.
            p.push((
                "prediction_log_sample",
                ParameterChoice::StringParam(v.to_string()),
            ));
        }
        p
    }
}

#[derive(Debug, clap::Args)]
pub struct Load {
    /// The registered model's name.
    model: String,
    /// Serve this version.
    #[arg(long, conflicts_with = "alias")]
    version: Option<u64>,
    /// Serve the version this alias names, e.g. champion.
    #[arg(long)]
    alias: Option<String>,
    #[command(flatten)]
    serving: Serving,
}

impl Load {
    /// The load request's parameters, as `tritonclient`'s `load_model` would send them.
    fn parameters(&self) -> HashMap<String, pb::ModelRepositoryParameter> {
        let mut p: Vec<(&str, ParameterChoice)> = Vec::new();
        if let Some(v) = self.version {
            p.push(("version", ParameterChoice::Int64Param(v as i64)));
        }
        if let Some(a) = &self.alias {
            p.push(("alias", ParameterChoice::StringParam(a.clone())));
        }
        p.extend(self.serving.pairs());
        p.into_iter()
            .map(|(k, v)| {
                let v = pb::ModelRepositoryParameter {
                    parameter_choice: Some(v),
                };
                (k.to_owned(), v)
            })
            .collect()
    }

    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::RepositoryModelLoadRequest {
            repository_name: String::new(),
            model_name: self.model.clone(),
            parameters: self.parameters(),
        };
        c.repository_model_load(req).await?;
        // The load answers nothing; the index says which version is now served.
        let name = self.model;
        let index = c.repository_index(pb::RepositoryIndexRequest::default());
        out.call(
            index,
            |r| {
                r.models
                    .into_iter()
                    .find(|m| m.name == name)
                    .unwrap_or_default()
            },
            |m| Some(index_json(m)),
            |m| println!("loaded {} version {} ({})", m.name, m.version, m.state),
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Unload {
    /// The model's name.
    model: String,
}

impl Unload {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let name = self.model;
        let req = pb::RepositoryModelUnloadRequest {
            repository_name: String::new(),
            model_name: name.clone(),
            parameters: HashMap::new(),
        };
        out.call(
            c.repository_model_unload(req),
            drop,
            |_| Some(json!({"name": name, "unloaded": true})),
            |_| println!("unloaded {name}"),
        )
        .await
    }
}

#[derive(Debug, clap::Args)]
pub struct List {
    /// Every registered model with its state here (Triton's repository index), not only
    /// the deployments.
    #[arg(long)]
    all: bool,
    /// With --all: only the models that are READY.
    #[arg(long, requires = "all")]
    ready: bool,
}

impl List {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: self.ready,
        };
        let call = c.repository_index(req);
        out.list(call, |r| r.models, index_json, INDEX_HEADER, index_row)
            .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Infer {
    /// The model's name.
    model: String,
    /// The input file: JSON or CSV (see above).
    #[arg(long, short = 'i', value_name = "FILE")]
    input: std::path::PathBuf,
    /// The version to run; by default the one served.
    #[arg(long)]
    version: Option<u64>,
    /// An output to return (repeatable); by default all of them.
    #[arg(long = "output", value_name = "NAME")]
    outputs: Vec<String>,
    /// Give up unless the computation starts within this many microseconds (DEADLINE_EXCEEDED).
    #[arg(long, value_name = "US")]
    timeout_us: Option<u64>,
}

impl Infer {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.input)
            .with_context(|| format!("reading {}", self.input.display()))?;
        let version = self.version.map(|v| v.to_string()).unwrap_or_default();
        let meta = c
            .model_metadata(pb::ModelMetadataRequest {
                name: self.model.clone(),
                version: version.clone(),
            })
            .await?
            .into_inner();
        let file = serve_input::parse(&text, &meta.inputs)
            .with_context(|| format!("{} for model {}", self.input.display(), self.model))?;
        let mut parameters = file.parameters;
        if let Some(us) = self.timeout_us {
            let p = pb::InferParameter {
                parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(us as i64)),
            };
            parameters.insert("timeout".to_owned(), p);
        }
        let requested = if self.outputs.is_empty() {
            file.outputs
        } else {
            self.outputs
        };
        let req = pb::ModelInferRequest {
            model_name: self.model,
            model_version: version,
            id: String::new(),
            parameters,
            inputs: file.inputs,
            outputs: requested
                .into_iter()
                .map(|name| pb::model_infer_request::InferRequestedOutputTensor {
                    name,
                    parameters: HashMap::new(),
                })
                .collect(),
            raw_input_contents: vec![],
        };
        let resp = c.model_infer(req).await?.into_inner();
        let outs = outputs(&resp)?;
        if out.json {
            crate::output::print_json(&response_json(&resp, &outs));
        } else {
            print_outputs(&resp, &outs);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ServeCmd,
    }

    fn parse(args: &[&str]) -> ServeCmd {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    #[test]
    fn load_flags_become_the_load_parameters() {
        let ServeCmd::Load(l) = parse(&[
            "load",
            "fraud",
            "--alias",
            "champion",
            "--dynamic-batching",
            "--max-batch-size",
            "64",
            "--preferred-batch-size",
            "4,8",
            "--max-queue-delay-us",
            "200",
        ]) else {
            panic!("not a load");
        };
        let p = l.parameters();
        let v = |k: &str| p[k].parameter_choice.clone().unwrap();
        assert_eq!(v("alias"), ParameterChoice::StringParam("champion".into()));
        assert_eq!(v("dynamic_batching"), ParameterChoice::BoolParam(true));
        assert_eq!(v("max_batch_size"), ParameterChoice::Int64Param(64));
        assert_eq!(
            v("preferred_batch_size"),
            ParameterChoice::StringParam("4,8".into())
        );
        assert_eq!(v("max_queue_delay_us"), ParameterChoice::Int64Param(200));
        assert!(!p.contains_key("version") && !p.contains_key("max_queue_size"));
        let ServeCmd::Load(l) = parse(&[
            "load",
            "fraud",
            "--version",
            "3",
            "--dynamic-batching=false",
        ]) else {
            panic!("not a load");
        };
        let p = l.parameters();
        assert_eq!(
            p["version"].parameter_choice,
            Some(ParameterChoice::Int64Param(3))
        );
        assert_eq!(
            p["dynamic_batching"].parameter_choice,
            Some(ParameterChoice::BoolParam(false))
        );
        assert!(
            Cli::try_parse_from(["serve", "load", "m", "--version", "1", "--alias", "a"]).is_err()
        );
    }

    #[test]
    fn help_texts_describe_the_commands_and_the_file_forms() {
        let mut cmd = Cli::command();
        cmd.build();
        let help = |name: &str| {
            cmd.find_subcommand(name)
                .unwrap_or_else(|| panic!("no {name}"))
                .clone()
                .render_long_help()
                .to_string()
        };
        let infer = help("infer");
        for needle in [
            "--input <FILE>",
            "--output <NAME>",
            "--version",
            "\"datatype\": \"FP32\"",
            "CSV",
            "header row",
        ] {
            assert!(
                infer.contains(needle),
                "infer --help lacks {needle:?}:\n{infer}"
            );
        }
        let load = help("load");
        for needle in [
            "--alias",
            "--dynamic-batching",
            "--preferred-batch-size <N,N>",
            "champion",
            "RESOURCE_EXHAUSTED",
        ] {
            assert!(
                load.contains(needle),
                "load --help lacks {needle:?}:\n{load}"
            );
        }
        assert!(help("list").contains("--ready"));
        assert!(help("unload").contains("<MODEL>"));
    }
}
