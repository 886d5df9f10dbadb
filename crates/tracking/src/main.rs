//! `mlops-tracking`: the tracking service on its own.

use mlops_runtime::shutdown::CancellationToken;
use mlops_tracking::TrackingConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match TrackingConfig::load(std::env::args_os()) {
        Ok(c) => c,
        Err(mlops_runtime::config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("mlops-tracking: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = mlops_runtime::telemetry::init("tracking")?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        mlops_runtime::shutdown::signal().await;
        trigger.cancel();
    });
    mlops_tracking::serve(config, shutdown).await
}
