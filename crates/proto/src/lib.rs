//! Generated code for the platform's contracts in `proto/`.
//!
//! - [`tracking::v1`]: the tracking service (`mlops.tracking.v1`);
//! - [`registry::v1`]: the model registry (`mlops.registry.v1`);
//! - [`inference::v1`]: the inference service's deployments (`mlops.inference.v1`), beside
//!   Triton's protocol on the same port;
//! - [`featurestore::v1`]: the feature store (`mlops.featurestore.v1`);
//! - [`monitoring::v1`]: the monitoring service (`mlops.monitoring.v1`);
//! - [`retraining::v1`]: the retraining service (`mlops.retraining.v1`);
//! - [`events::v1`]: the event payloads published on the bus (`mlops.events.v1`),
//!   each with `prost::Name`; [`events::topics`]: the topics they go on;
//! - [`triton`]: Triton's Open Inference Protocol (package `inference`), vendored from
//!   Triton's published contracts, with [`triton::FILE_DESCRIPTOR_SET`];
//! - [`feast`]: Feast's serving API (`feast.serving.ServingService`), vendored, with
//!   [`feast::FILE_DESCRIPTOR_SET`];
//! - [`FILE_DESCRIPTOR_SET`]: every file of ours, for gRPC reflection.

#![allow(clippy::all, missing_docs)]

/// The encoded `FileDescriptorSet` of every contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mlops_descriptor.bin"));

/// Triton's gRPC API, the Open Inference Protocol (package `inference`, service
/// `GRPCInferenceService`), generated from `proto/vendor/triton/` (copied byte for byte from
/// triton-inference-server/common). Kept under its own name so it cannot clash with ours.
pub mod triton {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));

    /// The encoded `FileDescriptorSet` of the two vendored files, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/triton_descriptor.bin"));
}

/// Feast's online serving API (packages `feast.serving` and `feast.types`, service
/// `ServingService`), generated from `proto/vendor/feast/` (copied byte for byte from
/// feast-dev/feast), so Feast's gRPC clients reach the feature store unchanged.
pub mod feast {
    /// `feast.types`: values.
    pub mod types {
        include!(concat!(env!("OUT_DIR"), "/feast.types.rs"));
    }

    /// `feast.serving`: the `ServingService`.
    pub mod serving {
        include!(concat!(env!("OUT_DIR"), "/feast.serving.rs"));
    }

    /// The encoded `FileDescriptorSet` of the two vendored files, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/feast_descriptor.bin"));
}

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

/// The inference service's own contract (deployments); requests use [`triton`].
pub mod inference {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.inference.v1.rs"));
    }
}

/// The monitoring service's contract.
pub mod monitoring {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.monitoring.v1.rs"));
    }
}

/// The retraining service's contract.
pub mod retraining {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.retraining.v1.rs"));
    }
}

/// The feature store's contract.
pub mod featurestore {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.featurestore.v1.rs"));
    }
}

