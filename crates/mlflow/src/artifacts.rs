//! Artifacts through the gateway, as MLflow's artifact proxy serves them.
//!
//! Runs advertise `mlflow-artifacts:/<rest>` for `<tracking artifact root>/<rest>`
//! (by default `mlflow-artifacts:/<experiment id>/<run id>/artifacts`), so MLflow's
//! client uploads, lists and downloads under
//! `/api/2.0/mlflow-artifacts/artifacts/<rest>/<path>`. A proxy path is mapped to the
//! run whose root it names (`.../<run id>/artifacts/<path>`, checked against the
//! run's artifact URI) and to tracking's `UploadArtifact`, `DownloadArtifact` and
//! `ListArtifacts` for that run, streamed both ways. Also here: the tracking API's
//! own `GET /api/2.0/mlflow/artifacts/list` by run id.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use mlops_proto::tracking::v1 as pb;

use crate::error::{ApiError, ErrorCode, Result};
use crate::json::empty;
use crate::state::{AppState, Auth};

/// The scheme of the URIs the artifact proxy serves.
pub const SCHEME: &str = "mlflow-artifacts:";

/// Upload chunks are gathered up to this size before they go to tracking.
const UPLOAD_CHUNK_BYTES: usize = 1024 * 1024;

/// The URI the client should use for `uri`: `mlflow-artifacts:/<rest>` when `uri` is
/// `<root>/<rest>`, else `uri` itself (a location outside tracking's root, which
/// the client reaches directly, as with MLflow's server).
pub fn to_proxy_uri(uri: &str, root: Option<&str>) -> String {
    let Some(root) = root.map(|r| r.trim_end_matches('/')) else {
        return uri.to_owned();
    };
    match uri.strip_prefix(root) {
        Some("") | Some("/") => format!("{SCHEME}/"),
        Some(rest) if rest.starts_with('/') => format!("{SCHEME}{rest}"),
        _ => uri.to_owned(),
    }
}

/// The tracking URI for a `mlflow-artifacts:` URI given by a client (an
/// experiment's artifact location), or `uri` itself for any other scheme.
pub fn from_proxy_uri(uri: &str, root: &str) -> Result<String> {
    let Some(rest) = uri.strip_prefix(SCHEME) else {
        return Ok(uri.to_owned());
    };
    // `mlflow-artifacts://host:port/path` names the server too; the path is what counts.
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .find('/')
            .map(|i| &authority_and_path[i..])
            .unwrap_or(""),
        None => rest,
    };
    let path = path.trim_matches('/');
    check_segments(path)
        .map_err(|why| ApiError::invalid(format!("artifact location {uri} is not valid: {why}")))?;
    let root = root.trim_end_matches('/');
    Ok(if path.is_empty() {
        root.to_owned()
    } else {
        format!("{root}/{path}")
    })
}

/// `path` (relative, `/`-separated) without its `.` and empty segments, or MLflow's
/// "Invalid path" (its exact words, which clients compare) for `..` and backslashes.
pub(crate) fn clean_path(path: &str) -> Result<String> {
    let mut kept = vec![];
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(ApiError::invalid("Invalid path")),
            s if s.contains('\\') => return Err(ApiError::invalid("Invalid path")),
            s => kept.push(s),
        }
    }
    Ok(kept.join("/"))
}

/// Why `path` (relative, `/`-separated) is not a safe path, if it is not.
pub(crate) fn check_segments(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Ok(());
    }
    for seg in path.split('/') {
        match seg {
            "" => return Err("it has an empty path segment"),
            "." | ".." => return Err("`.` and `..` are not allowed in artifact paths"),
            s if s.contains('\\') => return Err("backslashes are not allowed in artifact paths"),
            _ => {}
        }
    }
    Ok(())
}

fn is_run_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_logged_model_id(s: &str) -> bool {
    s.strip_prefix("m-").is_some_and(is_run_id)
}

/// A proxy path resolved to a run's or a logged model's artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArtifact {
    /// The proxy path of the artifact root (`1/<run id>/artifacts`, or
    /// `1/models/<model id>/artifacts`).
    pub root: String,
    /// The run (empty for a logged model).
    pub run_id: String,
    /// The logged model (empty for a run).
    pub logged_model_id: String,
    /// The path under the artifact root (empty for the root itself).
    pub path: String,
}

