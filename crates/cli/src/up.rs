//! `mlops up`: the whole platform in one process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use mlops_events::memory::InProcessBus;
use mlops_events::EventBus;
use mlops_runtime::shutdown::CancellationToken;
use mlops_tracking::{Tracking, TrackingConfig};

/// Where `mlops up` keeps its data and listens.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory for the databases and artifacts (created if missing).
    #[arg(long, env = "MLOPS_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The tracking service's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    tracking_addr: String,
    /// The tracking service's admin HTTP address (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "127.0.0.1:9091")]
    tracking_admin_addr: String,
    /// Where run artifacts go instead of <data-dir>/artifacts: a directory or
    /// s3://BUCKET/PREFIX (with the AWS_* variables for endpoint and credentials).
    #[arg(long)]
    artifact_root: Option<String>,
}

/// Runs every service built so far until Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let _telemetry = mlops_runtime::telemetry::init("up")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    let mut config = TrackingConfig::local(
        &args.data_dir,
        &args.tracking_addr,
        &args.tracking_admin_addr,
    );
    if let Some(root) = args.artifact_root {
        config.artifact_root = root;
    }
    let tracking = Tracking::bind(config, Some(bus.clone())).await?;
    println!("mlops up: data in {}", args.data_dir.display());
    println!(
        "  tracking  grpc {}  admin http://{}",
        tracking.grpc_addr(),
        tracking.admin_addr()
    );
    println!("ready; Ctrl-C stops");

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        mlops_runtime::shutdown::signal().await;
        trigger.cancel();
    });
    tracking.run(shutdown).await?;
    println!("mlops up: stopped");
    Ok(())
}
