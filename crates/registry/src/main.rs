//! `mlops-registry`: the model registry on its own.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_registry::Registry>()
}