/// Splits a proxy path `<prefix>/<run id>/artifacts[/<path>]` (the prefix is the
/// experiment id unless the experiment has its own location under the root), or a
/// logged model's `<prefix>/models/<model id>/artifacts[/<path>]`. `None` when no
/// artifact root is named; an error for `..` and the like.
pub fn parse_proxy_path(path: &str) -> Result<Option<RunArtifact>> {
    let path = clean_path(path)?;
    let segs: Vec<&str> = path.split('/').collect();
    let found = segs
        .windows(2)
        .position(|w| (is_run_id(w[0]) || is_logged_model_id(w[0])) && w[1] == "artifacts");
    Ok(found.map(|i| {
        let (run_id, logged_model_id) = if is_logged_model_id(segs[i]) {
            (String::new(), segs[i].to_owned())
        } else {
            (segs[i].to_owned(), String::new())
        };
        RunArtifact {
            root: segs[..i + 2].join("/"),
            run_id,
            logged_model_id,
            path: segs[i + 2..].join("/"),
        }
    }))
}

/// The run artifact a proxy path names, checked against the run (it must exist and
/// its artifact URI must be the one the path names). `what` is the operation, for
/// the message when the path names no run.
async fn resolve(state: &AppState, auth: &Auth, path: &str, what: &str) -> Result<RunArtifact> {
    let Some(target) = parse_proxy_path(path)? else {
        return Err(ApiError::not_found(format!(
            "cannot {what} {SCHEME}/{path}: artifacts are served per run, under \
             {SCHEME}/<experiment id>/<run id>/artifacts/<path>, and per logged model, under \
             {SCHEME}/<experiment id>/models/<model id>/artifacts/<path>"
        )));
    };
    let uri = if target.logged_model_id.is_empty() {
        let run = state
            .tracking()
            .get_run(auth.request(pb::GetRunRequest {
                run_id: target.run_id.clone(),
            }))
            .await?
            .into_inner()
            .run
            .unwrap_or_default();
        run.info.unwrap_or_default().artifact_uri
    } else {
        state
            .logged_model(auth, &target.logged_model_id)
            .await?
            .artifact_uri
    };
    let owner = if target.logged_model_id.is_empty() {
        format!("run {}", target.run_id)
    } else {
        format!("logged model {}", target.logged_model_id)
    };
    let root = state.artifact_root(auth).await;
    let advertised = to_proxy_uri(&uri, root.as_deref());
    if advertised.trim_end_matches('/') != format!("{SCHEME}/{}", target.root) {
        return Err(ApiError::not_found(format!(
            "{SCHEME}/{} is not the artifact root of {owner}; its artifacts are at {advertised}",
            target.root
        )));
    }
    Ok(target)
}

/// The artifact proxy's routes and the tracking API's artifact listing.
pub fn routes(state: &AppState) -> Router<AppState> {
    use listing::list_proxy;
    let proxy = Router::new()
        .route("/api/2.0/mlflow-artifacts/artifacts", get(list_proxy))
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            get(download).put(upload).delete(delete_artifact),
        )
        .route(
            "/api/2.0/mlflow-artifacts/mpu/create/{*path}",
            post(multipart),
        )
        .route(
            "/api/2.0/mlflow-artifacts/mpu/complete/{*path}",
            post(multipart),
        )
        .route(
            "/api/2.0/mlflow-artifacts/mpu/abort/{*path}",
            post(multipart),
        )
        .route(
            "/api/2.0/mlflow-artifacts/presigned/{*path}",
            get(presigned),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            unless_serving_artifacts,
        ));
    Router::new()
        .merge(proxy)
        .route("/api/2.0/mlflow/artifacts/list", get(list_run_artifacts))
}

/// MLflow's answer on its artifact proxy's routes when it runs with
/// `--no-serve-artifacts` (its words, a plain-text 503).
async fn unless_serving_artifacts(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if state.serves_artifacts() {
        return next.run(req).await;
    }
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "Endpoint: {} disabled due to the mlflow server running with `--no-serve-artifacts`. \
             To enable artifacts server functionality, run `mlflow server` with \
             `--serve-artifacts` (here: MLOPS_MLFLOW_SERVE_ARTIFACTS=true)",
            req.uri().path()
        ),
    )
        .into_response()
}

