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
    List {
        /// A filter like "name LIKE 'fraud%'".
        #[arg(long, default_value = "")]
        filter: String,
        /// Include deleted experiments.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max_results: i32,
    },
    /// Show one experiment by id or name.
    Show { id_or_name: String },
    /// Create an experiment; prints its id.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        artifact_location: String,
    },
    /// Rename an experiment.
    Rename { id: String, new_name: String },
    /// Delete an experiment and its runs (restorable).
    Delete { id: String },
    /// Restore a deleted experiment.
    Restore { id: String },
}

/// Run commands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCmd {
    /// List the runs of experiments (newest first).
    List {
        /// Experiment ids; none means every experiment.
        #[arg(long = "experiment", short = 'e')]
        experiments: Vec<String>,
        #[arg(long, default_value_t = 100)]
        max_results: i32,
    },
    /// Search runs with MLflow's filter grammar.
    Search {
        /// e.g. "metrics.auc > 0.9 and params.model = 'rf'".
        filter: String,
        #[arg(long = "experiment", short = 'e')]
        experiments: Vec<String>,
        /// e.g. "metrics.auc DESC"; repeatable.
        #[arg(long)]
        order_by: Vec<String>,
        #[arg(long, default_value_t = 100)]
        max_results: i32,
    },
    /// Show one run with its params, metrics, tags and inputs.
    Show { run_id: String },
    /// Print a metric's full history.
    History { run_id: String, metric: String },
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

/// Runs an experiments command.
pub async fn experiments(c: Client, cmd: ExperimentsCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        ExperimentsCmd::List {
            filter,
            all,
            max_results,
        } => list_experiments(c, out, filter, all, max_results).await,
        ExperimentsCmd::Show { id_or_name } => show_experiment(c, out, id_or_name).await,
        ExperimentsCmd::Create {
            name,
            artifact_location,
        } => create_experiment(c, out, name, artifact_location).await,
        ExperimentsCmd::Rename { id, new_name } => rename_experiment(c, id, new_name).await,
        ExperimentsCmd::Delete { id } => delete_experiment(c, id).await,
        ExperimentsCmd::Restore { id } => restore_experiment(c, id).await,
    }
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

/// `mlops experiments list`; `all` includes deleted ones.
async fn list_experiments(
    mut c: Client,
    out: Output,
    filter: String,
    all: bool,
    max_results: i32,
) -> anyhow::Result<()> {
    let view = if all {
        pb::ViewType::All
    } else {
        pb::ViewType::ActiveOnly
    } as i32;
    let req = pb::SearchExperimentsRequest {
        filter,
        max_results,
        view_type: view,
        ..Default::default()
    };
    out.list(
        c.search_experiments(req),
        |r| r.experiments,
        experiment_json,
        EXPERIMENT_HEADER,
        experiment_row,
    )
    .await?;
    Ok(())
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

/// `mlops experiments show`: by id when all digits, else by name.
async fn show_experiment(mut c: Client, out: Output, id_or_name: String) -> anyhow::Result<()> {
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

/// `mlops experiments create`: prints the new id.
async fn create_experiment(
    mut c: Client,
    out: Output,
    name: String,
    artifact_location: String,
) -> anyhow::Result<()> {
    let req = pb::CreateExperimentRequest {
        name,
        artifact_location,
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

/// `mlops experiments rename`: prints nothing.
async fn rename_experiment(mut c: Client, id: String, new_name: String) -> anyhow::Result<()> {
    c.update_experiment(pb::UpdateExperimentRequest {
        experiment_id: id,
        new_name,
    })
    .await?;
    Ok(())
}

/// `mlops experiments delete`: prints nothing.
async fn delete_experiment(mut c: Client, id: String) -> anyhow::Result<()> {
    c.delete_experiment(pb::DeleteExperimentRequest { experiment_id: id })
        .await?;
    Ok(())
}

/// `mlops experiments restore`: prints nothing.
async fn restore_experiment(mut c: Client, id: String) -> anyhow::Result<()> {
    c.restore_experiment(pb::RestoreExperimentRequest { experiment_id: id })
        .await?;
    Ok(())
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

/// Runs a runs command.
pub async fn runs(c: Client, cmd: RunsCmd, out: Output) -> anyhow::Result<()> {
    let search = |experiment_ids, filter, order_by, max_results| pb::SearchRunsRequest {
        experiment_ids,
        filter,
        order_by,
        max_results,
        ..Default::default()
    };
    match cmd {
        RunsCmd::List {
            experiments,
            max_results,
        } => {
            search_runs(
                c,
                out,
                search(experiments, String::new(), vec![], max_results),
            )
            .await
        }
        RunsCmd::Search {
            filter,
            experiments,
            order_by,
            max_results,
        } => search_runs(c, out, search(experiments, filter, order_by, max_results)).await,
        RunsCmd::Show { run_id } => show_run(c, out, run_id).await,
        RunsCmd::History { run_id, metric } => history(c, out, run_id, metric).await,
    }
}

/// `mlops runs list` and `mlops runs search`.
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

/// `mlops runs show`.
async fn show_run(mut c: Client, out: Output, run_id: String) -> anyhow::Result<()> {
    out.call(
        c.get_run(pb::GetRunRequest { run_id }),
        |r| r.run.unwrap_or_default(),
        |run| Some(run_json(run)),
        print_run,
    )
    .await?;
    Ok(())
}

/// `mlops runs history`: every page of the metric's history, printed as one.
async fn history(mut c: Client, out: Output, run_id: String, metric: String) -> anyhow::Result<()> {
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
    out.call(
        all_pages,
        |h| h,
        |h| {
            let points = (0..h.values.len())
                .map(|i| json!({"step": h.steps[i], "timestamp": h.timestamps[i], "value": h.values[i]}))
                .collect::<Vec<_>>();
            Some(json!(points))
        },
        |h| {
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
        },
    )
    .await?;
    Ok(())
}
