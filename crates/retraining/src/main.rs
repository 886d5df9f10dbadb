fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_retraining::Retraining>()
}
