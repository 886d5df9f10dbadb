//! MLflow's model registry endpoints (`/api/2.0/mlflow/registered-models/*` and
//! `model-versions/*`, with the HTTP methods of `model_registry.proto`), each mapped
//! onto the registry's gRPC API.
//!
//! What needs translating:
//! - version numbers are strings in MLflow (`"3"`), stages are names read in any case;
//! - a version's `source` becomes what our registry registers: a run's artifact
//!   (`runs:/<run id>/<path>`, or a URI under the run's artifact root, such as the
//!   `mlflow-artifacts:/<exp>/<run id>/artifacts/<path>` that `mlflow.register_model`
//!   sends) or a logged model (`models:/m-<id>` or `model_id`); the registry copies
//!   the files and answers once the version is READY ([`sources`]);
//! - a version's download URI is where its files came from, as the client reaches it
//!   (`mlflow-artifacts:/...` through this gateway's artifact proxy);
//! - MLflow's page sizes: at most 1000 models per page (refused beyond, like MLflow);
//!   versions up to MLflow's 200,000, served in pages of at most our 10,000 with a
//!   `next_page_token`;
//! - prompts: MLflow's server leaves registered models tagged
//!   `mlflow.prompt.is_prompt = true` out of model searches unless the filter asks for
//!   them, and MLflow's client appends ``tag.`mlflow.prompt.is_prompt` != 'true'`` to
//!   every search. In the registry's grammar a `!=` needs the tag, which ordinary
//!   models lack, so that clause is taken off and prompts are left out here.

mod create;
pub mod sources;
pub mod validate;

use axum::extract::State;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use mlops_proto::registry::v1 as pb;
use serde_json::{json, Value};

use crate::artifacts::to_proxy_uri;
use crate::error::{ApiError, ErrorCode, Result};
use crate::json::{empty, parse_int, KeyValue, Params};
use crate::registry_entities::{parse_stage, ModelVersion, RegisteredModel};
use crate::state::{AppState, Auth};
use create::create_model_version;
use sources::{download_of, Download};

/// MLflow's largest page of registered models (`SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD`).
const MAX_MODELS_PAGE: i32 = 1000;
/// MLflow's largest page of versions (`SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD`).
const MLFLOW_MAX_VERSIONS_PAGE: i32 = 200_000;
/// The order of MLflow's `search_model_versions` when the request names none.
const VERSIONS_DEFAULT_ORDER: [&str; 3] = [
    "last_updated_timestamp DESC",
    "name ASC",
    "version_number DESC",
];
/// The registry's largest page of versions; bigger requests get pages of this size.
const MAX_VERSIONS_PAGE: i32 = 10_000;

/// The tag MLflow marks prompts with (to MLflow a prompt is a registered model).
const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
/// The model registry endpoints.
pub fn routes() -> Router<AppState> {
    const API: &str = "/api/2.0/mlflow";
    let path = |p: &str| format!("{API}/{p}");
    Router::new()
        .route(
            &path("registered-models/create"),
            post(create_registered_model),
        )
        .route(&path("registered-models/get"), get(get_registered_model))
        .route(
            &path("registered-models/rename"),
            post(rename_registered_model),
        )
        .route(
            &path("registered-models/update"),
            patch(update_registered_model),
        )
        .route(
            &path("registered-models/delete"),
            axum::routing::delete(delete_registered_model),
        )
        .route(
            &path("registered-models/search"),
            get(search_registered_models),
        )
        .route(
            &path("registered-models/get-latest-versions"),
            post(get_latest_versions).get(get_latest_versions),
        )
        .route(
            &path("registered-models/set-tag"),
            post(set_registered_model_tag),
        )
        .route(
            &path("registered-models/delete-tag"),
            axum::routing::delete(delete_registered_model_tag),
        )
        .route(
            &path("registered-models/alias"),
            post(set_alias).delete(delete_alias).get(get_by_alias),
        )
        .route(&path("model-versions/create"), post(create_model_version))
        .route(&path("model-versions/get"), get(get_model_version))
        .route(&path("model-versions/update"), patch(update_model_version))
        .route(
            &path("model-versions/delete"),
            axum::routing::delete(delete_model_version),
        )
        .route(&path("model-versions/search"), get(search_model_versions))
        .route(
            &path("model-versions/transition-stage"),
            post(transition_stage),
        )
        .route(&path("model-versions/set-tag"), post(set_model_version_tag))
        .route(
            &path("model-versions/delete-tag"),
            axum::routing::delete(delete_model_version_tag),
        )
        .route(
            &path("model-versions/get-download-uri"),
            get(get_download_uri),
        )
}

