//! `mlops up`: the whole platform in one process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use mlops_events::memory::InProcessBus;
use mlops_events::EventBus;
use mlops_mlflow::{Gateway, MlflowConfig};
use mlops_registry::{Registry, RegistryConfig};
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
    /// The registry's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50052")]
    registry_addr: String,
    /// The registry's admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    registry_admin_addr: String,
    /// The MLflow REST API's HTTP address (mlflow.set_tracking_uri("http://ADDR")).
    #[arg(long, default_value = "127.0.0.1:5000")]
    mlflow_addr: String,
    /// The MLflow REST API's admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9095")]
    mlflow_admin_addr: String,
    /// Where run artifacts go instead of <data-dir>/artifacts: a directory or
    /// s3://BUCKET/PREFIX (with the AWS_* variables for endpoint and credentials);
    /// registered model files then go under <root>/models instead of <data-dir>/models.
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
    if let Some(root) = &args.artifact_root {
        config.artifact_root = root.clone();
    }
    let tracking = Tracking::bind(config, Some(bus.clone())).await?;
    let mut registry_config = RegistryConfig::local(
        &args.data_dir,
        &args.registry_addr,
        &args.registry_admin_addr,
        &format!("http://{}", tracking.grpc_addr()),
    );
    if let Some(root) = &args.artifact_root {
        // Model files sit beside the runs' (experiment folders are numbered).
        registry_config.artifact_root = format!("{}/models", root.trim_end_matches('/'));
    }
    let registry = Registry::bind(registry_config, Some(bus.clone())).await?;
    let mlflow = Gateway::bind(MlflowConfig::local(
        &args.mlflow_addr,
        &args.mlflow_admin_addr,
        &format!("http://{}", tracking.grpc_addr()),
        &format!("http://{}", registry.grpc_addr()),
    ))
    .await?;
    println!("mlops up: data in {}", args.data_dir.display());
    println!(
        "  tracking  grpc {}  admin http://{}",
        tracking.grpc_addr(),
        tracking.admin_addr()
    );
    println!(
        "  registry  grpc {}  admin http://{}",
        registry.grpc_addr(),
        registry.admin_addr()
    );
    println!(
        "  mlflow    http://{0}  admin http://{1}  (MLflow REST API: mlflow.set_tracking_uri(\"http://{0}\"))",
        mlflow.http_addr(),
        mlflow.admin_addr()
    );
    println!("ready; Ctrl-C stops");

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        mlops_runtime::shutdown::signal().await;
        trigger.cancel();
    });
    // The MLflow gateway stops first: the requests it drains still reach the services.
    let services = CancellationToken::new();
    let front = async {
        let done = mlflow.run(shutdown).await;
        services.cancel();
        done
    };
    let (t, r, m) = tokio::join!(
        tracking.run(services.clone()),
        registry.run(services.clone()),
        front
    );
    t?;
    r?;
    m?;
    println!("mlops up: stopped");
    Ok(())
}