/// A content type for a file name, as far as it matters to a browser.
pub(crate) fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") | Some("log") | Some("py") | Some("md") => "text/plain",
        Some("json") => "application/json",
        Some("yaml") | Some("yml") | Some("mlmodel") => "text/yaml",
        Some("csv") => "text/csv",
        Some("html") | Some("htm") => "text/html",
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// `GET /mlflow-artifacts/artifacts/<proxy path>`: the file's bytes, streamed.
async fn download(
    State(state): State<AppState>,
    auth: Auth,
    Path(path): Path<String>,
) -> Result<Response> {
    let target = resolve(&state, &auth, &path, "download").await?;
    if target.path.is_empty() {
        return Err(ApiError::invalid(format!(
            "Artifact path refers to a directory, not a file: '{path}'"
        )));
    }
    stream_download(
        &state,
        &auth,
        &target.run_id,
        &target.logged_model_id,
        &target.path,
    )
    .await
}

/// A run's (or logged model's) file at `path` under its artifact root, streamed from
/// tracking as an attachment.
pub(crate) async fn stream_download(
    state: &AppState,
    auth: &Auth,
    run_id: &str,
    logged_model_id: &str,
    path: &str,
) -> Result<Response> {
    let mut stream = state
        .tracking()
        .download_artifact(auth.request(pb::DownloadArtifactRequest {
            run_id: run_id.to_owned(),
            path: path.to_owned(),
            logged_model_id: logged_model_id.to_owned(),
        }))
        .await?
        .into_inner();
    // The first message tells a missing file from a present one before the 200 goes out.
    let first = stream.message().await?;
    let body = futures::stream::iter(first.map(|m| Ok::<_, tonic::Status>(m.chunk)))
        .chain(stream.map_ok(|m| m.chunk))
        .map_err(|s| {
            tracing::warn!(error = %s.message(), "artifact download broke off");
            std::io::Error::other(s.message().to_owned())
        });
    let name = path.rsplit('/').next().unwrap_or(path);
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        name.replace(['"', '\\'], "_")
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `PUT /mlflow-artifacts/artifacts/<proxy path>`: the request body becomes the
/// file, streamed to tracking in chunks of about a megabyte.
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    Path(path): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>> {
    let target = resolve(&state, &auth, &path, "upload to").await?;
    if target.path.is_empty() {
        return Err(ApiError::invalid(format!(
            "cannot upload to {SCHEME}/{path}: name a file under the run's artifact root"
        )));
    }
    upload_stream(
        &state,
        &auth,
        pb::ArtifactHeader {
            run_id: target.run_id.clone(),
            path: target.path.clone(),
            logged_model_id: target.logged_model_id.clone(),
        },
        body,
        &format!("{SCHEME}/{path}"),
    )
    .await?;
    Ok(empty())
}

/// Streams `body` to tracking as the file `header` names (`shown`: how the caller
/// named it, for messages).
pub(crate) async fn upload_stream(
    state: &AppState,
    auth: &Auth,
    header: pb::ArtifactHeader,
    body: Body,
    shown: &str,
) -> Result<()> {
    let header = pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Header(header)),
    };
    let (broke_tx, broke_rx) = tokio::sync::oneshot::channel();
    let chunks = coalesce(body.into_data_stream(), UPLOAD_CHUNK_BYTES, broke_tx).map(|chunk| {
        pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Chunk(chunk.to_vec())),
        }
    });
    let messages = futures::stream::iter([header]).chain(chunks);
    let mut client = state.tracking();
    let call = client.upload_artifact(auth.request(messages));
    tokio::select! {
        done = call => {
            done.map_err(upload_refused)?;
        }
        // Dropping the call cancels the gRPC stream: tracking keeps nothing of it.
        Ok(why) = broke_rx => {
            return Err(ApiError::invalid(format!("the upload of {shown} broke off: {why}")));
        }
    }
    Ok(())
}

/// Tracking's answer to an upload it refused. A file over its size limit
/// (`OUT_OF_RANGE`) is 413, as for any body too large, which MLflow's client does
/// not retry; the rest map as everywhere.
fn upload_refused(status: tonic::Status) -> ApiError {
    let too_large = status.code() == tonic::Code::OutOfRange;
    let err = ApiError::from(status);
    if too_large {
        err.with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        err
    }
}

