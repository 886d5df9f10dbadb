//! `mlops experiments` and `mlops runs`.

use mlops_proto::tracking::v1 as pb;
use serde_json::json;

use crate::client::TrackingClient as Client;
use crate::output::Output;
use crate::table;

/// Experiment commands.
#[derive(Debug, clap::Subcommand)]
pub enum ExperimentsCmd {
    /// List experiments.
    List(ListExperiments),
    /// Show one experiment by id or name.
    Show(ShowExperiment),
    /// Create an experiment; prints its id.
    Create(CreateExperiment),
    /// Rename an experiment.
    Rename(RenameExperiment),
    /// Delete an experiment and its runs (restorable).
    Delete(DeleteExperiment),
    /// Restore a deleted experiment.
    Restore(RestoreExperiment),
}

/// Run commands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCmd {
    /// List the runs of experiments (newest first).
    List(ListRuns),
    /// Search runs with MLflow's filter grammar.
    Search(SearchRuns),
    /// Show one run with its params, metrics, tags and inputs.
    Show(ShowRun),
    /// Print a metric's full history.
    History(History),
}

/// Runs an experiments command.
pub async fn experiments(c: Client, cmd: ExperimentsCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        ExperimentsCmd::List(a) => a.run(c, out).await,
        ExperimentsCmd::Show(a) => a.run(c, out).await,
        ExperimentsCmd::Create(a) => a.run(c, out).await,
        ExperimentsCmd::Rename(a) => a.run(c).await,
        ExperimentsCmd::Delete(a) => a.run(c).await,
        ExperimentsCmd::Restore(a) => a.run(c).await,
    }
}

/// Runs a runs command.
pub async fn runs(c: Client, cmd: RunsCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        RunsCmd::List(a) => a.run(c, out).await,
        RunsCmd::Search(a) => a.run(c, out).await,
        RunsCmd::Show(a) => a.run(c, out).await,
        RunsCmd::History(a) => a.run(c, out).await,
    }
}

fn status_name(s: i32) -> &'static str {
    pb::RunStatus::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("RUN_STATUS_"))
        .unwrap_or("?")
}

fn stage_name(s: i32) -> &'static str {
    pb::LifecycleStage::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("LIFECYCLE_STAGE_"))
        .unwrap_or("?")
}

fn experiment_json(e: &pb::Experiment) -> serde_json::Value {
    json!({
        "experiment_id": e.experiment_id, "name": e.name, "artifact_location": e.artifact_location,
        "lifecycle_stage": stage_name(e.lifecycle_stage).to_lowercase(), "creation_time": e.creation_time,
        "last_update_time": e.last_update_time,
        "tags": e.tags.iter().map(|t| (t.key.clone(), json!(t.value))).collect::<serde_json::Map<_, _>>(),
    })
}

fn run_json(r: &pb::Run) -> serde_json::Value {
    let i = r.info.clone().unwrap_or_default();
    let d = r.data.clone().unwrap_or_default();
    json!({
        "run_id": i.run_id, "run_name": i.run_name, "experiment_id": i.experiment_id, "status": status_name(i.status),
        "start_time": i.start_time, "end_time": i.end_time, "artifact_uri": i.artifact_uri,
        "lifecycle_stage": stage_name(i.lifecycle_stage).to_lowercase(), "parent_run_id": i.parent_run_id,
        "params": d.params.iter().map(|p| (p.key.clone(), json!(p.value))).collect::<serde_json::Map<_, _>>(),
        "metrics": d.metrics.iter().map(|m| (m.key.clone(), json!(m.value))).collect::<serde_json::Map<_, _>>(),
        "tags": d.tags.iter().map(|t| (t.key.clone(), json!(t.value))).collect::<serde_json::Map<_, _>>(),
        "inputs": r.inputs.clone().unwrap_or_default().dataset_inputs.iter().map(|di| {
            let ds = di.dataset.clone().unwrap_or_default();
            json!({"name": ds.name, "digest": ds.digest, "source_type": ds.source_type, "context": di.context})
        }).collect::<Vec<_>>(),
    })
}

/// The columns of `mlops experiments list`; [`experiment_row`] fills them.
const EXPERIMENT_HEADER: &[&str] = &["ID", "NAME", "STAGE", "CREATED", "ARTIFACT LOCATION"];

fn experiment_row(e: &pb::Experiment) -> Vec<String> {
    vec![
        e.experiment_id.clone(),
        e.name.clone(),
        stage_name(e.lifecycle_stage).to_lowercase(),
        table::time(Some(e.creation_time)),
        e.artifact_location.clone(),
    ]
}

// Each subcommand: its arguments (documented on the variant above), and what it does.

