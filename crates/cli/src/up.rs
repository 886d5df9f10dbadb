//! `mlops up`: the whole platform in one process.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mlops_events::BusArgs;
use mlops_feature_store::FeatureStore;
use mlops_inference::Inference;
use mlops_kit::{entry, Composition, Entry, Local};
use mlops_mlflow::{Gateway, MlflowConfig};
use mlops_monitoring::Monitoring;
use mlops_registry::Registry;
use mlops_retraining::Retraining;
use mlops_runtime::config::ServiceConfig;
use mlops_runtime::shutdown::CancellationToken;
use mlops_tracking::Tracking;

/// Where `mlops up` keeps its data and listens.
#[derive(Debug, clap::Args)]
#[command(after_help = environment_help())]
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
    /// The feature store's gRPC address.
    #[arg(long, default_value = "127.0.0.1:6566")]
    feature_store_addr: String,
    /// The feature store's admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9096")]
    feature_store_admin_addr: String,
    /// The monitoring service's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50054")]
    monitoring_addr: String,
    /// The monitoring service's admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9094")]
    monitoring_admin_addr: String,
    /// The inference service's gRPC address (Triton's GRPCInferenceService).
    #[arg(long, default_value = "127.0.0.1:8001")]
    inference_addr: String,
    /// The inference service's HTTP address (the Open Inference Protocol over HTTP/JSON).
    #[arg(long, default_value = "127.0.0.1:8000")]
    inference_http_addr: String,
    /// The inference service's admin HTTP address (/metrics with Triton's metric names).
    #[arg(long, default_value = "127.0.0.1:8002")]
    inference_admin_addr: String,
    /// The retraining service's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50056")]
    retraining_addr: String,
    /// The retraining service's admin HTTP address.
    #[arg(long, default_value = "127.0.0.1:9097")]
    retraining_admin_addr: String,
    /// Where run artifacts go instead of <data-dir>/artifacts: a directory or
    /// s3://BUCKET/PREFIX (with the AWS_* variables for endpoint and credentials);
    /// registered model files then go under <root>/models instead of <data-dir>/models,
    /// and the feature store's offline store (its Parquet sources and written training
    /// tables) under <root>/features instead of <data-dir>/features.
    #[arg(long)]
    artifact_root: Option<String>,
    /// MLflow's web UI, served at the MLflow address: the build directory of an installed
    /// mlflow package (<site-packages>/mlflow/server/js/build). Without it, `mlops up`
    /// looks for mlflow in the active Python environment ($VIRTUAL_ENV, python3, python)
    /// and serves its UI when it finds one, saying where it looked when it does not.
    #[arg(long, env = "MLOPS_MLFLOW_UI_DIR")]
    mlflow_ui_dir: Option<PathBuf>,
    /// No web UI, even when mlflow is installed.
    #[arg(long, conflicts_with = "mlflow_ui_dir")]
    no_mlflow_ui: bool,
}

/// Every service `mlops up` runs, callees before callers: one line per service.
/// `mlops up` stops them in the reverse order (retraining first, then the MLflow gateway:
/// the requests they drain still reach the services they call).
fn services() -> [Entry; 7] {
    [
        entry::<Tracking>(),
        entry::<Registry>(),
        entry::<FeatureStore>(),
        entry::<Monitoring>(),
        entry::<Inference>(),
        entry::<Gateway>(),
        entry::<Retraining>(),
    ]
}

