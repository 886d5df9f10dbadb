//! Compiles every contract under the workspace's `proto/` into `OUT_DIR`, with a
//! vendored `protoc` so a fresh machine needs nothing installed by hand.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: cargo shares a
    // compiled build script between checkouts of the workspace that use one target
    // directory, and a baked path would compile another checkout's contracts.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos = [
        "mlops/tracking/v1/tracking.proto",
        "mlops/events/v1/tracking.proto",
        "mlops/registry/v1/registry.proto",
        "mlops/events/v1/registry.proto",
        "mlops/inference/v1/inference.proto",
        "mlops/events/v1/inference.proto",
        "mlops/featurestore/v1/feature_store.proto",
        "mlops/events/v1/feature_store.proto",
        "mlops/monitoring/v1/monitoring.proto",
        "mlops/events/v1/monitoring.proto",
        "mlops/retraining/v1/retraining.proto",
        "mlops/events/v1/retraining.proto",
    ];
    if std::env::var_os("PROTOC").is_none() {
        // Build scripts are single threaded, so setting the variable is sound.
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Every message implements `prost::Name`, so an event's CloudEvents type is its
    // `full_name()` ("mlops.events.v1.RunCreated"), never a string typed by hand.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    // The prediction log's tensors are encoded once into `Bytes` and shared, not copied.
    // Arrow IPC chunks of the feature store's and the monitoring service's tables too.
    config.bytes([
        ".mlops.events.v1.PredictionTensor.raw",
        ".mlops.featurestore.v1",
        ".mlops.monitoring.v1",
    ]);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("mlops_descriptor.bin"))
        .compile_with_config(
            config,
            &protos.map(|p| root.join(p)),
            std::slice::from_ref(&root),
        )?;
    // Triton's Open Inference Protocol, vendored byte for byte: its own include root (its
    // files import each other by bare name), its own descriptor set, its own module.
    let triton = root.join("vendor/triton");
    // Tensor bytes decode as `Bytes`, sharing the request's buffer instead of a copy each.
    tonic_prost_build::configure()
        .bytes(".inference")
        .file_descriptor_set_path(out.join("triton_descriptor.bin"))
        .compile_protos(
            &[triton.join("grpc_service.proto")],
            std::slice::from_ref(&triton),
        )?;
    // Feast's serving API, vendored byte for byte, likewise apart (its files import each
    // other as `feast/...`).
    let feast = root.join("vendor/feast");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("feast_descriptor.bin"))
        .compile_protos(
            &[feast.join("feast/serving/ServingService.proto")],
            std::slice::from_ref(&feast),
        )?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
