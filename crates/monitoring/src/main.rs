//! `mlops-monitoring`: the monitoring service on its own.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_monitoring::Monitoring>()
}