/// Gathers a body's frames into chunks of at least `size` bytes (the last may be
/// smaller). When the body breaks off, the reason goes to `broke` and the stream
/// never ends, so the caller cancels the call instead of finishing a short file.
fn coalesce(
    body: axum::body::BodyDataStream,
    size: usize,
    broke: tokio::sync::oneshot::Sender<String>,
) -> impl futures::Stream<Item = bytes::Bytes> + Send + 'static {
    futures::stream::unfold(
        (body, bytes::BytesMut::new(), Some(broke), false),
        move |(mut body, mut buf, mut broke, done)| async move {
            if done {
                return None;
            }
            loop {
                match body.next().await {
                    Some(Ok(frame)) => {
                        buf.extend_from_slice(&frame);
                        if buf.len() >= size {
                            let chunk = buf.split().freeze();
                            return Some((chunk, (body, buf, broke, false)));
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "artifact upload body broke off");
                        if let Some(tx) = broke.take() {
                            let _ = tx.send(err.to_string());
                        }
                        futures::future::pending::<()>().await;
                    }
                    None => {
                        if buf.is_empty() {
                            return None;
                        }
                        let chunk = buf.split().freeze();
                        return Some((chunk, (body, buf, broke, true)));
                    }
                }
            }
        },
    )
}

/// `DELETE /mlflow-artifacts/artifacts/<path>`: tracking keeps artifacts for the life
/// of the run; it has no call to delete them.
async fn delete_artifact(Path(path): Path<String>) -> ApiError {
    ApiError::not_implemented(format!(
        "deleting artifacts ({SCHEME}/{path}) is not supported: the tracking service keeps a run's artifacts"
    ))
}

/// Multipart uploads: MLflow's client falls back to a plain upload on this message.
async fn multipart() -> ApiError {
    ApiError::new(
        ErrorCode::NotImplemented,
        "Multipart upload is not supported for the current artifact repository",
    )
}

/// Presigned downloads: MLflow's client falls back to the proxy on 501.
async fn presigned() -> ApiError {
    ApiError::not_implemented(
        "presigned download URLs are not supported; download through the artifact proxy",
    )
}

