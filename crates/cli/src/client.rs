//! The CLI's connections to the services: [`connect`] is the one place a channel
//! is opened.

use anyhow::Context;
use mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient;
use mlops_proto::inference::v1::deployment_service_client::DeploymentServiceClient;
use mlops_proto::monitoring::v1::monitoring_service_client::MonitoringServiceClient;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::retraining::v1::retraining_service_client::RetrainingServiceClient;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_proto::triton::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_runtime::client::Client;
use mlops_runtime::grpc::{endpoint_uri, ClientAuth};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel that sends the bearer token (and the trace context) with every call.
pub type Authed = InterceptedService<Channel, ClientAuth>;

/// The tracking service's client.
pub type TrackingClient = TrackingServiceClient<Authed>;

/// The registry's client.
pub type RegistryClient = RegistryServiceClient<Authed>;

/// The inference service's client (Triton's `GRPCInferenceService`).
pub type InferenceClient = GrpcInferenceServiceClient<Authed>;

/// The inference service's deployments client (`mlops.inference.v1`, on the same port).
pub type DeploymentClient = DeploymentServiceClient<Authed>;

/// The feature store's client.
pub type FeatureStoreClient = FeatureStoreServiceClient<Authed>;

/// The monitoring service's client.
pub type MonitoringClient = MonitoringServiceClient<Authed>;

/// The retraining service's client.
pub type RetrainingClient = RetrainingServiceClient<Authed>;

/// A service's gRPC client, as [`connect`] makes it.
pub trait Service: Sized {
    /// The service as messages name it, e.g. "the registry".
    const NAME: &'static str;
    /// The client over `channel`, taking answers of up to `max_decoding` bytes.
    fn client(channel: Authed, max_decoding: usize) -> Self;
}

impl Service for TrackingClient {
    const NAME: &'static str = "the tracking service";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        TrackingServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

impl Service for RegistryClient {
    const NAME: &'static str = "the registry";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        RegistryServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

impl Service for InferenceClient {
    const NAME: &'static str = "the inference service";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        GrpcInferenceServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

impl Service for DeploymentClient {
    const NAME: &'static str = "the inference service";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        DeploymentServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

impl Service for FeatureStoreClient {
    const NAME: &'static str = "the feature store";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        FeatureStoreServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

impl Service for MonitoringClient {
    const NAME: &'static str = "the monitoring service";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        MonitoringServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

impl Service for RetrainingClient {
    const NAME: &'static str = "the retraining service";
    fn client(channel: Authed, max_decoding: usize) -> Self {
        RetrainingServiceClient::new(channel).max_decoding_message_size(max_decoding)
    }
}

/// Connects to the service at `addr` (`host:port` or a URI), sending `token` as the
/// bearer token when there is one (the platform's client helper: trace context,
/// connect timeout, message limit).
pub async fn connect<S: Service>(addr: &str, token: Option<&str>) -> anyhow::Result<S> {
    let client = Client::connect(addr, token).await.with_context(|| {
        format!(
            "cannot reach {} at {} (is `mlops up` running?)",
            S::NAME,
            endpoint_uri(addr)
        )
    })?;
    Ok(S::client(client.intercepted(), client.max_message_bytes()))
}
