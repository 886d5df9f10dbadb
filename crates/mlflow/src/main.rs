//! `mlops-mlflow`: MLflow's REST API in front of the platform's services.

use mlops_mlflow::MlflowConfig;
use mlops_runtime::shutdown::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match MlflowConfig::load(std::env::args_os()) {
        Ok(c) => c,
        Err(mlops_runtime::config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("mlops-mlflow: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = mlops_runtime::telemetry::init("mlflow")?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        mlops_runtime::shutdown::signal().await;
        trigger.cancel();
    });
    mlops_mlflow::serve(config, shutdown).await
}
