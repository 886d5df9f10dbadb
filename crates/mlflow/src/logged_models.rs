//! MLflow 3's logged models (`/api/2.0/mlflow/logged-models/*`) and run outputs
//! (`runs/outputs`), onto tracking's LoggedModel RPCs. `mlflow.<flavor>.log_model`
//! creates a logged model, uploads its files through the artifact proxy under
//! `mlflow-artifacts:/<experiment>/models/<model id>/artifacts`, records it as the
//! run's output and finalizes it; autologging does the same.

use axum::extract::{Path, State};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use mlops_proto::tracking::v1 as pb;
use serde::Serialize;
use serde_json::{json, Value};

use crate::artifacts::to_proxy_uri;
use crate::entities::{read_params, read_tags};
use crate::error::{ApiError, Result};
use crate::json::{empty, KeyValue, Params};
use crate::state::{AppState, Auth};

/// MLflow's `LoggedModelStatus` names and numbers.
const STATUSES: &[(&str, i64, pb::LoggedModelStatus)] = &[
    (
        "LOGGED_MODEL_STATUS_UNSPECIFIED",
        0,
        pb::LoggedModelStatus::Unspecified,
    ),
    (
        "LOGGED_MODEL_PENDING",
        1,
        pb::LoggedModelStatus::LoggedModelPending,
    ),
    (
        "LOGGED_MODEL_READY",
        2,
        pb::LoggedModelStatus::LoggedModelReady,
    ),
    (
        "LOGGED_MODEL_UPLOAD_FAILED",
        3,
        pb::LoggedModelStatus::LoggedModelUploadFailed,
    ),
];

fn status_name(s: i32) -> &'static str {
    STATUSES
        .iter()
        .find(|(_, n, _)| *n == s as i64)
        .map(|(name, _, _)| *name)
        .unwrap_or("LOGGED_MODEL_STATUS_UNSPECIFIED")
}

/// The routes.
pub fn routes() -> Router<AppState> {
    const API: &str = "/api/2.0/mlflow";
    Router::new()
        .route(&format!("{API}/logged-models"), post(create))
        .route(&format!("{API}/logged-models/search"), post(search))
        .route(
            &format!("{API}/logged-models/{{model_id}}"),
            get(get_one).patch(finalize).delete(delete_one),
        )
        .route(
            &format!("{API}/logged-models/{{model_id}}/tags"),
            patch(set_tags),
        )
        .route(
            &format!("{API}/logged-models/{{model_id}}/tags/{{tag_key}}"),
            delete(delete_tag),
        )
        .route(
            &format!("{API}/logged-models/{{model_id}}/params"),
            post(log_params),
        )
        .route(&format!("{API}/runs/outputs"), post(log_outputs))
}

/// `LoggedModelInfo` as MLflow writes it.
#[derive(Debug, Serialize)]
struct Info {
    model_id: String,
    experiment_id: String,
    name: String,
    creation_timestamp_ms: i64,
    last_updated_timestamp_ms: i64,
    artifact_uri: String,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    model_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    source_run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    status_message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<KeyValue>,
}

/// A point logged with the model's id.
#[derive(Debug, Serialize)]
struct ModelMetric {
    key: String,
    #[serde(serialize_with = "crate::json::float")]
    value: f64,
    timestamp: i64,
    step: i64,
    model_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    dataset_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    dataset_digest: String,
    /// The run that logged the point.
    #[serde(skip_serializing_if = "String::is_empty")]
    run_id: String,
}

/// `LoggedModelData`: its params and the points logged with its id.
#[derive(Debug, Serialize)]
struct Data {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics: Vec<ModelMetric>,
}

/// `LoggedModel` as MLflow's client reads it.
#[derive(Debug, Serialize)]
pub struct LoggedModel {
    info: Info,
    data: Data,
}

