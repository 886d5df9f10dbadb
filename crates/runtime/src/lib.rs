//! What every service needs, written once.
//!
//! - [`config`]: settings from flags, `MLOPS_<SERVICE>_*` variables and a TOML file,
//!   and the server settings every service shares ([`config::ServerArgs`]);
//! - [`telemetry`]: tracing, OTLP export, trace context across gRPC and Kafka;
//! - [`metrics`]: Prometheus helpers, and the per-RPC layers: metrics, and a span
//!   per call;
//! - [`admin`]: the `/metrics`, `/healthz`, `/readyz` HTTP port;
//! - [`grpc`]: the gRPC server with health, reflection, auth and metrics, binding a
//!   service's two ports; and for clients, the bearer token and trace context every
//!   call carries ([`grpc::ClientAuth`]) and `host:port` as a URI;
//! - [`auth`]: bearer tokens with reader / writer / admin roles, declared per RPC;
//! - [`client`]: calling another service (address, token, trace context, limit, retry);
//! - [`error`]: domain errors to `tonic::Status`;
//! - [`shutdown`]: SIGINT / SIGTERM for binaries, a cancellation token for libraries.

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

pub use error::{to_status, ErrorCode, ServiceError};
