//! `mlops-feature-store`: the feature store on its own.

fn main() -> anyhow::Result<()> {
    mlops_kit::main::<mlops_feature_store::FeatureStore>()
}

/// mimalloc rather than glibc's malloc: on the inference bench a request took a quarter
/// less CPU (a service allocates and frees a great deal per request, across threads).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
