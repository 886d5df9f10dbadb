//! MLflow 3's logged models (`/api/2.0/mlflow/logged-models/*`). Not served yet:
//! only the search answers, because MLflow's client searches logged models by name
//! while it lists or downloads a run's artifacts (`RunsArtifactRepository`) and
//! fails when the search does. No logged model can be created through this gateway
//! yet, so the search answers none.
//!
//! TODO(logged models): map every endpoint onto tracking's LoggedModel RPCs and
//! replace this search with the real one.

use axum::routing::post;
use axum::Router;

use crate::error::Result;
use crate::json::{empty, Params};
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/2.0/mlflow/logged-models/search", post(search))
}

async fn search(p: Params) -> Result<axum::Json<serde_json::Value>> {
    // Read as MLflow reads it, so a malformed request still fails like MLflow's.
    p.strings("experiment_ids")?;
    p.string("filter")?;
    p.string("page_token")?;
    Ok(empty())
}
