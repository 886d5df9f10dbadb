//! MLflow's own web UI, served from the user's installed `mlflow` package (never a
//! copy of ours): `index.html` at `/`, the bundles under `/static-files/`, and the
//! routes the UI calls outside the REST API (`/get-artifact`,
//! `/model-versions/get-artifact`, `/version`). The REST API under `/ajax-api/`, the
//! only prefix the UI uses, is [`crate::router`]'s mirror; `/graphql` is
//! [`crate::graphql`].

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::tracking::v1 as tpb;

use serde_json::{json, Value};

use crate::artifacts::{check_segments, clean_path, stream_download, upload_stream};
use crate::error::{ApiError, Result};
use crate::json::Params;
use crate::state::{AppState, Auth};

/// The MLflow release whose UI and REST API this gateway follows; `GET /version`
/// answers it, as `mlflow server` answers its own.
pub const MLFLOW_VERSION: &str = "3.17.2";

/// Where the UI build sits inside the `mlflow` package.
const BUILD_IN_PACKAGE: &str = "server/js/build";

/// Checks that `dir` is MLflow's UI build (it holds `index.html`).
pub fn check_build_dir(dir: &Path) -> std::result::Result<(), String> {
    if dir.join("index.html").is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} holds no index.html: give the UI build of an installed mlflow package, \
             <site-packages>/mlflow/{BUILD_IN_PACKAGE} (`pip install mlflow` puts it there; \
             mlflow-skinny has none)",
            dir.display()
        ))
    }
}

/// Finds the UI build of the `mlflow` package in the active Python environment:
/// `$VIRTUAL_ENV/bin/python`, then `python3`, then `python`. The error says where it
/// looked and what each interpreter answered.
pub fn find_installed() -> std::result::Result<PathBuf, String> {
    let mut pythons = vec![];
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin").join("python"));
    }
    pythons.extend([PathBuf::from("python3"), PathBuf::from("python")]);
    // find_spec locates the package without importing it (mlflow takes seconds to import).
    const SCRIPT: &str = "import importlib.util as u\n\
        s = u.find_spec('mlflow')\n\
        print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let mut tried = vec![];
    for python in pythons {
        let answer = match Command::new(&python).args(["-c", SCRIPT]).output() {
            Err(e) => format!("{}: {e}", python.display()),
            Ok(out) if !out.status.success() => {
                format!("{}: exited with {}", python.display(), out.status)
            }
            Ok(out) => {
                let package = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if package.is_empty() {
                    format!("{}: no mlflow package", python.display())
                } else {
                    let build = Path::new(&package).join(BUILD_IN_PACKAGE);
                    if check_build_dir(&build).is_ok() {
                        return Ok(build);
                    }
                    format!(
                        "{}: mlflow at {package} has no UI build (mlflow-skinny?)",
                        python.display()
                    )
                }
            }
        };
        tried.push(answer);
    }
    Err(format!(
        "no installed mlflow with its web UI found ({}); `pip install mlflow` in the active \
         environment, or give its build directory with --mlflow-ui-dir",
        tried.join("; ")
    ))
}

/// The UI's own routes (the REST mirror and GraphQL are added by [`crate::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/static-files/{*path}", get(static_file))
        .route("/get-artifact", get(run_artifact))
        .route("/model-versions/get-artifact", get(model_version_artifact))
        .route("/version", get(|| async { MLFLOW_VERSION }))
        // MLflow serves these under /ajax-api/ only; the mirror reaches them there.
        .route(
            "/api/2.0/mlflow/metrics/get-history-bulk",
            get(history_bulk),
        )
        .route("/api/2.0/mlflow/upload-artifact", post(upload_artifact))
        .route(
            "/api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
            get(logged_model_file),
        )
        .route(
            "/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories",
            get(crate::artifacts::list_logged_model_artifacts),
        )
        .route(
            "/api/2.0/mlflow/experiments/search-datasets",
            post(search_datasets),
        )
}

/// MLflow's `MAX_EXPERIMENT_IDS_PER_REQUEST` and `MAX_DATASET_SUMMARIES_RESULTS` of
/// `search-datasets`.
const MAX_DATASET_EXPERIMENTS: usize = 20;
const MAX_DATASET_SUMMARIES: usize = 1000;

