//! Listings: a directory through the proxy, a run's artifacts (`artifacts/list`) and
//! a logged model's (`.../artifacts/directories`), as MLflow writes them.

use axum::extract::{Path, State};
use axum::Json;
use mlops_proto::tracking::v1 as pb;
use serde::Serialize;
use serde_json::json;

use super::{clean_path, resolve, to_proxy_uri};
use crate::error::Result;
use crate::json::{empty, Params};
use crate::state::{AppState, Auth};

/// One entry of a listing as MLflow writes it (no size for directories).
#[derive(Debug, Serialize, PartialEq)]
pub struct FileInfo {
    path: String,
    is_dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_size: Option<i64>,
}

impl FileInfo {
    pub(super) fn new(path: String, f: &pb::FileInfo) -> Self {
        FileInfo {
            path,
            is_dir: f.is_dir,
            file_size: (!f.is_dir).then(|| i64::try_from(f.file_size).unwrap_or(i64::MAX)),
        }
    }
}

async fn list_files(
    state: &AppState,
    auth: &Auth,
    run_id: &str,
    logged_model_id: &str,
    path: &str,
) -> Result<Option<pb::ListArtifactsResponse>> {
    let got = state
        .tracking()
        .list_artifacts(auth.request(pb::ListArtifactsRequest {
            run_id: run_id.to_owned(),
            path: path.to_owned(),
            logged_model_id: logged_model_id.to_owned(),
            inline_bytes: 0,
        }))
        .await;
    match got {
        Ok(resp) => Ok(Some(resp.into_inner())),
        // The run exists (checked before): nothing at that path, which MLflow lists as empty.
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// The files under `path` of a run (or logged model), paths relative to its root;
/// a file listed as itself is left out, as MLflow lists a file as nothing.
async fn relative_files(
    state: &AppState,
    auth: &Auth,
    run_id: &str,
    logged_model_id: &str,
    path: &str,
) -> Result<Vec<FileInfo>> {
    Ok(list_files(state, auth, run_id, logged_model_id, path)
        .await?
        .map(|l| l.files)
        .unwrap_or_default()
        .iter()
        .map(|f| FileInfo::new(f.path.clone(), f))
        .filter(|f| f.path != path || f.is_dir)
        .collect())
}

/// `GET /mlflow-artifacts/artifacts?path=<proxy path>`: what is directly under a
/// directory, by name; empty for a file or nothing.
pub(super) async fn list_proxy(
    State(state): State<AppState>,
    auth: Auth,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let path = p.string("path")?;
    let target = resolve(&state, &auth, &path, "list").await?;
    let files: Vec<FileInfo> = list_files(
        &state,
        &auth,
        &target.run_id,
        &target.logged_model_id,
        &target.path,
    )
    .await?
    .map(|l| l.files)
    .unwrap_or_default()
    .iter()
    .map(|f| {
        let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_owned();
        FileInfo::new(name, f)
    })
    .collect();
    // A listing of a file names that file alone: MLflow lists a file as nothing.
    let only_itself = files.len() == 1
        && !files[0].is_dir
        && !target.path.is_empty()
        && target.path.rsplit('/').next() == Some(files[0].path.as_str());
    if files.is_empty() || only_itself {
        return Ok(empty());
    }
    Ok(Json(json!({ "files": files })))
}

/// `GET .../logged-models/<id>/artifacts/directories?artifact_directory_path=..`: a
/// logged model's files under a directory, paths relative to its root (MLflow serves
/// it under /ajax-api/ only; the mirror reaches it there).
pub(crate) async fn list_logged_model_artifacts(
    State(state): State<AppState>,
    auth: Auth,
    Path(model_id): Path<String>,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let path = clean_path(&p.string("artifact_directory_path")?)?;
    let model = state.logged_model(&auth, &model_id).await?;
    let root = state.proxy_root(&auth).await;
    let files = relative_files(&state, &auth, "", &model_id, &path).await?;
    Ok(Json(json!({
        "root_uri": to_proxy_uri(&model.artifact_uri, root.as_deref()),
        "files": files,
    })))
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id=..&path=..`: a run's artifacts under
/// `path`, with paths relative to the run's root.
pub(crate) async fn list_run_artifacts(
    State(state): State<AppState>,
    auth: Auth,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let run_id = p.run_id()?;
    let path = clean_path(&p.string("path")?)?;
    // The run must exist even when nothing is under the path.
    let run = state
        .tracking()
        .get_run(auth.request(pb::GetRunRequest {
            run_id: run_id.clone(),
        }))
        .await?
        .into_inner()
        .run
        .unwrap_or_default();
    let root = state.proxy_root(&auth).await;
    let root_uri = to_proxy_uri(&run.info.unwrap_or_default().artifact_uri, root.as_deref());
    let files = relative_files(&state, &auth, &run_id, "", &path).await?;
    let mut out = json!({ "root_uri": root_uri });
    if !files.is_empty() {
        out["files"] = json!(files);
    }
    Ok(Json(out))
}