#[derive(Debug, clap::Args)]
pub struct ListExperiments {
    /// A filter like "name LIKE 'fraud%'".
    #[arg(long, default_value = "")]
    filter: String,
    /// Include deleted experiments.
    #[arg(long)]
    all: bool,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    max_results: i32,
}

impl ListExperiments {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let view = if self.all {
            pb::ViewType::All
        } else {
            pb::ViewType::ActiveOnly
        } as i32;
        let req = pb::SearchExperimentsRequest {
            filter: self.filter,
            max_results: self.max_results,
            view_type: view,
            ..Default::default()
        };
        let call = c.search_experiments(req);
        out.list(
            call,
            |r| r.experiments,
            experiment_json,
            EXPERIMENT_HEADER,
            experiment_row,
        )
        .await?;
        Ok(())
    }
}

/// An experiment as a FIELD / VALUE table.
fn print_experiment(e: &pb::Experiment) {
    let mut rows = vec![
        vec!["id".into(), e.experiment_id.clone()],
        vec!["name".into(), e.name.clone()],
        vec!["stage".into(), stage_name(e.lifecycle_stage).to_lowercase()],
        vec!["created".into(), table::time(Some(e.creation_time))],
        vec!["artifact location".into(), e.artifact_location.clone()],
    ];
    rows.extend(
        e.tags
            .iter()
            .map(|t| vec![format!("tag {}", t.key), t.value.clone()]),
    );
    table::print(&["FIELD", "VALUE"], &rows);
}

#[derive(Debug, clap::Args)]
pub struct ShowExperiment {
    id_or_name: String,
}