/// `POST .../experiments/search-datasets` with `experiment_ids`: the distinct
/// (experiment, dataset name, digest, context) the experiments' runs used, at most
/// 1,000, as the UI's dataset filter lists them. Read from the runs' inputs, page
/// after page of a run search.
pub(crate) async fn search_datasets(
    State(s): State<AppState>,
    auth: Auth,
    p: Params,
) -> Result<Json<Value>> {
    let ids = p.strings("experiment_ids")?;
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "SearchDatasets request must specify at least one experiment_id.",
        ));
    }
    if ids.len() > MAX_DATASET_EXPERIMENTS {
        return Err(ApiError::invalid(format!(
            "SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS} \
             experiment_ids. Received {} experiment_ids.",
            ids.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = s
            .tracking()
            .search_runs(auth.request(tpb::SearchRunsRequest {
                experiment_ids: ids.clone(),
                run_view_type: tpb::ViewType::All as i32,
                max_results: 1000,
                page_token,
                ..Default::default()
            }))
            .await?
            .into_inner();
        for run in page.runs {
            let exp = run.info.map(|i| i.experiment_id).unwrap_or_default();
            for input in run.inputs.map(|i| i.dataset_inputs).unwrap_or_default() {
                let d = input.dataset.unwrap_or_default();
                seen.insert((exp.clone(), d.name, d.digest, input.context));
            }
        }
        page_token = page.next_page_token;
        if page_token.is_empty() || seen.len() >= MAX_DATASET_SUMMARIES {
            break;
        }
    }
    let summaries: Vec<Value> = seen
        .into_iter()
        .take(MAX_DATASET_SUMMARIES)
        .map(|(experiment_id, name, digest, context)| {
            let mut v = json!({"experiment_id": experiment_id, "name": name, "digest": digest});
            if !context.is_empty() {
                v["context"] = json!(context);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "dataset_summaries": summaries })))
}

/// MLflow's `MAX_HISTORY_RESULTS` and `MAX_RUN_IDS_PER_REQUEST` of `get-history-bulk`.
const MAX_HISTORY_RESULTS: i64 = 25_000;
const MAX_HISTORY_RUNS: usize = 100;
/// MLflow's size limit of `upload-artifact` (the UI's uploads).
const MAX_UI_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// `GET .../metrics/get-history-bulk?run_id=..&run_id=..&metric_key=..`: whole
/// histories of several runs, runs in id order, each by (timestamp, step, value).
async fn history_bulk(State(s): State<AppState>, auth: Auth, p: Params) -> Result<Json<Value>> {
    let mut run_ids = p.strings("run_id")?;
    if run_ids.is_empty() {
        return Err(ApiError::invalid(
            "GetMetricHistoryBulk request must specify at least one run_id.",
        ));
    }
    if run_ids.len() > MAX_HISTORY_RUNS {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulk request cannot specify more than {MAX_HISTORY_RUNS} run_ids. \
             Received {} run_ids.",
            run_ids.len()
        )));
    }
    let Some(key) = p
        .get("metric_key")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(ApiError::invalid(
            "GetMetricHistoryBulk request must specify a metric_key.",
        ));
    };
    let max_results = p
        .opt_i64("max_results")?
        .unwrap_or(MAX_HISTORY_RESULTS)
        .clamp(0, MAX_HISTORY_RESULTS) as usize;
    run_ids.sort();
    let mut points = vec![];
    for run_id in &run_ids {
        let (mut history, _) =
            crate::history::metric_history(&s, &auth, run_id, &key, 0, String::new(), false)
                .await?;
        history.truncate(max_results);
        history.sort_by(|a, b| {
            (a.timestamp, a.step)
                .cmp(&(b.timestamp, b.step))
                .then(a.value.total_cmp(&b.value))
        });
        for m in history {
            let mut point = json!(m);
            point["run_id"] = json!(run_id);
            points.push(point);
        }
    }
    Ok(Json(json!({ "metrics": points })))
}

