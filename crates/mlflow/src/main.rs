//! `mlops-mlflow`: MLflow's REST API in front of the platform's services.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_mlflow::Gateway>()
}
