//! `mlops`: the platform's command line.
//!
//! - `mlops up`: every service in one process on embedded defaults (SQLite, a
//!   local artifact directory, the in-process bus), printing the addresses;
//! - `mlops experiments ...`, `mlops runs ...`: talk gRPC to the tracking service,
//!   with tables for people and `--json` for scripts;
//! - `mlops models ...`: the model registry; `mlops models gate` exits non-zero when
//!   the candidate fails, so a CI pipeline can run it as a step;
//! - `mlops serve ...`: the inference service: load, unload and list models, and run
//!   one on a JSON or CSV file;
//! - `mlops features ...`: the feature store: apply definitions, list and describe them,
//!   training data from the point-in-time join;
//! - `mlops monitor ...`: drift monitors: create, upload a reference, test a window,
//!   reports and status; `mlops monitor push` exits 3 when the dataset drifted;
//! - `mlops retrain ...`: retraining policies per model, manual retrains and their
//!   progress; `mlops retrain run --wait` exits 3 when the candidate was not promoted.

// Printing to stdout is this binary's job.
#![allow(clippy::print_stdout)]

mod client;
mod deploy;
mod features;
mod models;
mod models_view;
mod monitor;
mod monitor_html;
mod monitor_perf;
mod monitor_view;
mod output;
mod retrain;
mod retrain_view;
mod serve;
mod serve_input;
mod serve_view;
mod table;
mod tracking;
mod up;

use clap::{Parser, Subcommand};

/// The MLOps platform's command line.
#[derive(Debug, Parser)]
#[command(
    name = "mlops",
    version,
    about = "Run the platform and talk to its services"
)]
struct Cli {
    /// The tracking service's gRPC address.
    #[arg(
        long,
        global = true,
        env = "MLOPS_TRACKING_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    tracking_addr: String,
    /// The registry's gRPC address.
    #[arg(
        long,
        global = true,
        env = "MLOPS_REGISTRY_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    registry_addr: String,
    /// The inference service's gRPC address (Triton's GRPCInferenceService).
    #[arg(
        long,
        global = true,
        env = "MLOPS_INFERENCE_ADDR",
        default_value = "http://127.0.0.1:8001"
    )]
    inference_addr: String,
    /// The feature store's gRPC address.
    #[arg(
        long,
        global = true,
        env = "MLOPS_FEATURE_STORE_ADDR",
        default_value = "http://127.0.0.1:6566"
    )]
    feature_store_addr: String,
    /// The monitoring service's gRPC address.
    #[arg(
        long,
        global = true,
        env = "MLOPS_MONITORING_ADDR",
        default_value = "http://127.0.0.1:50054"
    )]
    monitoring_addr: String,
    /// The retraining service's gRPC address.
    #[arg(
        long,
        global = true,
        env = "MLOPS_RETRAINING_ADDR",
        default_value = "http://127.0.0.1:50056"
    )]
    retraining_addr: String,
    /// A bearer token for services with auth on.
    #[arg(long, global = true, env = "MLOPS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process on embedded defaults; Ctrl-C stops it.
    Up(Box<up::UpArgs>),
    /// Experiments: list, show, create, rename, delete, restore.
    #[command(subcommand)]
    Experiments(tracking::ExperimentsCmd),
    /// Runs: list, show, search with MLflow's filter grammar, history of a metric.
    #[command(subcommand)]
    Runs(tracking::RunsCmd),
    /// Registered models: list, show, versions, register, aliases, stages, evaluate, gate.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Inference: load, unload and list served models, and infer on a JSON or CSV file.
    #[command(subcommand)]
    Serve(serve::ServeCmd),
    /// The feature store: apply definitions, list and describe them, training data.
    #[command(subcommand)]
    Features(features::FeaturesCmd),
    /// Drift monitors: create, upload a reference, test a window, reports, status.
    #[command(subcommand)]
    Monitor(monitor::MonitorCmd),
    /// Retraining: policies per model, manual retrains, the status of the loop.
    #[command(subcommand)]
    Retrain(retrain::RetrainCmd),
}

#[tokio::main]
async fn main() {
    quiet_on_broken_pipe();
    match run(Cli::parse()).await {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(err) => {
            match err.downcast_ref::<tonic::Status>() {
                // A service's answer: its code and message, which say what to fix.
                Some(s) => eprintln!("mlops: {:?}: {}", s.code(), s.message()),
                None => eprintln!("mlops: {err:#}"),
            }
            std::process::exit(1);
        }
    }
}

/// `mlops runs list | head`: once the reader has gone, the rest of the output has no one
/// to read it. Rust ignores SIGPIPE, so printing fails, and `println!` panics; stop
/// quietly instead, with the status of a command that SIGPIPE ended (128 + 13).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Runs the command; returns the process exit code.
async fn run(cli: Cli) -> anyhow::Result<i32> {
    let out = output::Output { json: cli.json };
    let token = cli.token.as_deref();
    match cli.command {
        Command::Up(args) => up::run(*args).await.map(|()| 0),
        Command::Experiments(cmd) => {
            let c = client::connect(&cli.tracking_addr, token).await?;
            tracking::experiments(c, cmd, out).await.map(|()| 0)
        }
        Command::Runs(cmd) => {
            let c = client::connect(&cli.tracking_addr, token).await?;
            tracking::runs(c, cmd, out).await.map(|()| 0)
        }
        Command::Models(cmd) => {
            let c = client::connect(&cli.registry_addr, token).await?;
            models::run(c, cmd, out).await
        }
        Command::Serve(cmd) => serve::run(&cli.inference_addr, token, cmd, out)
            .await
            .map(|()| 0),
        Command::Features(cmd) => {
            let c = client::connect(&cli.feature_store_addr, token).await?;
            features::run(c, cmd, out).await.map(|()| 0)
        }
        Command::Monitor(cmd) => {
            let c = client::connect(&cli.monitoring_addr, token).await?;
            monitor::run(c, cmd, out).await
        }
        Command::Retrain(cmd) => {
            let c = client::connect(&cli.retraining_addr, token).await?;
            retrain::run(c, cmd, out).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_serve_has_its_address() {
        super::Cli::command().debug_assert();
        let help = super::Cli::command().render_long_help().to_string();
        assert!(help.contains("--inference-addr"), "{help}");
        assert!(help.contains("MLOPS_INFERENCE_ADDR"), "{help}");
        assert!(help.contains("http://127.0.0.1:8001"), "{help}");
        assert!(help.contains("serve"), "{help}");
        assert!(help.contains("--retraining-addr"), "{help}");
        assert!(help.contains("MLOPS_RETRAINING_ADDR"), "{help}");
        assert!(help.contains("http://127.0.0.1:50056"), "{help}");
        assert!(help.contains("retrain"), "{help}");
    }
}

/// mimalloc rather than glibc's malloc: on the inference bench a request took a quarter
/// less CPU (a service allocates and frees a great deal per request, across threads).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