mod listing;
pub use listing::FileInfo;
pub(crate) use listing::{list_logged_model_artifacts, list_run_artifacts};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOT: &str = "file:///data/artifacts";
    const RUN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn uris_under_the_root_become_proxy_uris() {
        let uri = format!("{ROOT}/1/{RUN}/artifacts");
        assert_eq!(
            to_proxy_uri(&uri, Some(ROOT)),
            format!("mlflow-artifacts:/1/{RUN}/artifacts")
        );
        assert_eq!(
            to_proxy_uri(&uri, Some("file:///data/artifacts/")),
            format!("mlflow-artifacts:/1/{RUN}/artifacts")
        );
        assert_eq!(to_proxy_uri(ROOT, Some(ROOT)), "mlflow-artifacts:/");
        assert_eq!(
            to_proxy_uri(&format!("{ROOT}/0"), Some(ROOT)),
            "mlflow-artifacts:/0"
        );
        // A sibling directory that merely starts with the root's name is not under it.
        assert_eq!(
            to_proxy_uri("file:///data/artifacts2/1", Some(ROOT)),
            "file:///data/artifacts2/1"
        );
        assert_eq!(to_proxy_uri("s3://b/x/1", Some(ROOT)), "s3://b/x/1");
        assert_eq!(to_proxy_uri(&uri, None), uri);
    }

    #[test]
    fn proxy_uris_given_by_clients_map_under_the_root() {
        assert_eq!(
            from_proxy_uri("mlflow-artifacts:/custom/place", ROOT).unwrap(),
            format!("{ROOT}/custom/place")
        );
        assert_eq!(
            from_proxy_uri("mlflow-artifacts://host:5000/custom", ROOT).unwrap(),
            format!("{ROOT}/custom")
        );
        assert_eq!(from_proxy_uri("mlflow-artifacts:/", ROOT).unwrap(), ROOT);
        assert_eq!(from_proxy_uri("s3://b/x", ROOT).unwrap(), "s3://b/x");
        let err = from_proxy_uri("mlflow-artifacts:/a/../../etc", ROOT).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameterValue);
    }

    #[test]
    fn proxy_paths_name_a_run_and_a_path_under_its_root() {
        assert_eq!(
            parse_proxy_path(&format!("1/{RUN}/artifacts/model/m.onnx")).unwrap(),
            Some(RunArtifact {
                root: format!("1/{RUN}/artifacts"),
                run_id: RUN.into(),
                logged_model_id: String::new(),
                path: "model/m.onnx".into()
            })
        );
        // A logged model's root: <experiment>/models/<model id>/artifacts.
        assert_eq!(
            parse_proxy_path(&format!("1/models/m-{RUN}/artifacts/MLmodel")).unwrap(),
            Some(RunArtifact {
                root: format!("1/models/m-{RUN}/artifacts"),
                run_id: String::new(),
                logged_model_id: format!("m-{RUN}"),
                path: "MLmodel".into()
            })
        );
        assert_eq!(
            parse_proxy_path(&format!("1/{RUN}/artifacts"))
                .unwrap()
                .unwrap()
                .path,
            ""
        );
        // An experiment with its own location under the root.
        let t = parse_proxy_path(&format!("team/x/{RUN}/artifacts/a.txt"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.root.as_str(), t.path.as_str()),
            (&*format!("team/x/{RUN}/artifacts"), "a.txt")
        );
        // A path that names no run's root.
        assert_eq!(parse_proxy_path("1").unwrap(), None);
        assert_eq!(parse_proxy_path("").unwrap(), None);
        assert_eq!(parse_proxy_path(&format!("1/{RUN}")).unwrap(), None);
        assert_eq!(parse_proxy_path("1/not-a-run/artifacts/x").unwrap(), None);
        // Escapes are refused before anything is looked up, in MLflow's words.
        for bad in [
            format!("1/{RUN}/artifacts/../x"),
            format!("1/{RUN}/artifacts/a\\..\\x"),
        ] {
            let err = parse_proxy_path(&bad).unwrap_err();
            assert_eq!(
                (err.code, err.message.as_str()),
                (ErrorCode::InvalidParameterValue, "Invalid path"),
                "{bad}"
            );
        }
        // `.` and empty segments are nothing, as for MLflow (`download_artifacts(path=".")`).
        for same in [
            format!("1/{RUN}/artifacts//x"),
            format!("1/{RUN}/artifacts/./x"),
        ] {
            assert_eq!(
                parse_proxy_path(&same).unwrap().unwrap().path,
                "x",
                "{same}"
            );
        }
        assert_eq!(
            parse_proxy_path(&format!("1/{RUN}/artifacts/."))
                .unwrap()
                .unwrap()
                .path,
            ""
        );
    }

    #[test]
    fn listings_omit_the_size_of_directories() {
        let dir = FileInfo::new(
            "sub".into(),
            &pb::FileInfo {
                path: "dir/sub".into(),
                is_dir: true,
                file_size: 0,
                content: None,
            },
        );
        let file = FileInfo::new(
            "a.txt".into(),
            &pb::FileInfo {
                path: "dir/a.txt".into(),
                is_dir: false,
                file_size: 5,
                content: None,
            },
        );
        assert_eq!(
            serde_json::to_value([dir, file]).unwrap(),
            json!([{"path": "sub", "is_dir": true}, {"path": "a.txt", "is_dir": false, "file_size": 5}])
        );
        assert_eq!(content_type("a.txt"), "text/plain");
        assert_eq!(content_type("model.onnx"), "application/octet-stream");
    }

    #[test]
    fn an_upload_over_the_limit_is_413() {
        let e = upload_refused(tonic::Status::out_of_range(
            "artifact `m.bin` is larger than this server accepts (10 bytes, max_artifact_bytes)",
        ));
        assert_eq!(
            (e.http_status().as_u16(), e.code),
            (413, ErrorCode::InvalidParameterValue)
        );
        assert!(e.message.contains("10 bytes"), "{}", e.message);
        let e = upload_refused(tonic::Status::invalid_argument("bad name"));
        assert_eq!(e.http_status().as_u16(), 400);
        let e = upload_refused(tonic::Status::unavailable("store down"));
        assert_eq!(e.http_status().as_u16(), 503);
    }

    #[tokio::test]
    async fn uploads_are_gathered_into_chunks() {
        let frames: Vec<std::result::Result<bytes::Bytes, std::io::Error>> = (0..10)
            .map(|i| Ok(bytes::Bytes::from(vec![i as u8; 300])))
            .collect();
        let body = Body::from_stream(futures::stream::iter(frames));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let chunks: Vec<bytes::Bytes> = coalesce(body.into_data_stream(), 1000, tx).collect().await;
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1200, 1200, 600]);
        assert_eq!(chunks.concat().len(), 3000);
        assert!(rx.try_recv().is_err());

        // A body that breaks off says why and never ends the stream.
        let frames: Vec<std::result::Result<bytes::Bytes, std::io::Error>> = vec![
            Ok(bytes::Bytes::from_static(b"abc")),
            Err(std::io::Error::other("client went away")),
        ];
        let body = Body::from_stream(futures::stream::iter(frames));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut stream = Box::pin(coalesce(body.into_data_stream(), 1000, tx));
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await;
        assert!(next.is_err(), "the stream must not end");
        assert!(rx.await.unwrap().contains("client went away"));
    }
}
