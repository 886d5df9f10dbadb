//! MLflow's tracking endpoints (`/api/2.0/mlflow/experiments/*`, `runs/*`,
//! `metrics/*`), each mapped onto the tracking service's gRPC API.
//!
//! MLflow behaviours that take more than one of our calls are composed here: a run
//! created with the tags `mlflow.runName`, `mlflow.user` or `mlflow.parentRunId` gets
//! them as its name, user and parent (a parent that is not a run here, which MLflow
//! allows, stays a tag); setting the tag `mlflow.runName`
//! renames the run; a metric history asked for without `max_results` is read to its end.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use mlops_proto::tracking::v1 as pb;
use serde_json::{json, Value};

use crate::artifacts::from_proxy_uri;
use crate::entities::{
    read_dataset_input, read_metric, read_params, read_tags, Experiment, Run, RunInfo,
    RUN_STATUSES, VIEW_TYPES,
};
use crate::error::{ApiError, Result};
use crate::history::metric_history;
use crate::json::{empty, Params};
use crate::state::{AppState, Auth};

/// The tag MLflow keeps a run's name in.
const RUN_NAME_TAG: &str = "mlflow.runName";
/// The tag MLflow keeps a run's user in.
const USER_TAG: &str = "mlflow.user";
/// The tag MLflow keeps a nested run's parent in.
const PARENT_TAG: &str = "mlflow.parentRunId";

/// The tracking endpoints.
pub fn routes() -> Router<AppState> {
    const API: &str = "/api/2.0/mlflow";
    let path = |p: &str| format!("{API}/{p}");
    Router::new()
        .route(&path("experiments/create"), post(create_experiment))
        .route(&path("experiments/get"), get(get_experiment))
        .route(
            &path("experiments/get-by-name"),
            get(get_experiment_by_name),
        )
        .route(
            &path("experiments/search"),
            get(search_experiments).post(search_experiments),
        )
        .route(&path("experiments/update"), post(update_experiment))
        .route(&path("experiments/delete"), post(delete_experiment))
        .route(&path("experiments/restore"), post(restore_experiment))
        .route(
            &path("experiments/set-experiment-tag"),
            post(set_experiment_tag),
        )
        .route(
            &path("experiments/delete-experiment-tag"),
            post(delete_experiment_tag),
        )
        .route(&path("runs/create"), post(create_run))
        .route(&path("runs/get"), get(get_run))
        .route(&path("runs/update"), post(update_run))
        .route(&path("runs/delete"), post(delete_run))
        .route(&path("runs/restore"), post(restore_run))
        .route(&path("runs/search"), post(search_runs))
        .route(&path("runs/log-metric"), post(log_metric))
        .route(&path("runs/log-parameter"), post(log_param))
        .route(&path("runs/log-batch"), post(log_batch))
        .route(&path("runs/set-tag"), post(set_tag))
        .route(&path("runs/delete-tag"), post(delete_tag))
        .route(&path("runs/log-inputs"), post(log_inputs))
        .route(&path("metrics/get-history"), get(get_metric_history))
        .route(
            &path("metrics/get-history-bulk-interval"),
            get(crate::history::bulk_interval),
        )
}

type JsonResult = Result<Json<Value>>;

async fn create_experiment(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let name = p.required_string("name")?;
    let mut artifact_location = p.string("artifact_location")?;
    if artifact_location.starts_with(crate::artifacts::SCHEME) {
        let root = s.artifact_root(&auth).await.ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorCode::TemporarilyUnavailable,
                "the tracking service's artifact root is not known yet; retry",
            )
        })?;
        artifact_location = from_proxy_uri(&artifact_location, &root)?;
    } else if is_relative_path(&artifact_location) {
        // MLflow's `resolve_uri_if_local`: a relative path is under the server's
        // working directory.
        let cwd = std::env::current_dir().map_err(|e| {
            ApiError::invalid(format!(
                "artifact_location `{artifact_location}` is relative and this server cannot \
                 tell its working directory ({e}); give an absolute location"
            ))
        })?;
        artifact_location = cwd.join(&artifact_location).display().to_string();
    }
    let resp = s
        .tracking()
        .create_experiment(auth.request(pb::CreateExperimentRequest {
            name,
            artifact_location,
            tags: read_tags(&p, "tags")?,
        }))
        .await?
        .into_inner();
    Ok(Json(json!({ "experiment_id": resp.experiment_id })))
}

/// A location with no scheme that is not absolute: `my_location`, `runs/a`.
fn is_relative_path(location: &str) -> bool {
    !location.is_empty()
        && !location.starts_with('/')
        && !location.contains(":/")
        && !location.contains(":\\")
}

