//! `mlops`: the platform's command line.
//!
//! - `mlops up`: every service in one process on embedded defaults (SQLite, a
//!   local artifact directory, the in-process bus), printing the addresses;
//! - `mlops experiments ...`, `mlops runs ...`: talk gRPC to the tracking service,
//!   with tables for people and `--json` for scripts.

// Printing to stdout is this binary's job.
#![allow(clippy::print_stdout)]

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
    Up(up::UpArgs),
    /// Experiments: list, show, create, rename, delete, restore.
    #[command(subcommand)]
    Experiments(tracking::ExperimentsCmd),
    /// Runs: list, show, search with MLflow's filter grammar, history of a metric.
    #[command(subcommand)]
    Runs(tracking::RunsCmd),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Experiments(cmd) => {
            let out = tracking::Output { json: cli.json };
            match tracking::connect(&cli.tracking_addr, cli.token.as_deref()).await {
                Ok(client) => tracking::experiments(client, cmd, out).await,
                Err(e) => Err(e),
            }
        }
        Command::Runs(cmd) => {
            let out = tracking::Output { json: cli.json };
            match tracking::connect(&cli.tracking_addr, cli.token.as_deref()).await {
                Ok(client) => tracking::runs(client, cmd, out).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(err) = result {
        eprintln!("mlops: {err:#}");
        std::process::exit(1);
    }
}