/// The environment variables each service of `mlops up` reads, with their help: the
/// service's own settings (`MLOPS_<SERVICE>_<SETTING>`, named the way the service
/// names them) minus those `mlops up` sets and the event bus's (every service gets
/// the one in-process bus), plus the variable naming its settings file.
fn honoured_settings() -> Vec<(&'static str, Vec<(String, String)>)> {
    let bus: Vec<String> = BusArgs::augment_args(clap::Command::new("bus"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    services()
        .iter()
        .map(|service| {
            let prefix = mlops_runtime::config::env_prefix(service.name);
            let title = service.title;
            let mut vars: Vec<(String, String)> = (service.command)()
                .get_arguments()
                .filter(|a| {
                    let id = a.get_id().as_str();
                    !matches!(id, "help" | "version")
                        && !service.set_locally.contains(&id)
                        && !bus.iter().any(|b| b == id)
                })
                .map(|a| {
                    let name = a.get_id().as_str().to_uppercase().replace('-', "_");
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    (format!("{prefix}{name}"), help)
                })
                .collect();
            vars.push((
                format!("{prefix}CONFIG"),
                "TOML file of the settings above (keys in snake_case); the environment wins \
                 over it"
                    .to_owned(),
            ));
            (title, vars)
        })
        .collect()
}

/// The help's account of what `mlops up` reads from the environment.
fn environment_help() -> String {
    let mut out = String::from(
        "Environment (read at start; a flag wins over its variable; an invalid value stops \
         `mlops up` with an error):\n\
         \x20 MLOPS_DATA_DIR\n\
         \x20     --data-dir\n\
         \x20 MLOPS_TRACKING_ADDR, MLOPS_REGISTRY_ADDR, MLOPS_INFERENCE_ADDR, MLOPS_FEATURE_STORE_ADDR, MLOPS_MONITORING_ADDR, MLOPS_RETRAINING_ADDR\n\
         \x20     --tracking-addr, --registry-addr, --inference-addr, --feature-store-addr, --monitoring-addr and --retraining-addr: the client commands' \
         variables, which `mlops up` reads too\n\
         \x20     (as host:port; their http://host:port form for the client does not bind)\n",
    );
    for (title, vars) in honoured_settings() {
        out.push_str(&format!("{title}:\n"));
        for (name, help) in vars {
            out.push_str(&format!("  {name}\n      {help}\n"));
        }
    }
    out.push_str(
        "Logs, traces and S3:\n\
         \x20 RUST_LOG (default info), MLOPS_LOG_FORMAT=json, OTEL_EXPORTER_OTLP_ENDPOINT\n\
         \x20 AWS_* (endpoint, region, credentials) for an s3:// --artifact-root\n\
         \n\
         Not read, because `mlops up` sets them itself: each service's _LISTEN_ADDR and\n\
         _ADMIN_ADDR (the flags above), _DATABASE_URL and _ARTIFACT_ROOT (SQLite and files\n\
         under --data-dir, or --artifact-root), the addresses the services call each other\n\
         at (_TRACKING_ADDR, _REGISTRY_ADDR), and the event bus (_BUS, _KAFKA_*: one\n\
         in-process bus). --token (MLOPS_TOKEN) and --json are the client commands';\n\
         `mlops up` ignores them.",
    );
    out
}

/// The MLflow UI build to serve: the one given, else one found in the Python
/// environment, else none (said on the console, with where it looked).
fn mlflow_ui(args: &UpArgs) -> anyhow::Result<Option<PathBuf>> {
    if args.no_mlflow_ui {
        return Ok(None);
    }
    if let Some(dir) = &args.mlflow_ui_dir {
        mlops_mlflow::ui::check_build_dir(dir)
            .map_err(|why| anyhow::anyhow!("--mlflow-ui-dir: {why}"))?;
        return Ok(Some(dir.clone()));
    }
    match mlops_mlflow::ui::find_installed() {
        Ok(dir) => Ok(Some(dir)),
        Err(why) => {
            println!("mlops up: MLflow's web UI is off: {why}");
            Ok(None)
        }
    }
}

/// Runs every service built so far until Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let _telemetry = mlops_runtime::telemetry::init("up")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // The services' `local` settings fall back to the defaults when the environment
    // holds a value they refuse, which would, say, turn auth off over a typo in
    // MLOPS_TRACKING_AUTH_TOKENS: refuse to start instead.
    for service in services() {
        (service.check_environment)().with_context(|| {
            format!(
                "the {}* settings",
                mlops_runtime::config::env_prefix(service.name)
            )
        })?;
    }
    let mut local = Local::new(&args.data_dir)
        .with_fixed_ports()
        .with_ports("tracking", &args.tracking_addr, &args.tracking_admin_addr)
        .with_ports("registry", &args.registry_addr, &args.registry_admin_addr)
        .with_ports(
            "feature-store",
            &args.feature_store_addr,
            &args.feature_store_admin_addr,
        )
        .with_ports(
            "monitoring",
            &args.monitoring_addr,
            &args.monitoring_admin_addr,
        )
        .with_ports(
            "inference",
            &args.inference_addr,
            &args.inference_admin_addr,
        )
        .with_http_port("inference", &args.inference_http_addr)
        .with_ports("mlflow", &args.mlflow_addr, &args.mlflow_admin_addr)
        .with_ports(
            "retraining",
            &args.retraining_addr,
            &args.retraining_admin_addr,
        );
    local.artifact_root = args.artifact_root.clone();
    let ui_dir = mlflow_ui(&args)?;
    let mut platform = Composition::new(local);
    for service in services() {
        if service.name == <MlflowConfig as ServiceConfig>::NAME {
            let ui_dir = ui_dir.clone();
            platform.start::<Gateway>(|c| c.ui_dir = ui_dir).await?;
        } else {
            (service.start)(&mut platform).await?;
        }
    }
    println!("mlops up: data in {}", args.data_dir.display());
    for line in platform.describe() {
        println!("{line}");
    }
    if let (Some(dir), Some(gateway)) = (&ui_dir, platform.local().addresses("mlflow")) {
        println!(
            "  web UI    http://{}/  (MLflow's own, from {})",
            gateway.api,
            dir.display()
        );
    }
    println!("ready; Ctrl-C stops");

    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        mlops_runtime::shutdown::signal().await;
        trigger.cancel();
    });
    platform.run(shutdown).await?;
    println!("mlops up: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// What `mlops up --help` prints.
    fn up_help() -> String {
        let err = crate::Cli::try_parse_from(["mlops", "up", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        err.to_string()
    }

    #[test]
    fn help_lists_the_environment_up_reads_and_only_that() {
        let help = up_help();
        for var in [
            "MLOPS_DATA_DIR",
            "MLOPS_TRACKING_ADDR, MLOPS_REGISTRY_ADDR, MLOPS_INFERENCE_ADDR, MLOPS_FEATURE_STORE_ADDR, MLOPS_MONITORING_ADDR, MLOPS_RETRAINING_ADDR",
            "MLOPS_TRACKING_AUTH_TOKENS",
            "MLOPS_TRACKING_DB_MAX_CONNECTIONS",
            "MLOPS_TRACKING_LEASE_CHECK_INTERVAL_MS",
            "MLOPS_TRACKING_CONFIG",
            "MLOPS_REGISTRY_AUTH_TOKENS",
            "MLOPS_REGISTRY_TRACKING_TOKEN",
            "MLOPS_REGISTRY_MAX_MODEL_BYTES",
            "MLOPS_REGISTRY_CONFIG",
            "MLOPS_MLFLOW_TOKEN",
            "MLOPS_MLFLOW_MAX_BODY_BYTES",
            "MLOPS_MLFLOW_CONFIG",
        ] {
            assert!(
                help.contains(&format!("  {var}\n")),
                "{var} missing:\n{help}"
            );
        }
        for var in [
            "RUST_LOG",
            "MLOPS_LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "AWS_*",
        ] {
            assert!(help.contains(var), "{var} missing:\n{help}");
        }
        // Set by `mlops up` itself, or the bus's: never offered as a way to change it.
        for var in [
            "MLOPS_TRACKING_LISTEN_ADDR",
            "MLOPS_TRACKING_DATABASE_URL",
            "MLOPS_TRACKING_ARTIFACT_ROOT",
            "MLOPS_TRACKING_BUS",
            "MLOPS_TRACKING_KAFKA_BROKERS",
            "MLOPS_REGISTRY_ADMIN_ADDR",
            "MLOPS_REGISTRY_TRACKING_ADDR",
            "MLOPS_MLFLOW_REGISTRY_ADDR",
        ] {
            assert!(!help.contains(var), "{var} listed:\n{help}");
        }
    }

    #[test]
    fn the_settings_up_sets_exist() {
        // A setting renamed in a service's config would otherwise be listed as read.
        for service in services() {
            let cmd = (service.command)();
            let name = service.name;
            assert_eq!(
                cmd.get_name(),
                format!("mlops-{name}"),
                "the config of {name}"
            );
            for id in service.set_locally {
                assert!(
                    cmd.get_arguments().any(|a| a.get_id() == id),
                    "{name} has no setting {id}"
                );
            }
        }
    }
}