async fn experiment_json(s: &AppState, auth: &Auth, e: Option<pb::Experiment>) -> JsonResult {
    let root = s.proxy_root(auth).await;
    let e = e.ok_or_else(|| ApiError::not_found("the tracking service answered no experiment"))?;
    Ok(Json(
        json!({ "experiment": Experiment::from_pb(e, root.as_deref()) }),
    ))
}

pub(crate) async fn get_experiment(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let experiment_id = p.required_string("experiment_id")?;
    let e = s
        .tracking()
        .get_experiment(auth.request(pb::GetExperimentRequest { experiment_id }))
        .await?
        .into_inner()
        .experiment;
    experiment_json(&s, &auth, e).await
}

async fn get_experiment_by_name(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let name = p.required_string("experiment_name")?;
    let e = s
        .tracking()
        .get_experiment_by_name(auth.request(pb::GetExperimentByNameRequest { name }))
        .await?
        .into_inner()
        .experiment;
    experiment_json(&s, &auth, e).await
}

async fn search_experiments(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::SearchExperimentsRequest {
        filter: p.string("filter")?,
        max_results: p.opt_i32("max_results")?.unwrap_or(0),
        order_by: p.strings("order_by")?,
        page_token: p.string("page_token")?,
        view_type: p
            .opt_enum("view_type", VIEW_TYPES)?
            .unwrap_or(pb::ViewType::ActiveOnly) as i32,
    };
    let resp = s
        .tracking()
        .search_experiments(auth.request(req))
        .await?
        .into_inner();
    let root = s.proxy_root(&auth).await;
    let mut out = json!({});
    if !resp.experiments.is_empty() {
        let list: Vec<Experiment> = resp
            .experiments
            .into_iter()
            .map(|e| Experiment::from_pb(e, root.as_deref()))
            .collect();
        out["experiments"] = json!(list);
    }
    if !resp.next_page_token.is_empty() {
        out["next_page_token"] = json!(resp.next_page_token);
    }
    Ok(Json(out))
}

async fn update_experiment(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::UpdateExperimentRequest {
        experiment_id: p.required_string("experiment_id")?,
        new_name: p.required_string("new_name")?,
    };
    s.tracking().update_experiment(auth.request(req)).await?;
    Ok(empty())
}

async fn delete_experiment(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let experiment_id = p.required_string("experiment_id")?;
    s.tracking()
        .delete_experiment(auth.request(pb::DeleteExperimentRequest { experiment_id }))
        .await?;
    Ok(empty())
}

async fn restore_experiment(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let experiment_id = p.required_string("experiment_id")?;
    s.tracking()
        .restore_experiment(auth.request(pb::RestoreExperimentRequest { experiment_id }))
        .await?;
    Ok(empty())
}

async fn set_experiment_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::SetExperimentTagRequest {
        experiment_id: p.required_string("experiment_id")?,
        key: p.required_string("key")?,
        value: p.string("value")?,
    };
    s.tracking().set_experiment_tag(auth.request(req)).await?;
    Ok(empty())
}

async fn delete_experiment_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::DeleteExperimentTagRequest {
        experiment_id: p.required_string("experiment_id")?,
        key: p.required_string("key")?,
    };
    s.tracking()
        .delete_experiment_tag(auth.request(req))
        .await?;
    Ok(empty())
}

async fn run_json(s: &AppState, auth: &Auth, run: Option<pb::Run>) -> JsonResult {
    let run = run.ok_or_else(|| ApiError::not_found("the tracking service answered no run"))?;
    let root = s.proxy_root(auth).await;
    Ok(Json(json!({ "run": Run::from_pb(run, root.as_deref()) })))
}

/// MLflow's `CreateRun` as tracking's: the name, user and parent may come as tags.
pub fn create_run_request(p: &Params) -> Result<pb::CreateRunRequest> {
    let tags = read_tags(p, "tags")?;
    let tag = |key: &str| {
        tags.iter()
            .find(|t| t.key == key)
            .map(|t| t.value.clone())
            .unwrap_or_default()
    };
    let mut run_name = p.string("run_name")?;
    let name_tag = tag(RUN_NAME_TAG);
    if !run_name.is_empty() && !name_tag.is_empty() && run_name != name_tag {
        return Err(ApiError::invalid(format!(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different \
             values (run_name='{run_name}', mlflow.runName='{name_tag}')."
        )));
    }
    if run_name.is_empty() {
        run_name = name_tag;
    }
    let mut user_id = p.string("user_id")?;
    if user_id.is_empty() {
        user_id = tag(USER_TAG);
    }
    Ok(pb::CreateRunRequest {
        experiment_id: p.string("experiment_id")?,
        run_name,
        user_id,
        start_time: p.opt_i64("start_time")?,
        parent_run_id: tag(PARENT_TAG),
        tags,
        heartbeat_timeout_seconds: None,
    })
}