type JsonResult = Result<Json<Value>>;

/// A version number as MLflow sends it (`"3"`, or a number), with MLflow's message
/// for anything else.
pub fn parse_version(s: &str) -> Result<i64> {
    let digits = s.trim();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    let n = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    match n {
        Some(n) if n >= 1 => Ok(n),
        Some(_) => Err(ApiError::invalid(format!(
            "Parameter 'version' must be a positive integer (1, 2, ...), got '{s}'."
        ))),
        None => Err(ApiError::invalid(format!(
            "Parameter 'version' must be an integer, got '{s}'."
        ))),
    }
}

/// The required `version` of a request.
fn version(p: &Params) -> Result<i64> {
    match p.get("version") {
        None => Err(p.missing("version")),
        Some(Value::String(s)) if s.is_empty() => Err(p.missing("version")),
        Some(Value::String(s)) => parse_version(s),
        Some(v @ Value::Number(_)) => parse_int(v)
            .map_err(|_| {
                ApiError::invalid(format!(
                    "Parameter 'version' must be an integer, got '{v}'."
                ))
            })
            .and_then(|n| parse_version(&n.to_string())),
        Some(v) => Err(ApiError::invalid(format!(
            "Parameter 'version' must be an integer, got '{v}'."
        ))),
    }
}

/// An optional boolean: JSON `true`/`false`, or the strings (a query string's).
fn opt_bool(p: &Params, key: &str) -> Result<Option<bool>> {
    match p.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::invalid(format!(
            "Invalid value {v} for parameter '{key}' supplied: expected a boolean."
        ))),
    }
}

fn tags(p: &Params) -> Result<Vec<pb::Tag>> {
    p.objects("tags")?
        .iter()
        .map(|t| {
            let (key, value) = KeyValue::read(t)?;
            Ok(pb::Tag { key, value })
        })
        .collect()
}

/// The page size to ask the registry for: `unset` when the request has none; MLflow's
/// message below 1 and above `mlflow_max`; at most `our_max` (the rest comes with a
/// `next_page_token`).
pub fn page_size(requested: Option<i32>, unset: i32, mlflow_max: i32, our_max: i32) -> Result<i32> {
    match requested {
        None => Ok(unset),
        Some(n) if n < 1 => Err(ApiError::invalid(format!(
            "Invalid value for max_results. It must be a positive integer, but got {n}"
        ))),
        Some(n) if n > mlflow_max => Err(ApiError::invalid(format!(
            "Invalid value for request parameter max_results. It must be at most {mlflow_max}, \
             but got value {n}"
        ))),
        Some(n) => Ok(n.min(our_max)),
    }
}

fn model_json(m: Option<pb::RegisteredModel>) -> JsonResult {
    let m = m.ok_or_else(|| ApiError::not_found("the registry answered no registered model"))?;
    Ok(Json(
        json!({ "registered_model": RegisteredModel::from(m) }),
    ))
}

fn version_json(v: Option<pb::ModelVersion>) -> JsonResult {
    let v = v.ok_or_else(|| ApiError::not_found("the registry answered no model version"))?;
    Ok(Json(json!({ "model_version": ModelVersion::from(v) })))
}

async fn create_registered_model(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::CreateRegisteredModelRequest {
        name: p.required_string("name")?,
        description: p.string("description")?,
        tags: tags(&p)?,
        gate_policy: None,
    };
    let m = s
        .registry()
        .create_registered_model(auth.request(req))
        .await?
        .into_inner()
        .registered_model;
    model_json(m)
}

async fn get_registered_model(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let name = p.required_string("name")?;
    let m = s
        .registry()
        .get_registered_model(auth.request(pb::GetRegisteredModelRequest { name }))
        .await?
        .into_inner()
        .registered_model;
    model_json(m)
}

async fn rename_registered_model(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::RenameRegisteredModelRequest {
        name: p.required_string("name")?,
        new_name: p.required_string("new_name")?,
    };
    let m = s
        .registry()
        .rename_registered_model(auth.request(req))
        .await?
        .into_inner()
        .registered_model;
    model_json(m)
}

async fn update_registered_model(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    // MLflow's server sets the description it is sent, clearing it when there is none.
    let req = pb::UpdateRegisteredModelRequest {
        name: p.required_string("name")?,
        description: Some(p.string("description")?),
        gate_policy: None,
    };
    let m = s
        .registry()
        .update_registered_model(auth.request(req))
        .await?
        .into_inner()
        .registered_model;
    model_json(m)
}