/// Events published on the bus: the payloads ([`events::v1`]) and the topics they
/// go on ([`events::topics`]). A consumer imports both from here and never depends
/// on the producing service's crate.
pub mod events {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mlops.events.v1.rs"));
    }

    /// The topics of the platform's events: who produces each, which event types go
    /// on it and what it is keyed by.
    ///
    /// Every event is a message of [`v1`]; its CloudEvents `ce_type` is the message's
    /// `prost::Name::full_name()` (e.g. `mlops.events.v1.RunCreated`), so a consumer
    /// tells types apart by the message type, not by a string of its own. Events
    /// with the same key go to the same partition and stay in order.
    pub mod topics {
        /// Run lifecycle events.
        ///
        /// - produced by: the tracking service (`ce_source` `/mlops/tracking`);
        /// - event types: [`RunCreated`](super::v1::RunCreated),
        ///   [`RunFinished`](super::v1::RunFinished), [`RunDeleted`](super::v1::RunDeleted);
        /// - keyed by: the run id (`ce_subject` `runs/<run id>`).
        pub const RUNS: &str = "mlops.tracking.runs";

        /// Registered-model events: versions, aliases, stages, the evaluation gate.
        ///
        /// - produced by: the model registry (`ce_source` `/mlops/registry`);
        /// - event types: [`ModelVersionCreated`](super::v1::ModelVersionCreated),
        ///   [`ModelVersionReady`](super::v1::ModelVersionReady),
        ///   [`ModelVersionFailed`](super::v1::ModelVersionFailed),
        ///   [`AliasSet`](super::v1::AliasSet), [`AliasDeleted`](super::v1::AliasDeleted),
        ///   [`StageChanged`](super::v1::StageChanged), [`GatePassed`](super::v1::GatePassed),
        ///   [`GateFailed`](super::v1::GateFailed),
        ///   [`ModelVersionDeleted`](super::v1::ModelVersionDeleted),
        ///   [`RegisteredModelDeleted`](super::v1::RegisteredModelDeleted);
        /// - keyed by: the registered model's id, stable across renames (`ce_subject`
        ///   `<model name>/<version>`, or the model name for a model deletion).
        pub const MODELS: &str = "mlops.registry.models";

        /// Deployment events of the inference service, one per replica and change.
        ///
        /// - produced by: the inference service (`ce_source` `/mlops/inference`);
        /// - event types: [`DeploymentSwapped`](super::v1::DeploymentSwapped),
        ///   [`DeploymentSwapFailed`](super::v1::DeploymentSwapFailed),
        ///   [`DeploymentRemoved`](super::v1::DeploymentRemoved),
        ///   [`DeploymentTrafficChanged`](super::v1::DeploymentTrafficChanged),
        ///   [`DeploymentRolledBack`](super::v1::DeploymentRolledBack),
        ///   [`DeploymentAnalyzed`](super::v1::DeploymentAnalyzed),
        ///   [`DeploymentPromoted`](super::v1::DeploymentPromoted),
        ///   [`PromotionBlocked`](super::v1::PromotionBlocked);
        /// - keyed by: the registered model's id (`ce_subject` `<model name>/<version>`).
        pub const DEPLOYMENTS: &str = "mlops.inference.deployments";

        /// The prediction log: every prediction served (or every sampled one), several to an
        /// event.
        ///
        /// - produced by: the inference service (`ce_source` `/mlops/inference`), published
        ///   directly in batches (not through the outbox: it must never slow a request;
        ///   what does not fit its buffer is dropped and counted);
        /// - event types: [`PredictionsLogged`](super::v1::PredictionsLogged), the
        ///   predictions of one deployment's version in the order they were answered; a
        ///   single [`PredictionLogged`](super::v1::PredictionLogged) is read the same way;
        /// - keyed by: the registered model's id (`ce_subject` `<model name>/<version>`).
        pub const PREDICTIONS: &str = "mlops.inference.predictions";

        /// Feature store events: definition changes of feature views, and materialization
        /// runs.
        ///
        /// - produced by: the feature store (`ce_source` `/mlops/feature-store`);
        /// - event types: [`FeatureViewUpdated`](super::v1::FeatureViewUpdated),
        ///   [`Materialized`](super::v1::Materialized),
        ///   [`FeaturesPushed`](super::v1::FeaturesPushed);
        /// - keyed by: the feature view's name (`ce_subject` `feature_views/<name>`).
        pub const FEATURES: &str = "mlops.featurestore.features";

        /// Monitoring events: drift and performance verdicts.
        ///
        /// - produced by: the monitoring service (`ce_source` `/mlops/monitoring`);
        /// - event types: [`DriftDetected`](super::v1::DriftDetected),
        ///   [`PerformanceDegraded`](super::v1::PerformanceDegraded);
        /// - keyed by: the monitor's name (`ce_subject` `monitors/<name>`).
        pub const MONITORING: &str = "mlops.monitoring.events";

        /// Retraining events: every transition of a retrain.
        ///
        /// - produced by: the retraining service (`ce_source` `/mlops/retraining`);
        /// - event types: [`RetrainRequested`](super::v1::RetrainRequested),
        ///   [`RetrainAdvanced`](super::v1::RetrainAdvanced),
        ///   [`CandidateEvaluated`](super::v1::CandidateEvaluated),
        ///   [`RolloutAdvanced`](super::v1::RolloutAdvanced),
        ///   [`RetrainRolledBack`](super::v1::RetrainRolledBack),
        ///   [`RetrainFailed`](super::v1::RetrainFailed);
        /// - keyed by: the registered model's name (`ce_subject` `retrains/<id>`).
        pub const RETRAINING: &str = "mlops.retraining.events";

        /// Every topic above.
        pub const ALL: &[&str] = &[
            RUNS,
            MODELS,
            DEPLOYMENTS,
            PREDICTIONS,
            FEATURES,
            MONITORING,
            RETRAINING,
        ];
    }
}

#[cfg(test)]
mod tests {
    use prost::Name;

    use super::events::v1 as ev;

    #[test]
    fn event_messages_know_their_full_names() {
        assert_eq!(ev::RunCreated::full_name(), "mlops.events.v1.RunCreated");
        assert_eq!(ev::AliasSet::full_name(), "mlops.events.v1.AliasSet");
        assert_eq!(
            ev::RegisteredModelDeleted::full_name(),
            "mlops.events.v1.RegisteredModelDeleted"
        );
    }
}
