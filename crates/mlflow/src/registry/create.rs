//! `model-versions/create`: which sources are copied in, which are kept as
//! references, and the logged model's list of its versions.

use axum::extract::State;
use mlops_proto::registry::v1 as pb;
use mlops_proto::tracking::v1 as tpb;
use serde_json::json;

use super::sources::{parse_source, path_under, Source};
use super::validate::{self, Locality};
use super::{tags, version_json, JsonResult};
use crate::artifacts::to_proxy_uri;
use crate::error::Result;
use crate::json::Params;
use crate::state::{AppState, Auth};

/// `model-versions/create`. A source the registry can read (a run's artifact here, a
/// logged model, another registered version) is copied in, so the version is
/// immutable; any other source (a run in another server, an `s3://` path a job wrote,
/// a relative path) is recorded as given, as MLflow records every source: a READY
/// version that is only a reference, whose files this server does not serve.
pub(super) async fn create_model_version(
    State(s): State<AppState>,
    auth: Auth,
    p: Params,
) -> JsonResult {
    let source = p.required_string("source")?;
    let run_id = p.string("run_id")?;
    // MLflow's checks come first: nothing is registered from a source they refuse.
    let readable_as = checked_source(&s, &auth, &source, &run_id, &p.string("model_id")?).await?;
    let base = pb::CreateModelVersionRequest {
        name: p.required_string("name")?,
        description: p.string("description")?,
        tags: tags(&p)?,
        run_link: p.string("run_link")?,
        user_id: p.string("user_id")?,
        ..Default::default()
    };
    let reference = pb::CreateModelVersionRequest {
        source: source.clone(),
        run_id: run_id.clone(),
        ..base.clone()
    };
    // A copy of a registered version must find it, as MLflow's copy_model_version must.
    let (readable, copy) = match readable_source(&s, &auth, &p, &readable_as, &run_id, base).await?
    {
        Some(req) => {
            let copy = !req.copy_from_name.is_empty();
            (
                s.registry().create_model_version(auth.request(req)).await,
                copy,
            )
        }
        None => (
            Err(tonic::Status::not_found("not a source this server reads")),
            false,
        ),
    };
    let v = match readable {
        Ok(resp) => resp.into_inner().model_version,
        // The run, its artifact or the logged model is not here: record the source as given.
        Err(status) if status.code() == tonic::Code::NotFound && !copy => {
            s.registry()
                .create_model_version(auth.request(reference))
                .await?
                .into_inner()
                .model_version
        }
        Err(status) => return Err(status.into()),
    };
    if let Some(v) = &v {
        link_logged_model(&s, &auth, v).await?;
    }
    version_json(v)
}

/// The source to read, if MLflow's server would register `source` (see [`validate`]).
/// A local path must lie in the artifact directory of the request's run (or logged
/// model) as tracking stores it; inside a run's, it is read as `runs:/<run id>/<path>`.
async fn checked_source(
    s: &AppState,
    auth: &Auth,
    source: &str,
    run_id: &str,
    model_id: &str,
) -> Result<String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let path = match validate::locality(source, &cwd)? {
        Locality::Remote => {
            validate::check_remote(source)?;
            return Ok(source.to_owned());
        }
        Locality::Local(path) => path,
    };
    let by_model = !model_id.is_empty();
    let dir = if by_model {
        s.logged_model(auth, model_id).await?.artifact_uri
    } else if !run_id.is_empty() {
        s.tracking()
            .get_run(auth.request(tpb::GetRunRequest {
                run_id: run_id.to_owned(),
            }))
            .await?
            .into_inner()
            .run
            .and_then(|r| r.info)
            .unwrap_or_default()
            .artifact_uri
    } else {
        return Err(validate::outside_artifacts(source, false));
    };
    let inside = validate::local_dir(&dir)
        .and_then(|dir| path.strip_prefix(&dir).ok().map(|p| p.to_owned()));
    match inside {
        // A logged model is registered whole, whatever path inside it is named.
        Some(_) if by_model => Ok(source.to_owned()),
        Some(rel) if rel.as_os_str().is_empty() => Ok(format!("runs:/{run_id}")),
        Some(rel) => Ok(format!("runs:/{run_id}/{}", rel.display())),
        None => Err(validate::outside_artifacts(source, by_model)),
    }
}

/// The tag MLflow keeps a logged model's registered versions in.
const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";

/// Adds `v` to its logged model's `mlflow.modelVersions` tag, as MLflow's server does
/// (a JSON list of `{"name", "version"}` written as Python's `json.dumps` writes it).
async fn link_logged_model(s: &AppState, auth: &Auth, v: &pb::ModelVersion) -> Result<()> {
    let model_id = v
        .lineage
        .as_ref()
        .map(|l| l.logged_model_id.clone())
        .unwrap_or_default();
    if model_id.is_empty() {
        return Ok(());
    }
    let model = s.logged_model(auth, &model_id).await?;
    let mut linked: Vec<(String, i64)> = model
        .tags
        .iter()
        .find(|t| t.key == MODEL_VERSIONS_TAG)
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t.value).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["version"].as_i64()?)))
        .collect();
    linked.push((v.name.clone(), v.version));
    let entries: Vec<String> = linked
        .iter()
        .map(|(name, version)| format!("{{\"name\": {}, \"version\": {version}}}", json!(name)))
        .collect();
    s.tracking()
        .set_logged_model_tags(auth.request(tpb::SetLoggedModelTagsRequest {
            model_id,
            tags: vec![tpb::Tag {
                key: MODEL_VERSIONS_TAG.into(),
                value: format!("[{}]", entries.join(", ")),
            }],
        }))
        .await?;
    Ok(())
}

/// The registry request that copies `source` in, or `None` when the source is not one
/// this server reads (or not one it holds: a run elsewhere, a path under no run).
async fn readable_source(
    s: &AppState,
    auth: &Auth,
    p: &Params,
    source: &str,
    run_id: &str,
    mut req: pb::CreateModelVersionRequest,
) -> Result<Option<pb::CreateModelVersionRequest>> {
    let root = s.artifact_root(auth).await;
    match parse_source(source, run_id, &p.string("model_id")?, root.as_deref())? {
        Source::Reference => return Ok(None),
        Source::Registered { name, version } => {
            req.copy_from_name = name;
            req.copy_from_version = version;
        }
        Source::LoggedModel(id) => {
            req.logged_model_id = id;
            req.run_id = run_id.to_owned();
        }
        Source::RunArtifact { run_id, path } => {
            req.run_id = run_id;
            req.artifact_path = path;
        }
        Source::UnderRun { run_id, uri } => {
            let got = s
                .tracking()
                .get_run(auth.request(tpb::GetRunRequest {
                    run_id: run_id.clone(),
                }))
                .await;
            let info = match got {
                Ok(resp) => resp
                    .into_inner()
                    .run
                    .and_then(|r| r.info)
                    .unwrap_or_default(),
                Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
                Err(status) => return Err(status.into()),
            };
            let roots = [
                info.artifact_uri.clone(),
                to_proxy_uri(&info.artifact_uri, root.as_deref()),
            ];
            let Some(path) = path_under(&uri, &roots) else {
                return Ok(None);
            };
            req.run_id = run_id;
            req.artifact_path = path;
        }
    }
    Ok(Some(req))
}