impl LoggedModel {
    /// `m` with its artifact URI advertised through the proxy when under `root`.
    pub fn from_pb(m: pb::LoggedModel, root: Option<&str>) -> Self {
        let kv = |k: String, v: String| KeyValue { key: k, value: v };
        LoggedModel {
            info: Info {
                artifact_uri: to_proxy_uri(&m.artifact_uri, root),
                model_id: m.model_id,
                experiment_id: m.experiment_id,
                name: m.name,
                creation_timestamp_ms: m.creation_timestamp_ms,
                last_updated_timestamp_ms: m.last_updated_timestamp_ms,
                status: status_name(m.status),
                model_type: m.model_type,
                source_run_id: m.source_run_id,
                status_message: m.status_message,
                tags: m.tags.into_iter().map(|t| kv(t.key, t.value)).collect(),
            },
            data: Data {
                params: m.params.into_iter().map(|p| kv(p.key, p.value)).collect(),
                metrics: m
                    .metrics
                    .into_iter()
                    .map(|p| ModelMetric {
                        key: p.key,
                        value: p.value,
                        timestamp: p.timestamp,
                        step: p.step,
                        model_id: p.model_id,
                        dataset_name: p.dataset_name,
                        dataset_digest: p.dataset_digest,
                        run_id: p.run_id,
                    })
                    .collect(),
            },
        }
    }
}

async fn model_json(s: &AppState, auth: &Auth, m: Option<pb::LoggedModel>) -> Result<Json<Value>> {
    let m = m.ok_or_else(|| ApiError::not_found("the tracking service answered no model"))?;
    let root = s.proxy_root(auth).await;
    Ok(Json(
        json!({ "model": LoggedModel::from_pb(m, root.as_deref()) }),
    ))
}

async fn create(State(s): State<AppState>, auth: Auth, p: Params) -> Result<Json<Value>> {
    let m = s
        .tracking()
        .create_logged_model(auth.request(pb::CreateLoggedModelRequest {
            experiment_id: p.required_string("experiment_id")?,
            name: p.string("name")?,
            model_type: p.string("model_type")?,
            source_run_id: p.string("source_run_id")?,
            params: read_params(&p, "params")?,
            tags: read_tags(&p, "tags")?,
        }))
        .await?
        .into_inner()
        .model;
    model_json(&s, &auth, m).await
}

async fn get_one(
    State(s): State<AppState>,
    auth: Auth,
    Path(model_id): Path<String>,
    p: Params,
) -> Result<Json<Value>> {
    let allow_deleted = match p.get("allow_deleted") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => v.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let m = s
        .tracking()
        .get_logged_model(auth.request(pb::GetLoggedModelRequest {
            model_id,
            allow_deleted,
        }))
        .await?
        .into_inner()
        .model;
    model_json(&s, &auth, m).await
}

async fn finalize(
    State(s): State<AppState>,
    auth: Auth,
    Path(model_id): Path<String>,
    p: Params,
) -> Result<Json<Value>> {
    let status = p
        .opt_enum("status", STATUSES)?
        .ok_or_else(|| ApiError::missing("status"))?;
    let m = s
        .tracking()
        .finalize_logged_model(auth.request(pb::FinalizeLoggedModelRequest {
            model_id,
            status: status as i32,
        }))
        .await?
        .into_inner()
        .model;
    model_json(&s, &auth, m).await
}

async fn delete_one(
    State(s): State<AppState>,
    auth: Auth,
    Path(model_id): Path<String>,
) -> Result<Json<Value>> {
    s.tracking()
        .delete_logged_model(auth.request(pb::DeleteLoggedModelRequest { model_id }))
        .await?;
    Ok(empty())
}

async fn set_tags(
    State(s): State<AppState>,
    auth: Auth,
    Path(model_id): Path<String>,
    p: Params,
) -> Result<Json<Value>> {
    s.tracking()
        .set_logged_model_tags(auth.request(pb::SetLoggedModelTagsRequest {
            model_id,
            tags: read_tags(&p, "tags")?,
        }))
        .await?;
    Ok(empty())
}

async fn delete_tag(
    State(s): State<AppState>,
    auth: Auth,
    Path((model_id, key)): Path<(String, String)>,
) -> Result<Json<Value>> {
    s.tracking()
        .delete_logged_model_tag(auth.request(pb::DeleteLoggedModelTagRequest { model_id, key }))
        .await?;
    Ok(empty())
}

async fn log_params(
    State(s): State<AppState>,
    auth: Auth,
    Path(model_id): Path<String>,
    p: Params,
) -> Result<Json<Value>> {
    s.tracking()
        .log_logged_model_params(auth.request(pb::LogLoggedModelParamsRequest {
            model_id,
            params: read_params(&p, "params")?,
        }))
        .await?;
    Ok(empty())
}