/// `POST .../upload-artifact?run_uuid=..&path=..`: the body becomes the run's file
/// (the UI's uploads; at most 10 MB, as MLflow allows).
async fn upload_artifact(
    State(s): State<AppState>,
    auth: Auth,
    Query(q): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Json<Value>> {
    let arg = |name: &str| {
        q.iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let run_id =
        arg("run_uuid").ok_or_else(|| ApiError::invalid("Request must specify run_uuid."))?;
    let path = arg("path").ok_or_else(|| ApiError::invalid("Request must specify path."))?;
    let path = clean_path(&path)?;
    let too_large = || ApiError::invalid("Artifact size is too large. Max size is 10MB.");
    let data = axum::body::to_bytes(body, MAX_UI_UPLOAD_BYTES)
        .await
        .map_err(|_| too_large())?;
    if data.is_empty() {
        return Err(ApiError::invalid("Request must specify data."));
    }
    let header = mlops_proto::tracking::v1::ArtifactHeader {
        run_id: run_id.clone(),
        path: path.clone(),
        logged_model_id: String::new(),
    };
    let shown = format!("{path} of run {run_id}");
    upload_stream(&s, &auth, header, Body::from(data), &shown).await?;
    Ok(crate::json::empty())
}

/// `GET .../logged-models/<id>/artifacts/files?artifact_file_path=..`: a logged
/// model's file.
async fn logged_model_file(
    State(s): State<AppState>,
    auth: Auth,
    UrlPath(model_id): UrlPath<String>,
    p: Params,
) -> Result<Response> {
    let path = p.string("artifact_file_path")?;
    if path.is_empty() {
        return Err(ApiError::invalid(
            "Request must include the \"artifact_file_path\" query parameter.",
        ));
    }
    let path = clean_path(&path)?;
    stream_download(&s, &auth, "", &model_id, &path).await
}

fn ui_dir(state: &AppState) -> Result<&Path> {
    state.ui_dir().ok_or_else(|| {
        ApiError::not_found(
            "MLflow's web UI is not served here: start the gateway with --ui-dir \
             (MLOPS_MLFLOW_UI_DIR) naming an installed mlflow's server/js/build, or \
             `mlops up` in an environment where mlflow is installed",
        )
    })
}

async fn index(State(state): State<AppState>) -> Result<Response> {
    let dir = ui_dir(&state)?;
    serve_file(&dir.join("index.html"), "no-cache").await
}

async fn static_file(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
) -> Result<Response> {
    let dir = ui_dir(&state)?;
    check_segments(&path)
        .map_err(|why| ApiError::not_found(format!("no UI file {path}: {why}")))?;
    // Bundle names carry their content hash: a browser may keep them for weeks, as
    // MLflow's server lets it.
    serve_file(&dir.join(&path), "public, max-age=2419200").await
}

async fn serve_file(file: &Path, cache: &'static str) -> Result<Response> {
    let bytes = match tokio::fs::read(file).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            return Err(ApiError::not_found(format!("the UI has no file {name}")));
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "reading a UI file failed");
            return Err(ApiError::new(
                crate::error::ErrorCode::InternalError,
                "reading a file of the UI failed; see the gateway's log",
            ));
        }
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime(&name))),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response())
}

/// The media type of a file of the UI build, by extension.
fn mime(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") | Some("map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("ttf") => "font/ttf",
        Some("wasm") => "application/wasm",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /get-artifact?run_uuid=..&path=..`: a run's file, for the UI's artifact viewer.
async fn run_artifact(State(state): State<AppState>, auth: Auth, p: Params) -> Result<Response> {
    let run_id = match p.string("run_uuid")? {
        id if id.is_empty() => p.run_id()?,
        id => id,
    };
    let path = clean_path(&p.required_string("path")?)?;
    stream_download(&state, &auth, &run_id, "", &path).await
}

/// `GET /model-versions/get-artifact?name=..&version=..&path=..`: a registered
/// version's file (the registry's copy).
async fn model_version_artifact(
    State(state): State<AppState>,
    auth: Auth,
    p: Params,
) -> Result<Response> {
    let name = p.required_string("name")?;
    let version = p.required_string("version")?;
    let version: i64 = version.parse().map_err(|_| {
        ApiError::invalid(format!("version must be a version number, got `{version}`"))
    })?;
    let path = clean_path(&p.required_string("path")?)?;
    let mut stream = state
        .registry()
        .download_model_version_file(auth.request(rpb::DownloadModelVersionFileRequest {
            name,
            version,
            path: path.clone(),
        }))
        .await?
        .into_inner();
    // The first message tells a missing file from a present one before the 200 goes out.
    let first = stream.message().await?;
    let body = futures::stream::iter(first.map(|m| Ok::<_, tonic::Status>(m.chunk)))
        .chain(futures::TryStreamExt::map_ok(stream, |m| m.chunk))
        .map(|r| r.map_err(|s| std::io::Error::other(s.message().to_owned())));
    let file = path.rsplit('/').next().unwrap_or(&path);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::artifacts::content_type(file)),
        )],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(mime("main.c2f5f8d4.js"), "text/javascript; charset=utf-8");
        assert_eq!(mime("main.b0f58ef9.CSS"), "text/css; charset=utf-8");
        assert_eq!(mime("favicon.ico"), "image/x-icon");
        assert_eq!(mime("x.woff2"), "font/woff2");
        assert_eq!(mime("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn a_build_dir_needs_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_build_dir(dir.path()).unwrap_err();
        assert!(err.contains("holds no index.html"), "{err}");
        assert!(err.contains("mlflow/server/js/build"), "{err}");
        std::fs::write(dir.path().join("index.html"), "<html></html>").unwrap();
        check_build_dir(dir.path()).unwrap();
    }
}