async fn create_run(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let mut req = create_run_request(&p)?;
    if !req.parent_run_id.is_empty() && !parent_exists(&s, &auth, &req).await? {
        // MLflow nests a run under any id (the parent is only a tag); tracking links a
        // parent it has. Otherwise the run keeps the tag alone.
        req.parent_run_id.clear();
    }
    let run = s
        .tracking()
        .create_run(auth.request(req))
        .await?
        .into_inner()
        .run;
    run_json(&s, &auth, run).await
}

/// Whether the parent a new run names is a run here.
async fn parent_exists(s: &AppState, auth: &Auth, req: &pb::CreateRunRequest) -> Result<bool> {
    let parent = s
        .tracking()
        .get_run(auth.request(pb::GetRunRequest {
            run_id: req.parent_run_id.clone(),
        }))
        .await;
    match parent {
        Ok(_) => Ok(true),
        Err(st)
            if matches!(
                st.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) =>
        {
            Ok(false)
        }
        Err(st) => Err(st.into()),
    }
}

pub(crate) async fn get_run(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let run = s
        .tracking()
        .get_run(auth.request(pb::GetRunRequest { run_id }))
        .await?
        .into_inner()
        .run;
    run_json(&s, &auth, run).await
}

async fn update_run(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::UpdateRunRequest {
        run_id: p.run_id()?,
        status: p
            .opt_enum("status", RUN_STATUSES)?
            .map(|st| st as i32)
            .unwrap_or(0),
        end_time: p.opt_i64("end_time")?,
        run_name: p.string("run_name")?,
    };
    let info = s
        .tracking()
        .update_run(auth.request(req))
        .await?
        .into_inner()
        .run_info
        .ok_or_else(|| ApiError::not_found("the tracking service answered no run"))?;
    let root = s.proxy_root(&auth).await;
    Ok(Json(
        json!({ "run_info": RunInfo::from_pb(info, root.as_deref()) }),
    ))
}

async fn delete_run(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    s.tracking()
        .delete_run(auth.request(pb::DeleteRunRequest { run_id }))
        .await?;
    Ok(empty())
}

async fn restore_run(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    s.tracking()
        .restore_run(auth.request(pb::RestoreRunRequest { run_id }))
        .await?;
    Ok(empty())
}

pub(crate) async fn search_runs(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::SearchRunsRequest {
        experiment_ids: p.strings("experiment_ids")?,
        filter: p.string("filter")?,
        run_view_type: p
            .opt_enum("run_view_type", VIEW_TYPES)?
            .unwrap_or(pb::ViewType::ActiveOnly) as i32,
        // MLflow's default page is 1000 runs, as is tracking's; its limit is 50,000.
        max_results: p.max_results(50_000)?.unwrap_or(0),
        order_by: p.strings("order_by")?,
        page_token: p.string("page_token")?,
    };
    let resp = s
        .tracking()
        .search_runs(auth.request(req))
        .await?
        .into_inner();
    let root = s.proxy_root(&auth).await;
    let mut out = json!({});
    if !resp.runs.is_empty() {
        let runs: Vec<Run> = resp
            .runs
            .into_iter()
            .map(|r| Run::from_pb(r, root.as_deref()))
            .collect();
        out["runs"] = json!(runs);
    }
    if !resp.next_page_token.is_empty() {
        out["next_page_token"] = json!(resp.next_page_token);
    }
    Ok(Json(out))
}

async fn log_metric(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let metric = read_metric(&p)?;
    s.tracking()
        .log_metric(auth.request(pb::LogMetricRequest {
            run_id,
            metric: Some(metric),
        }))
        .await?;
    Ok(empty())
}

async fn log_param(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let param = pb::Param {
        key: p.required_string("key")?,
        value: p.string("value")?,
    };
    s.tracking()
        .log_param(auth.request(pb::LogParamRequest {
            run_id,
            param: Some(param),
        }))
        .await?;
    Ok(empty())
}

/// Renames a run, as MLflow does when the tag `mlflow.runName` is set (tracking's
/// `UpdateRun` also rewrites that tag).
async fn rename_run(s: &AppState, auth: &Auth, run_id: &str, name: &str) -> Result<()> {
    s.tracking()
        .update_run(auth.request(pb::UpdateRunRequest {
            run_id: run_id.to_owned(),
            run_name: name.to_owned(),
            ..Default::default()
        }))
        .await?;
    Ok(())
}