async fn delete_registered_model(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let name = p.required_string("name")?;
    s.registry()
        .delete_registered_model(auth.request(pb::DeleteRegisteredModelRequest { name }))
        .await?;
    Ok(empty())
}

/// `filter` without the clause by which MLflow's client leaves prompts out, and
/// whether prompts are to be left out of the answer: yes, as MLflow's server does,
/// unless the filter says something of its own about the prompt tag.
pub fn without_prompt_clause(filter: &str) -> (String, bool) {
    let trimmed = filter.trim();
    for prefix in ["tag.", "tags."] {
        let clause = format!("{prefix}`{PROMPT_TAG}` != 'true'");
        let Some(start) = trimmed.len().checked_sub(clause.len()) else {
            continue;
        };
        let Some(tail) = trimmed.get(start..) else {
            continue;
        };
        if !tail.eq_ignore_ascii_case(&clause) {
            continue;
        }
        let rest = trimmed[..start].trim_end();
        if rest.is_empty() {
            return (String::new(), true);
        }
        let split = rest.len().saturating_sub(3);
        if let (Some(head), Some(and)) = (rest.get(..split), rest.get(split..)) {
            if and.eq_ignore_ascii_case("and") && head.ends_with(char::is_whitespace) {
                return (head.trim_end().to_owned(), true);
            }
        }
    }
    (filter.to_owned(), !filter.contains(PROMPT_TAG))
}

fn is_prompt(m: &pb::RegisteredModel) -> bool {
    m.tags
        .iter()
        .any(|t| t.key == PROMPT_TAG && t.value.eq_ignore_ascii_case("true"))
}

async fn search_registered_models(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let (filter, no_prompts) = without_prompt_clause(&p.string("filter")?);
    let req = pb::SearchRegisteredModelsRequest {
        filter,
        // Unset is the registry's default page, MLflow's 100.
        max_results: page_size(
            p.max_results(MAX_MODELS_PAGE.into())?,
            0,
            MAX_MODELS_PAGE,
            MAX_MODELS_PAGE,
        )?,
        order_by: p.strings("order_by")?,
        page_token: p.string("page_token")?,
    };
    let resp = s
        .registry()
        .search_registered_models(auth.request(req))
        .await?
        .into_inner();
    let mut out = json!({});
    // A page may come out shorter than asked; its token still leads to the next one.
    let list: Vec<RegisteredModel> = resp
        .registered_models
        .into_iter()
        .filter(|m| !(no_prompts && is_prompt(m)))
        .map(RegisteredModel::from)
        .collect();
    if !list.is_empty() {
        out["registered_models"] = json!(list);
    }
    if !resp.next_page_token.is_empty() {
        out["next_page_token"] = json!(resp.next_page_token);
    }
    Ok(Json(out))
}

async fn get_latest_versions(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::GetLatestVersionsRequest {
        name: p.required_string("name")?,
        // None given: every stage, as MLflow's server answers.
        stages: p
            .strings("stages")?
            .iter()
            .map(|st| parse_stage(st).map(|st| st as i32))
            .collect::<Result<_>>()?,
    };
    let versions = s
        .registry()
        .get_latest_versions(auth.request(req))
        .await?
        .into_inner()
        .model_versions;
    Ok(Json(versions_json(versions)))
}

fn versions_json(versions: Vec<pb::ModelVersion>) -> Value {
    if versions.is_empty() {
        return json!({});
    }
    let list: Vec<ModelVersion> = versions.into_iter().map(ModelVersion::from).collect();
    json!({ "model_versions": list })
}

async fn set_registered_model_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::SetRegisteredModelTagRequest {
        name: p.required_string("name")?,
        key: p.required_string("key")?,
        value: p.string("value")?,
    };
    s.registry()
        .set_registered_model_tag(auth.request(req))
        .await?;
    Ok(empty())
}

async fn delete_registered_model_tag(
    State(s): State<AppState>,
    auth: Auth,
    p: Params,
) -> JsonResult {
    let req = pb::DeleteRegisteredModelTagRequest {
        name: p.required_string("name")?,
        key: p.required_string("key")?,
    };
    s.registry()
        .delete_registered_model_tag(auth.request(req))
        .await?;
    Ok(empty())
}

async fn set_alias(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::SetRegisteredModelAliasRequest {
        name: p.required_string("name")?,
        alias: p.required_string("alias")?,
        version: version(&p)?,
    };
    s.registry()
        .set_registered_model_alias(auth.request(req))
        .await?;
    Ok(empty())
}

