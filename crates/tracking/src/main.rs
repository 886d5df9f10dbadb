//! `mlops-tracking`: the tracking service on its own.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_tracking::Tracking>()
}
