//! What MLflow's client asks the server about itself: `GET /health` and
//! `GET /api/3.0/mlflow/server-info` (which features to use, e.g. multipart
//! artifact transfers, which this gateway does not offer).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/api/3.0/mlflow/server-info", get(server_info))
}

/// The answer of MLflow's `build_server_info_payload`, for this gateway.
pub fn server_info_payload() -> Value {
    json!({
        "store_type": null,
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": {"gateway": false},
    })
}

async fn server_info() -> Json<Value> {
    Json(server_info_payload())
}
