//! `mlops-inference`: the inference service on its own.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_inference::Inference>()
}
