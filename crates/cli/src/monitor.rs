//! `mlops monitor create|reference|push|report|status|delete`: drift monitors, their
//! reference tables and their reports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mlops_proto::monitoring::v1 as pb;
use serde_json::json;

use crate::client::MonitoringClient as Client;
use crate::monitor_view::{
    monitor_json, print_report, reference_cell, report_json, type_name, when,
};
use crate::output::{print_json, Output};
use crate::table;

/// The size of the chunks a table is sent in.
const CHUNK: usize = 1 << 20;

/// Where a monitor's windows come from besides pushes: the prediction log.
#[derive(Debug, clap::Args)]
pub struct LogSourceArgs {
    /// Also cut windows from the inference service's prediction log: close one at
    /// this many rows (with or without --window-seconds).
    #[arg(long)]
    window_rows: Option<i64>,
    /// Also cut windows from the prediction log: close one after this many seconds
    /// of prediction time (windows aligned to the epoch).
    #[arg(long)]
    window_seconds: Option<i64>,
    /// The deployment whose predictions are followed (default: --model).
    #[arg(long, default_value = "")]
    deployment: String,
    /// The names of the model inputs' features, in order, comma-separated (default:
    /// a tensor's name, or NAME_0, NAME_1, ... for a tensor of several features).
    #[arg(long, value_delimiter = ',')]
    input_columns: Vec<String>,
    /// Take the reference from the prediction log: the first this many rows logged
    /// after the monitor is created (at most 1,000,000) become its reference v1.
    #[arg(long)]
    reference_rows: Option<i64>,
}

/// How a monitor tests its columns (Evidently's `DataDriftPreset` options).
#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// The drift method for every column (Evidently's names: ks, chisquare, z,
    /// wasserstein, jensenshannon, psi, kl_div, anderson, cramer_von_mises, mannw,
    /// t_test, ed, es, hellinger, TVD, fisher_exact, g_test, empirical_mmd); none:
    /// Evidently's default choice.
    #[arg(long, default_value = "")]
    method: String,
    /// The method for numerical columns.
    #[arg(long, default_value = "")]
    num_method: String,
    /// The method for categorical columns.
    #[arg(long, default_value = "")]
    cat_method: String,
    /// A column's method, `COLUMN=METHOD` (repeat).
    #[arg(long = "column-method", value_parser = pair::<String>)]
    column_methods: Vec<(String, String)>,
    /// The threshold for every column (the method's default when unset).
    #[arg(long)]
    threshold: Option<f64>,
    /// The threshold for numerical columns.
    #[arg(long)]
    num_threshold: Option<f64>,
    /// The threshold for categorical columns.
    #[arg(long)]
    cat_threshold: Option<f64>,
    /// A column's threshold, `COLUMN=THRESHOLD` (repeat).
    #[arg(long = "column-threshold", value_parser = pair::<f64>)]
    column_thresholds: Vec<(String, f64)>,
    /// The share of drifted columns at which the dataset drifts (default 0.5).
    #[arg(long)]
    drift_share: Option<f64>,
    /// A multiple-testing correction over the p-value columns.
    #[arg(long, value_enum, default_value = "none")]
    correction: CorrectionArg,
}

