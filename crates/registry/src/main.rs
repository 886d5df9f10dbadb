//! `mlops-registry`: the model registry on its own.

use mlops_registry::RegistryConfig;
use mlops_runtime::shutdown::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match RegistryConfig::load(std::env::args_os()) {
        Ok(c) => c,
        Err(mlops_runtime::config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("mlops-registry: {e}");
            std::process::exit(2);
        }
    };
    let _telemetry = mlops_runtime::telemetry::init("registry")?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        mlops_runtime::shutdown::signal().await;
        trigger.cancel();
    });
    mlops_registry::serve(config, shutdown).await
}
