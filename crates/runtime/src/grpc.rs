//! gRPC server bootstrap: the same layers, health and reflection for every service.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::auth::{AuthLayer, Policy, Tokens};
use crate::metrics::{RpcMetricsLayer, TraceLayer};

/// How one service's gRPC server is set up.
pub struct GrpcServer {
    /// The service's short name (`tracking`), for metrics.
    pub service: &'static str,
    /// The fully qualified gRPC service names it serves, for the health service
    /// and reflection (`""`, the server as a whole, is added for health).
    pub grpc_names: Vec<&'static str>,
    /// Bearer tokens; empty turns auth off.
    pub tokens: Tokens,
    /// The role each method needs.
    pub policy: Policy,
    /// Concurrent requests allowed per client connection before new ones wait.
    pub concurrency_per_connection: usize,
}

impl GrpcServer {
    /// Serves `routes` plus health and reflection on `listener` until `shutdown`
    /// completes, then stops accepting and waits for in-flight requests to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        routes: Routes,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let mut names = self.grpc_names.clone();
        if !names.contains(&"") {
            names.push("");
        }
        for name in &names {
            reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        // Reflection lists what this port serves, not every contract in proto/.
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mlops_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(mlops_proto::triton::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(mlops_proto::feast::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection");
        for name in self.grpc_names.iter().filter(|n| !n.is_empty()) {
            reflection = reflection.with_service_name(*name);
        }
        let reflection = reflection
            .build_v1()
            .expect("the embedded descriptor sets are valid");
        let layers = tower::ServiceBuilder::new()
            .layer(TraceLayer)
            .layer(RpcMetricsLayer::new(self.service))
            .layer(AuthLayer::new(self.tokens, self.policy));
        let shutdown = async move {
            shutdown.await;
            for name in names {
                reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!("grpc server draining in-flight requests");
        };
        // Without TCP_NODELAY, small responses wait on delayed ACKs (~40 ms each).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Server::builder()
            .concurrency_limit_per_connection(self.concurrency_per_connection)
            .layer(layers)
            .add_routes(routes)
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}

/// A tonic client interceptor for calls between services and from the CLI: it
/// sends the current trace context and, when given, a bearer token.
#[derive(Clone, Default)]
pub struct ClientAuth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl ClientAuth {
    /// With `token` (sent as `authorization: Bearer <token>`), or none.
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        match token.filter(|t| !t.is_empty()) {
            None => Ok(ClientAuth(None)),
            Some(t) => Ok(ClientAuth(Some(format!("Bearer {t}").parse().map_err(
                |_| anyhow::anyhow!("the token has characters not allowed in a header"),
            )?))),
        }
    }
}

impl tonic::service::Interceptor for ClientAuth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut req = crate::telemetry::grpc_client_interceptor(req)?;
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// `http://` in front of a bare `host:port`.
pub fn endpoint_uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// A service's two bound ports: gRPC and admin HTTP.
pub struct Listeners {
    /// The gRPC API.
    pub grpc: tokio::net::TcpListener,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: tokio::net::TcpListener,
}

impl Listeners {
    /// Binds both addresses, saying which one failed.
    pub async fn bind(grpc: &str, admin: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        Ok(Listeners {
            grpc: tokio::net::TcpListener::bind(grpc)
                .await
                .with_context(|| format!("binding the gRPC address {grpc}"))?,
            admin: tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("binding the admin address {admin}"))?,
        })
    }

    /// Binds the addresses of `listen`.
    pub async fn bind_to(listen: &crate::config::ListenArgs) -> anyhow::Result<Self> {
        Self::bind(&listen.listen_addr, &listen.admin_addr).await
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }
}