/// The monitoring service's commands.
#[derive(Debug, clap::Subcommand)]
pub enum MonitorCmd {
    /// Create a monitor (or, with --update, replace an existing one's settings).
    Create {
        /// Its name.
        name: String,
        /// The registered model it watches (events and metrics name it).
        #[arg(long, default_value = "")]
        model: String,
        /// A column to test, `NAME` or `NAME:numerical|categorical` (repeat; none: every
        /// column of the reference, types inferred as Evidently infers them).
        #[arg(long = "column", value_parser = column_arg)]
        columns: Vec<pb::ColumnSpec>,
        /// Methods, thresholds, share, correction.
        #[command(flatten)]
        drift: Box<DriftArgs>,
        /// At most one DriftDetected event per this many seconds.
        #[arg(long, default_value_t = 0)]
        cooldown: i64,
        /// Windows from the prediction log.
        #[command(flatten)]
        log: Box<LogSourceArgs>,
        /// The model's performance on those windows.
        #[command(flatten)]
        perf: Box<crate::monitor_perf::PerformanceArgs>,
        /// Replace the settings of an existing monitor instead.
        #[arg(long)]
        update: bool,
    },
    /// Upload a new version of a monitor's reference (a local Parquet file, or an Arrow
    /// IPC stream when it ends in .arrow, .arrows or .ipc), or take it from the next
    /// rows of the prediction log (--from-log).
    Reference {
        /// The monitor.
        name: String,
        /// The table.
        #[arg(required_unless_present = "from_log", conflicts_with = "from_log")]
        file: Option<PathBuf>,
        /// Take the reference from the next ROWS rows the monitor's deployment logs
        /// (0: its --reference-rows); it becomes the next version when the last comes.
        #[arg(long, value_name = "ROWS")]
        from_log: Option<i64>,
    },
    /// Test a current window (a local Parquet or Arrow IPC file) against the reference;
    /// prints the report. Exits 3 when the dataset drifted.
    Push {
        /// The monitor.
        name: String,
        /// The table.
        file: PathBuf,
        /// The model version whose inputs the window holds.
        #[arg(long, default_value = "")]
        model_version: String,
    },
    /// A stored report: the newest, or --id's.
    Report {
        /// The monitor.
        name: String,
        /// The report's id (default: the newest).
        #[arg(long, default_value = "")]
        id: String,
        /// Also write the report as a self-contained HTML page (verdicts and a chart of
        /// reference vs current per column) to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Labels (ground truth) for logged predictions, from a CSV file whose header names
    /// request_id, row (optional) and label: the realised performance of their windows.
    Labels {
        /// The monitor.
        name: String,
        /// The CSV file.
        file: PathBuf,
    },
    /// The model's performance per prediction-log window, newest first: realised from
    /// labels, estimated (CBPE) without them.
    Performance {
        /// The monitor.
        name: String,
        /// At most this many windows.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Every monitor with its newest verdict; or one monitor's reports over time.
    Status {
        /// Only this monitor: its reports, newest first.
        name: Option<String>,
        /// At most this many reports.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Delete a monitor, its references and its reports.
    Delete {
        /// The monitor.
        name: String,
    },
}

/// A multiple-testing correction.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CorrectionArg {
    /// None (as Evidently).
    None,
    /// Bonferroni.
    Bonferroni,
    /// Benjamini-Hochberg.
    BenjaminiHochberg,
}

fn column_arg(s: &str) -> Result<pb::ColumnSpec, String> {
    let (name, ty) = match s.rsplit_once(':') {
        Some((n, "numerical")) => (n, pb::ColumnType::Numerical),
        Some((n, "categorical")) => (n, pb::ColumnType::Categorical),
        Some((_, t)) => {
            return Err(format!(
                "`{t}`: a column's type is numerical or categorical (NAME:TYPE)"
            ))
        }
        None => (s, pb::ColumnType::Unspecified),
    };
    Ok(pb::ColumnSpec {
        name: name.to_owned(),
        r#type: ty as i32,
    })
}

fn pair<T: std::str::FromStr>(s: &str) -> Result<(String, T), String>
where
    T::Err: std::fmt::Display,
{
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write COLUMN=VALUE"))?;
    let v = v.parse::<T>().map_err(|e| format!("`{v}`: {e}"))?;
    Ok((k.to_owned(), v))
}

fn format_of(file: &Path) -> pb::TableFormat {
    match file.extension().and_then(|e| e.to_str()) {
        Some("arrow" | "arrows" | "ipc") => pb::TableFormat::ArrowIpc,
        _ => pb::TableFormat::Parquet,
    }
}

fn chunks(file: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(if bytes.is_empty() {
        vec![Vec::new()]
    } else {
        bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect()
    })
}

/// Runs a monitoring command; returns the exit code.
pub async fn run(mut c: Client, cmd: MonitorCmd, out: Output) -> anyhow::Result<i32> {
    match cmd {
        MonitorCmd::Create {
            name,
            model,
            columns,
            drift,
            cooldown,
            log,
            perf,
            update,
        } => {
            let performance = perf.spec();
            let DriftArgs {
                method,
                num_method,
                cat_method,
                column_methods,
                threshold,
                num_threshold,
                cat_threshold,
                column_thresholds,
                drift_share,
                correction,
            } = *drift;
            let LogSourceArgs {
                window_rows,
                window_seconds,
                deployment,
                input_columns,
                reference_rows,
            } = *log;
            let prediction_log = (window_rows.is_some() || window_seconds.is_some()).then(|| {
                pb::PredictionLogSource {
                    deployment,
                    window_rows: window_rows.unwrap_or(0),
                    window_seconds: window_seconds.unwrap_or(0),
                    input_columns,
                    reference_rows: reference_rows.unwrap_or(0),
                }
            });
            let options = pb::DriftOptions {
                method,
                num_method,
                cat_method,
                per_column_method: column_methods.into_iter().collect(),
                threshold,
                num_threshold,
                cat_threshold,
                per_column_threshold: column_thresholds.into_iter().collect(),
                drift_share,
                correction: match correction {
                    CorrectionArg::None => pb::Correction::None,
                    CorrectionArg::Bonferroni => pb::Correction::Bonferroni,
                    CorrectionArg::BenjaminiHochberg => pb::Correction::BenjaminiHochberg,
                } as i32,
            };
            let m = if update {
                c.update_monitor(pb::UpdateMonitorRequest {
                    name,
                    model,
                    columns,
                    options: Some(options),
                    cooldown_seconds: cooldown,
                    prediction_log,
                    performance,
                })
                .await?
            } else {
                c.create_monitor(pb::CreateMonitorRequest {
                    name,
                    model,
                    columns,
                    options: Some(options),
                    cooldown_seconds: cooldown,
                    prediction_log,
                    performance,
                })
                .await?
            }
            .into_inner();
            if out.json {
                print_json(&monitor_json(&m));
            } else if let Some(capture) = &m.capture {
                println!(
                    "monitor {} {}; its reference: the next {} rows of the prediction log",
                    m.name,
                    if update { "updated" } else { "created" },
                    capture.rows_wanted
                );
            } else {
                println!(
                    "monitor {} {}; upload its reference with `mlops monitor reference {} FILE`",
                    m.name,
                    if update { "updated" } else { "created" },
                    m.name
                );
            }
            Ok(0)
        }
        MonitorCmd::Reference {
            name,
            file: None,
            from_log,
        } => {
            let m = c
                .capture_reference(pb::CaptureReferenceRequest {
                    monitor: name,
                    rows: from_log.unwrap_or(0),
                })
                .await?
                .into_inner();
            if out.json {
                print_json(&monitor_json(&m));
            } else {
                println!(
                    "monitor {}: its next reference will be the next {} rows of the prediction log (now v{}); `mlops monitor status` shows the progress",
                    m.name,
                    m.capture.as_ref().map_or(0, |c| c.rows_wanted),
                    m.reference_version
                );
            }
            Ok(0)
        }
        MonitorCmd::Reference {
            name,
            file: Some(file),
            ..
        } => {
            let format = format_of(&file) as i32;
            let msgs: Vec<pb::UploadReferenceRequest> = chunks(&file)?
                .into_iter()
                .enumerate()
                .map(|(i, data)| pb::UploadReferenceRequest {
                    monitor: if i == 0 { name.clone() } else { String::new() },
                    format,
                    data: data.into(),
                })
                .collect();
            let r = c
                .upload_reference(futures::stream::iter(msgs))
                .await?
                .into_inner();
            if out.json {
                print_json(&json!({
                    "monitor": r.monitor, "version": r.version, "rows": r.rows,
                    "columns": r.columns.iter().map(|c| json!({
                        "name": c.name, "type": type_name(c.r#type), "count": c.count,
                        "missing": c.missing, "distinct": c.distinct,
                    })).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "monitor {} reference v{}: {} rows",
                    r.monitor, r.version, r.rows
                );
                let rows: Vec<Vec<String>> = r
                    .columns
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            type_name(c.r#type).into(),
                            c.count.to_string(),
                            c.missing.to_string(),
                            c.distinct.to_string(),
                        ]
                    })
                    .collect();
                table::print(&["column", "type", "count", "missing", "distinct"], &rows);
            }
            Ok(0)
        }
        MonitorCmd::Push {
            name,
            file,
            model_version,
        } => {
            let format = format_of(&file) as i32;
            let msgs: Vec<pb::PushWindowRequest> = chunks(&file)?
                .into_iter()
                .enumerate()
                .map(|(i, data)| pb::PushWindowRequest {
                    monitor: if i == 0 { name.clone() } else { String::new() },
                    format,
                    model_version: if i == 0 {
                        model_version.clone()
                    } else {
                        String::new()
                    },
                    data: data.into(),
                })
                .collect();
            let r = c
                .push_window(futures::stream::iter(msgs))
                .await?
                .into_inner();
            if out.json {
                print_json(&report_json(&r));
            } else {
                print_report(&r);
            }
            Ok(if r.dataset_drift { 3 } else { 0 })
        }
        MonitorCmd::Report { name, id, html } => {
            let r = out
                .call(
                    c.get_report(pb::GetReportRequest { monitor: name, id }),
                    |r| r,
                    |r| Some(report_json(r)),
                    print_report,
                )
                .await?;
            if let Some(file) = html {
                std::fs::write(&file, crate::monitor_html::render(&r))
                    .with_context(|| format!("writing {}", file.display()))?;
                if !out.json {
                    println!("wrote {}", file.display());
                }
            }
            Ok(0)
        }
        MonitorCmd::Labels { name, file } => {
            let labels = crate::monitor_perf::read_labels(&file)?;
            let n = labels.len();
            let r = crate::monitor_perf::push_labels(&mut c, &name, labels).await?;
            if out.json {
                print_json(&json!({
                    "stored": r.stored, "matched": r.matched, "windows_updated": r.windows_updated,
                }));
            } else {
                println!(
                    "{n} labels stored for {name}: {} match a logged prediction, {} windows updated",
                    r.matched, r.windows_updated
                );
            }
            Ok(0)
        }
        MonitorCmd::Performance { name, limit } => {
            out.list(
                c.list_performance(pb::ListPerformanceRequest {
                    monitor: name,
                    limit,
                }),
                |r| r.windows,
                crate::monitor_perf::window_json,
                crate::monitor_perf::WINDOW_HEADER,
                crate::monitor_perf::window_row,
            )
            .await?;
            Ok(0)
        }
        MonitorCmd::Status {
            name: Some(name),
            limit,
        } => {
            out.list(
                c.list_reports(pb::ListReportsRequest {
                    monitor: name,
                    limit,
                    since_ms: 0,
                }),
                |r| r.reports,
                report_json,
                &[
                    "created",
                    "id",
                    "reference",
                    "model version",
                    "rows",
                    "share",
                    "drift",
                ],
                |r| {
                    vec![
                        when(r.created_at_ms),
                        r.id.clone(),
                        format!("v{}", r.reference_version),
                        r.model_version.clone(),
                        r.rows.to_string(),
                        format!("{:.3}", r.share),
                        if r.dataset_drift { "DRIFT" } else { "-" }.into(),
                    ]
                },
            )
            .await?;
            Ok(0)
        }
        MonitorCmd::Status { name: None, .. } => {
            let monitors = c
                .list_monitors(pb::ListMonitorsRequest {})
                .await?
                .into_inner()
                .monitors;
            let mut newest = Vec::with_capacity(monitors.len());
            for m in &monitors {
                let r = c
                    .list_reports(pb::ListReportsRequest {
                        monitor: m.name.clone(),
                        limit: 1,
                        since_ms: 0,
                    })
                    .await?
                    .into_inner()
                    .reports
                    .pop();
                newest.push(r);
            }
            if out.json {
                print_json(&json!(monitors
                    .iter()
                    .zip(&newest)
                    .map(|(m, r)| json!({"monitor": monitor_json(m), "newest_report": r.as_ref().map(report_json)}))
                    .collect::<Vec<_>>()));
            } else {
                let rows: Vec<Vec<String>> = monitors
                    .iter()
                    .zip(&newest)
                    .map(|(m, r)| {
                        vec![
                            m.name.clone(),
                            m.model.clone(),
                            reference_cell(m),
                            r.as_ref().map_or("-".into(), |r| when(r.created_at_ms)),
                            r.as_ref().map_or("-".into(), |r| format!("{:.3}", r.share)),
                            r.as_ref().map_or("-".into(), |r| {
                                if r.dataset_drift { "DRIFT" } else { "ok" }.into()
                            }),
                        ]
                    })
                    .collect();
                table::print(
                    &[
                        "monitor",
                        "model",
                        "reference",
                        "newest report",
                        "share",
                        "verdict",
                    ],
                    &rows,
                );
            }
            Ok(0)
        }
        MonitorCmd::Delete { name } => {
            let d = c
                .delete_monitor(pb::DeleteMonitorRequest { name: name.clone() })
                .await?
                .into_inner();
            if out.json {
                print_json(&json!({"deleted": d.deleted}));
            } else if d.deleted {
                println!("monitor {name} deleted");
            } else {
                println!("no monitor named {name}");
            }
            Ok(if d.deleted { 0 } else { 1 })
        }
    }
}