async fn delete_alias(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::DeleteRegisteredModelAliasRequest {
        name: p.required_string("name")?,
        alias: p.required_string("alias")?,
    };
    s.registry()
        .delete_registered_model_alias(auth.request(req))
        .await?;
    Ok(empty())
}

async fn get_by_alias(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::GetModelVersionByAliasRequest {
        name: p.required_string("name")?,
        alias: p.required_string("alias")?,
    };
    let v = s
        .registry()
        .get_model_version_by_alias(auth.request(req))
        .await?
        .into_inner()
        .model_version;
    version_json(v)
}

async fn get_version(s: &AppState, auth: &Auth, p: &Params) -> Result<pb::ModelVersion> {
    let req = pb::GetModelVersionRequest {
        name: p.required_string("name")?,
        version: version(p)?,
    };
    s.registry()
        .get_model_version(auth.request(req))
        .await?
        .into_inner()
        .model_version
        .ok_or_else(|| ApiError::not_found("the registry answered no model version"))
}

async fn get_model_version(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let v = get_version(&s, &auth, &p).await?;
    version_json(Some(v))
}

async fn update_model_version(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    // As MLflow's server: the description sent, or none.
    let req = pb::UpdateModelVersionRequest {
        name: p.required_string("name")?,
        version: version(&p)?,
        description: p.string("description")?,
    };
    let v = s
        .registry()
        .update_model_version(auth.request(req))
        .await?
        .into_inner()
        .model_version;
    version_json(v)
}

async fn delete_model_version(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::DeleteModelVersionRequest {
        name: p.required_string("name")?,
        version: version(&p)?,
    };
    s.registry().delete_model_version(auth.request(req)).await?;
    Ok(empty())
}

pub(crate) async fn search_model_versions(
    State(s): State<AppState>,
    auth: Auth,
    p: Params,
) -> JsonResult {
    let max_results = page_size(
        p.max_results(MLFLOW_MAX_VERSIONS_PAGE.into())?,
        MAX_VERSIONS_PAGE,
        MLFLOW_MAX_VERSIONS_PAGE,
        MAX_VERSIONS_PAGE,
    )?;
    let req = pb::SearchModelVersionsRequest {
        filter: p.string("filter")?,
        max_results,
        order_by: match p.strings("order_by")? {
            // MLflow's default order: last updated first.
            none if none.is_empty() => VERSIONS_DEFAULT_ORDER.map(str::to_owned).to_vec(),
            given => given,
        },
        page_token: p.string("page_token")?,
    };
    let resp = s
        .registry()
        .search_model_versions(auth.request(req))
        .await?
        .into_inner();
    let mut out = versions_json(resp.model_versions);
    if !resp.next_page_token.is_empty() {
        out["next_page_token"] = json!(resp.next_page_token);
    }
    Ok(Json(out))
}

async fn transition_stage(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::TransitionModelVersionStageRequest {
        name: p.required_string("name")?,
        version: version(&p)?,
        stage: parse_stage(&p.required_string("stage")?)? as i32,
        archive_existing_versions: opt_bool(&p, "archive_existing_versions")?.unwrap_or(false),
    };
    let v = s
        .registry()
        .transition_model_version_stage(auth.request(req))
        .await?
        .into_inner()
        .model_version;
    version_json(v)
}

async fn set_model_version_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::SetModelVersionTagRequest {
        name: p.required_string("name")?,
        version: version(&p)?,
        key: p.required_string("key")?,
        value: p.string("value")?,
    };
    s.registry()
        .set_model_version_tag(auth.request(req))
        .await?;
    Ok(empty())
}

async fn delete_model_version_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::DeleteModelVersionTagRequest {
        name: p.required_string("name")?,
        version: version(&p)?,
        key: p.required_string("key")?,
    };
    s.registry()
        .delete_model_version_tag(auth.request(req))
        .await?;
    Ok(empty())
}

async fn get_download_uri(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let v = get_version(&s, &auth, &p).await?;
    let uri = match download_of(&v)? {
        Download::Uri(uri) => uri,
        Download::LoggedModel(model_id) => s.logged_model(&auth, &model_id).await?.artifact_uri,
    };
    if !s.serves_artifacts() {
        return Ok(Json(json!({ "artifact_uri": uri })));
    }
    // Without the root the client would be sent to the tracking service's own storage.
    let root = s.artifact_root(&auth).await.ok_or_else(|| {
        ApiError::new(
            ErrorCode::TemporarilyUnavailable,
            "the tracking service's artifact root is not known yet; retry",
        )
    })?;
    Ok(Json(
        json!({ "artifact_uri": to_proxy_uri(&uri, Some(&root)) }),
    ))
}

#[cfg(test)]
mod tests;
