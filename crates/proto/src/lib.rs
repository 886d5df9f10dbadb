//! Generated code for the platform's contracts in `proto/`.
//!
//! - [`tracking::v1`]: the tracking service (`mlops.tracking.v1`);
//! - [`registry::v1`]: the model registry (`mlops.registry.v1`);
//! - [`events::v1`]: the event payloads published on the bus (`mlops.events.v1`);
//! - [`FILE_DESCRIPTOR_SET`]: every file, for gRPC reflection.

#![allow(clippy::all, missing_docs)]

/// The encoded `FileDescriptorSet` of every contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mlops_descriptor.bin"));

/// The tracking service's contract.
pub mod tracking {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.tracking.v1.rs"));
    }
}

/// The model registry's contract.
pub mod registry {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.registry.v1.rs"));
    }
}

/// Events published on the bus.
pub mod events {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.events.v1.rs"));
    }
}