impl ShowExperiment {
    /// By id when all digits, else by name.
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let id_or_name = self.id_or_name;
        let call = async {
            if id_or_name.chars().all(|c| c.is_ascii_digit()) {
                c.get_experiment(pb::GetExperimentRequest {
                    experiment_id: id_or_name,
                })
                .await
            } else {
                c.get_experiment_by_name(pb::GetExperimentByNameRequest { name: id_or_name })
                    .await
            }
        };
        out.call(
            call,
            |r| r.experiment.unwrap_or_default(),
            |e| Some(experiment_json(e)),
            print_experiment,
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateExperiment {
    name: String,
    #[arg(long, default_value = "")]
    artifact_location: String,
}

impl CreateExperiment {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::CreateExperimentRequest {
            name: self.name,
            artifact_location: self.artifact_location,
            tags: vec![],
        };
        out.call(
            c.create_experiment(req),
            |r| r.experiment_id,
            |id| Some(json!({ "experiment_id": id })),
            |id| println!("{id}"),
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct RenameExperiment {
    id: String,
    new_name: String,
}

impl RenameExperiment {
    /// Prints nothing.
    async fn run(self, mut c: Client) -> anyhow::Result<()> {
        c.update_experiment(pb::UpdateExperimentRequest {
            experiment_id: self.id,
            new_name: self.new_name,
        })
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct DeleteExperiment {
    id: String,
}

impl DeleteExperiment {
    /// Prints nothing.
    async fn run(self, mut c: Client) -> anyhow::Result<()> {
        c.delete_experiment(pb::DeleteExperimentRequest {
            experiment_id: self.id,
        })
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct RestoreExperiment {
    id: String,
}

impl RestoreExperiment {
    /// Prints nothing.
    async fn run(self, mut c: Client) -> anyhow::Result<()> {
        c.restore_experiment(pb::RestoreExperimentRequest {
            experiment_id: self.id,
        })
        .await?;
        Ok(())
    }
}

fn runs_table(runs: &[pb::Run]) {
    let rows = runs
        .iter()
        .map(|r| {
            let i = r.info.clone().unwrap_or_default();
            let d = r.data.clone().unwrap_or_default();
            let metrics = d
                .metrics
                .iter()
                .map(|m| format!("{}={:.4}", m.key, m.value))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                i.run_id,
                i.run_name,
                i.experiment_id,
                status_name(i.status).to_owned(),
                table::time(Some(i.start_time)),
                metrics,
            ]
        })
        .collect::<Vec<_>>();
    table::print(
        &[
            "RUN ID",
            "NAME",
            "EXPERIMENT",
            "STATUS",
            "STARTED",
            "METRICS",
        ],
        &rows,
    );
}

/// Prints a search's runs, as `mlops runs list` and `mlops runs search` do.
async fn search_runs(mut c: Client, out: Output, req: pb::SearchRunsRequest) -> anyhow::Result<()> {
    out.call(
        c.search_runs(req),
        |r| r,
        |r| {
            Some(
                json!({"runs": r.runs.iter().map(run_json).collect::<Vec<_>>(), "next_page_token": r.next_page_token}),
            )
        },
        |r| {
            runs_table(&r.runs);
            if !r.next_page_token.is_empty() {
                println!("(more results: raise --max-results)");
            }
        },
    )
    .await?;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ListRuns {
    /// Experiment ids; none means every experiment.
    #[arg(long = "experiment", short = 'e')]
    experiments: Vec<String>,
    #[arg(long, default_value_t = 100)]
    max_results: i32,
}

impl ListRuns {
    async fn run(self, c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::SearchRunsRequest {
            experiment_ids: self.experiments,
            filter: String::new(),
            order_by: vec![],
            max_results: self.max_results,
            ..Default::default()
        };
        search_runs(c, out, req).await
    }
}

#[derive(Debug, clap::Args)]
pub struct SearchRuns {
    /// e.g. "metrics.auc > 0.9 and params.model = 'rf'".
    filter: String,
    #[arg(long = "experiment", short = 'e')]
    experiments: Vec<String>,
    /// e.g. "metrics.auc DESC"; repeatable.
    #[arg(long)]
    order_by: Vec<String>,
    #[arg(long, default_value_t = 100)]
    max_results: i32,
}

impl SearchRuns {
    async fn run(self, c: Client, out: Output) -> anyhow::Result<()> {
        let req = pb::SearchRunsRequest {
            experiment_ids: self.experiments,
            filter: self.filter,
            order_by: self.order_by,
            max_results: self.max_results,
            ..Default::default()
        };
        search_runs(c, out, req).await
    }
}

/// A run as a FIELD / VALUE table, from its JSON.
fn print_run(run: &pb::Run) {
    let v = run_json(run);
    let mut rows = vec![];
    for k in [
        "run_id",
        "run_name",
        "experiment_id",
        "status",
        "parent_run_id",
        "artifact_uri",
    ] {
        rows.push(vec![k.to_owned(), v[k].as_str().unwrap_or("").to_owned()]);
    }
    rows.push(vec![
        "start_time".into(),
        table::time(v["start_time"].as_i64()),
    ]);
    rows.push(vec!["end_time".into(), table::time(v["end_time"].as_i64())]);
    for section in ["params", "metrics", "tags"] {
        if let Some(map) = v[section].as_object() {
            for (k, val) in map {
                let shown = val
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| val.to_string());
                rows.push(vec![
                    format!("{} {k}", &section[..section.len() - 1]),
                    shown,
                ]);
            }
        }
    }
    for i in v["inputs"].as_array().into_iter().flatten() {
        rows.push(vec![
            format!("input {}", i["name"].as_str().unwrap_or("")),
            format!(
                "{} ({})",
                i["digest"].as_str().unwrap_or(""),
                i["context"].as_str().unwrap_or("")
            ),
        ]);
    }
    table::print(&["FIELD", "VALUE"], &rows);
}

#[derive(Debug, clap::Args)]
pub struct ShowRun {
    run_id: String,
}

impl ShowRun {
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        out.call(
            c.get_run(pb::GetRunRequest {
                run_id: self.run_id,
            }),
            |r| r.run.unwrap_or_default(),
            |run| Some(run_json(run)),
            print_run,
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct History {
    run_id: String,
    metric: String,
}

impl History {
    /// Every page of the metric's history, printed as one.
    async fn run(self, mut c: Client, out: Output) -> anyhow::Result<()> {
        let History { run_id, metric } = self;
        let all_pages = async {
            let mut all = pb::GetMetricHistoryResponse::default();
            let mut token = String::new();
            loop {
                let h = c
                    .get_metric_history(pb::GetMetricHistoryRequest {
                        run_id: run_id.clone(),
                        metric_key: metric.clone(),
                        max_results: 0,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                for i in 0..h.values.len() {
                    all.steps.push(h.steps[i]);
                    all.timestamps.push(h.timestamps[i]);
                    all.values.push(h.values[i]);
                }
                if h.next_page_token.is_empty() {
                    return Ok(tonic::Response::new(all));
                }
                token = h.next_page_token;
            }
        };
        out.call(all_pages, |h| h, history_json, history_table)
            .await?;
        Ok(())
    }
}

fn history_json(h: &pb::GetMetricHistoryResponse) -> Option<serde_json::Value> {
    let points = (0..h.values.len())
        .map(|i| json!({"step": h.steps[i], "timestamp": h.timestamps[i], "value": h.values[i]}))
        .collect::<Vec<_>>();
    Some(json!(points))
}

fn history_table(h: &pb::GetMetricHistoryResponse) {
    let rows = (0..h.values.len())
        .map(|i| {
            vec![
                h.steps[i].to_string(),
                table::time(Some(h.timestamps[i])),
                h.values[i].to_string(),
            ]
        })
        .collect::<Vec<_>>();
    table::print(&["STEP", "TIME", "VALUE"], &rows);
}