async fn log_batch(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let metrics = p
        .objects("metrics")?
        .iter()
        .map(read_metric)
        .collect::<Result<Vec<_>>>()?;
    let params = read_params(&p, "params")?;
    // A `mlflow.runName` tag renames the run: tracking does it in the batch's transaction.
    let tags = read_tags(&p, "tags")?;
    s.tracking()
        .log_batch(auth.request(pb::LogBatchRequest {
            run_id: run_id.clone(),
            metrics,
            params,
            tags,
        }))
        .await?;
    Ok(empty())
}

async fn set_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let key = p.required_string("key")?;
    let value = p.string("value")?;
    if key == RUN_NAME_TAG {
        rename_run(&s, &auth, &run_id, &value).await?;
        return Ok(empty());
    }
    s.tracking()
        .set_tag(auth.request(pb::SetTagRequest {
            run_id,
            tag: Some(pb::Tag { key, value }),
        }))
        .await?;
    Ok(empty())
}

async fn delete_tag(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let req = pb::DeleteTagRequest {
        run_id: p.run_id()?,
        key: p.required_string("key")?,
    };
    s.tracking().delete_tag(auth.request(req)).await?;
    Ok(empty())
}

async fn log_inputs(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let datasets = p
        .objects("datasets")?
        .iter()
        .map(read_dataset_input)
        .collect::<Result<Vec<_>>>()?;
    let models = p
        .objects("models")?
        .iter()
        .map(|m| {
            Ok(pb::ModelInput {
                model_id: m.required_string("model_id")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Empty lists still go to tracking: it checks the credential and that the run
    // exists, as for every other call.
    s.tracking()
        .log_inputs(auth.request(pb::LogInputsRequest {
            run_id,
            datasets,
            models,
        }))
        .await?;
    Ok(empty())
}

async fn get_metric_history(State(s): State<AppState>, auth: Auth, p: Params) -> JsonResult {
    let run_id = p.run_id()?;
    let key = p.required_string("metric_key")?;
    let max_results = p.opt_i32("max_results")?;
    if let Some(n) = max_results.filter(|n| *n <= 0) {
        return Err(ApiError::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer."
        )));
    }
    // Without max_results MLflow answers the whole history in one response.
    let (points, token) = metric_history(
        &s,
        &auth,
        &run_id,
        &key,
        max_results.unwrap_or(0),
        p.string("page_token")?,
        max_results.is_some(),
    )
    .await?;
    let mut out = json!({});
    if !points.is_empty() {
        out["metrics"] = json!(points);
    }
    if !token.is_empty() {
        out["next_page_token"] = json!(token);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_locations_are_told_apart() {
        for relative in ["my_location", "runs/a", "./x"] {
            assert!(is_relative_path(relative), "{relative}");
        }
        for not in [
            "",
            "/srv/x",
            "file:///x",
            "s3://b/x",
            "mlflow-artifacts:/1",
            "C:\\x",
        ] {
            assert!(!is_relative_path(not), "{not}");
        }
    }

    #[test]
    fn create_run_takes_name_user_and_parent_from_tags() {
        let parent = "0123456789abcdef0123456789abcdef";
        let p = Params::from_value(json!({
            "experiment_id": "1", "start_time": 5,
            "tags": [{"key": "mlflow.runName", "value": "child"},
                     {"key": "mlflow.user", "value": "ann"},
                     {"key": "mlflow.parentRunId", "value": parent}]
        }))
        .unwrap();
        let r = create_run_request(&p).unwrap();
        assert_eq!(
            (
                r.run_name.as_str(),
                r.user_id.as_str(),
                r.parent_run_id.as_str()
            ),
            ("child", "ann", parent)
        );
        assert_eq!(r.start_time, Some(5));
        assert_eq!(r.tags.len(), 3);

        let p = Params::from_value(json!({"run_name": "a", "user_id": "bob",
            "tags": [{"key": "mlflow.user", "value": "ann"}]}))
        .unwrap();
        let r = create_run_request(&p).unwrap();
        assert_eq!((r.run_name.as_str(), r.user_id.as_str()), ("a", "bob"));
        assert_eq!(r.start_time, None);

        let p = Params::from_value(json!({"run_name": "a",
            "tags": [{"key": "mlflow.runName", "value": "b"}]}))
        .unwrap();
        assert!(create_run_request(&p).is_err());
    }
}