async fn log_outputs(State(s): State<AppState>, auth: Auth, p: Params) -> Result<Json<Value>> {
    let run_id = p.run_id()?;
    let mut models = vec![];
    for m in p.objects("models")? {
        models.push(pb::ModelOutput {
            model_id: m.required_string("model_id")?,
            step: m.opt_i64("step")?.unwrap_or(0),
        });
    }
    s.tracking()
        .log_outputs(auth.request(pb::LogOutputsRequest { run_id, models }))
        .await?;
    Ok(empty())
}

/// The filters this server understands on logged models: `name = '<x>'` and
/// `source_run_id = '<x>'`, joined by AND (what MLflow's client itself sends).
fn parse_filter(filter: &str) -> Result<(String, String)> {
    let (mut name, mut run) = (String::new(), String::new());
    let filter = filter.trim();
    if filter.is_empty() {
        return Ok((name, run));
    }
    let unsupported = || {
        ApiError::invalid(format!(
            "filter `{filter}` is not supported: this server filters logged models by \
             `name = '<name>'` and `source_run_id = '<run id>'`, joined by AND"
        ))
    };
    for clause in split_and(filter) {
        let (key, value) = clause.split_once('=').ok_or_else(unsupported)?;
        let key = key.trim().trim_start_matches("attributes.");
        let value = value.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .ok_or_else(unsupported)?;
        match key {
            "name" => name = value.to_owned(),
            "source_run_id" => run = value.to_owned(),
            _ => return Err(unsupported()),
        }
    }
    Ok((name, run))
}

/// Splits on ` AND ` (any case) outside quotes.
fn split_and(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let (mut start, mut quote) = (0, None);
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if s[i..].len() >= 5 && s[i..i + 5].eq_ignore_ascii_case(" and ") => {
                out.push(s[start..i].trim());
                start = i + 5;
                i += 4;
            }
            None => {}
        }
        i += 1;
    }
    out.push(s[start..].trim());
    out
}

async fn search(State(s): State<AppState>, auth: Auth, p: Params) -> Result<Json<Value>> {
    let experiment_ids = p.strings("experiment_ids")?;
    let (name, source_run_id) = parse_filter(&p.string("filter")?)?;
    let mut datasets = vec![];
    for d in p.objects("datasets")? {
        datasets.push(pb::LoggedModelDatasetFilter {
            dataset_name: d.string("dataset_name")?,
            dataset_digest: d.string("dataset_digest")?,
        });
    }
    let resp = s
        .tracking()
        .search_logged_models(auth.request(pb::SearchLoggedModelsRequest {
            experiment_ids,
            source_run_id,
            name,
            max_results: p.opt_i32("max_results")?.unwrap_or(0),
            page_token: p.string("page_token")?,
            datasets,
        }))
        .await?
        .into_inner();
    let root = s.proxy_root(&auth).await;
    let models: Vec<LoggedModel> = resp
        .models
        .into_iter()
        .map(|m| LoggedModel::from_pb(m, root.as_deref()))
        .collect();
    let mut out = json!({});
    if !models.is_empty() {
        out["models"] = json!(models);
    }
    if !resp.next_page_token.is_empty() {
        out["next_page_token"] = json!(resp.next_page_token);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_the_client_sends() {
        assert_eq!(parse_filter("").unwrap(), (String::new(), String::new()));
        assert_eq!(
            parse_filter("name = 'model'").unwrap(),
            ("model".into(), String::new())
        );
        assert_eq!(
            parse_filter("name = 'a and b' AND source_run_id = \"r1\"").unwrap(),
            ("a and b".into(), "r1".into())
        );
        for bad in [
            "metrics.acc > 1",
            "name LIKE 'x%'",
            "name = x",
            "tags.a = 'b'",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_shape() {
        let m = pb::LoggedModel {
            model_id: "m-1".into(),
            experiment_id: "1".into(),
            name: "model".into(),
            artifact_uri: "file:///root/1/models/m-1/artifacts".into(),
            status: pb::LoggedModelStatus::LoggedModelReady as i32,
            params: vec![pb::Param {
                key: "a".into(),
                value: "1".into(),
            }],
            ..Default::default()
        };
        let v = serde_json::to_value(LoggedModel::from_pb(m, Some("file:///root"))).unwrap();
        assert_eq!(v["info"]["status"], "LOGGED_MODEL_READY");
        assert_eq!(
            v["info"]["artifact_uri"],
            "mlflow-artifacts:/1/models/m-1/artifacts"
        );
        assert_eq!(v["data"]["params"][0]["key"], "a");
        assert!(v["info"].get("source_run_id").is_none());
    }
}
