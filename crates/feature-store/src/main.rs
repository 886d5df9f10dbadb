//! `mlops-feature-store`: the feature store on its own.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_feature_store::FeatureStore>()
}
