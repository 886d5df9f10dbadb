//! Tracking's entities in MLflow's JSON (`mlflow/protos/service.proto` with
//! snake_case names, int64 as numbers, enums as names) and back.
//!
//! Like MLflow's server, empty lists and unset optional fields are left out, and a
//! run's `data` and `inputs` are always present (possibly `{}`). Artifact URIs are
//! advertised as `mlflow-artifacts:/...` when they are under the tracking service's
//! artifact root, so MLflow's client moves artifacts through this gateway.

use mlops_proto::tracking::v1 as pb;
use serde::Serialize;

use crate::artifacts::to_proxy_uri;
use crate::error::Result;
use crate::json::{float, KeyValue, Params};

/// The tag that carries a dataset input's context (`training`, `evaluation`, ...).
pub const CONTEXT_TAG: &str = "mlflow.data.context";

fn key_values(tags: Vec<pb::Tag>) -> Vec<KeyValue> {
    tags.into_iter()
        .map(|t| KeyValue {
            key: t.key,
            value: t.value,
        })
        .collect()
}

/// MLflow's name of a lifecycle stage.
pub fn lifecycle_stage(stage: i32) -> &'static str {
    match pb::LifecycleStage::try_from(stage) {
        Ok(pb::LifecycleStage::Deleted) => "deleted",
        _ => "active",
    }
}

/// MLflow's name of a run status (`None` for an unspecified one).
pub fn run_status(status: i32) -> Option<&'static str> {
    match pb::RunStatus::try_from(status).ok()? {
        pb::RunStatus::Unspecified => None,
        pb::RunStatus::Running => Some("RUNNING"),
        pb::RunStatus::Scheduled => Some("SCHEDULED"),
        pb::RunStatus::Finished => Some("FINISHED"),
        pb::RunStatus::Failed => Some("FAILED"),
        pb::RunStatus::Killed => Some("KILLED"),
    }
}

/// MLflow's `RunStatus` names and numbers.
pub const RUN_STATUSES: &[(&str, i64, pb::RunStatus)] = &[
    ("RUNNING", 1, pb::RunStatus::Running),
    ("SCHEDULED", 2, pb::RunStatus::Scheduled),
    ("FINISHED", 3, pb::RunStatus::Finished),
    ("FAILED", 4, pb::RunStatus::Failed),
    ("KILLED", 5, pb::RunStatus::Killed),
];

/// MLflow's `ViewType` names and numbers.
pub const VIEW_TYPES: &[(&str, i64, pb::ViewType)] = &[
    ("ACTIVE_ONLY", 1, pb::ViewType::ActiveOnly),
    ("DELETED_ONLY", 2, pb::ViewType::DeletedOnly),
    ("ALL", 3, pb::ViewType::All),
];

/// An experiment.
#[derive(Debug, Serialize)]
pub struct Experiment {
    experiment_id: String,
    name: String,
    artifact_location: String,
    lifecycle_stage: &'static str,
    last_update_time: i64,
    creation_time: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<KeyValue>,
}

impl Experiment {
    /// `e` with its location as the client should use it (`root`: tracking's artifact root).
    pub fn from_pb(e: pb::Experiment, root: Option<&str>) -> Self {
        Experiment {
            artifact_location: to_proxy_uri(&e.artifact_location, root),
            experiment_id: e.experiment_id,
            name: e.name,
            lifecycle_stage: lifecycle_stage(e.lifecycle_stage),
            last_update_time: e.last_update_time,
            creation_time: e.creation_time,
            tags: key_values(e.tags),
        }
    }
}

/// What identifies a run and its state.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    run_id: String,
    /// The old name of `run_id`, which MLflow still sends.
    run_uuid: String,
    run_name: String,
    experiment_id: String,
    user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    artifact_uri: String,
    lifecycle_stage: &'static str,
}

impl RunInfo {
    /// `i` with its artifact URI as the client should use it.
    pub fn from_pb(i: pb::RunInfo, root: Option<&str>) -> Self {
        RunInfo {
            run_uuid: i.run_id.clone(),
            run_id: i.run_id,
            run_name: i.run_name,
            experiment_id: i.experiment_id,
            user_id: i.user_id,
            status: run_status(i.status),
            start_time: i.start_time,
            end_time: i.end_time,
            artifact_uri: to_proxy_uri(&i.artifact_uri, root),
            lifecycle_stage: lifecycle_stage(i.lifecycle_stage),
        }
    }
}

/// One metric point.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metric {
    /// The metric's name.
    pub key: String,
    /// Its value (NaN and infinities included).
    #[serde(serialize_with = "float")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The training step.
    pub step: i64,
}

impl Metric {
    /// A point of metric `key`.
    pub fn new(key: String, value: f64, timestamp: i64, step: i64) -> Self {
        Metric {
            key,
            value,
            timestamp,
            step,
        }
    }
}

impl From<pb::Metric> for Metric {
    fn from(m: pb::Metric) -> Self {
        Metric::new(m.key, m.value, m.timestamp, m.step)
    }
}

/// The data logged to a run.
#[derive(Debug, Serialize)]
pub struct RunData {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics: Vec<Metric>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<KeyValue>,
}

/// A dataset as a run saw it.
#[derive(Debug, Serialize)]
pub struct Dataset {
    name: String,
    digest: String,
    source_type: String,
    source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    schema: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    profile: String,
}

/// A dataset used by a run; its context is the tag `mlflow.data.context`.
#[derive(Debug, Serialize)]
pub struct DatasetInput {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<KeyValue>,
    dataset: Dataset,
}

/// The inputs of a run.
#[derive(Debug, Serialize)]
pub struct RunInputs {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dataset_inputs: Vec<DatasetInput>,
    /// The logged models the run used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    model_inputs: Vec<ModelInput>,
}

/// A logged model a run used.
#[derive(Debug, Serialize)]
pub struct ModelInput {
    model_id: String,
}

/// A logged model a run produced, at a step.
#[derive(Debug, Serialize)]
pub struct ModelOutput {
    model_id: String,
    step: i64,
}

/// The outputs of a run: the logged models it produced.
#[derive(Debug, Serialize, Default)]
pub struct RunOutputs {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    model_outputs: Vec<ModelOutput>,
}

/// A run with everything logged to it.
#[derive(Debug, Serialize)]
pub struct Run {
    info: RunInfo,
    data: RunData,
    inputs: RunInputs,
    outputs: RunOutputs,
}

impl Run {
    /// `r` as MLflow's client reads it.
    pub fn from_pb(r: pb::Run, root: Option<&str>) -> Self {
        let data = r.data.unwrap_or_default();
        let inputs = r.inputs.unwrap_or_default();
        let outputs = r.outputs.unwrap_or_default();
        Run {
            info: RunInfo::from_pb(r.info.unwrap_or_default(), root),
            data: RunData {
                metrics: data.metrics.into_iter().map(Metric::from).collect(),
                params: data
                    .params
                    .into_iter()
                    .map(|p| KeyValue {
                        key: p.key,
                        value: p.value,
                    })
                    .collect(),
                tags: key_values(data.tags),
            },
            inputs: RunInputs {
                dataset_inputs: inputs
                    .dataset_inputs
                    .into_iter()
                    .map(dataset_input)
                    .collect(),
                model_inputs: inputs
                    .model_inputs
                    .into_iter()
                    .map(|m| ModelInput {
                        model_id: m.model_id,
                    })
                    .collect(),
            },
            outputs: RunOutputs {
                model_outputs: outputs
                    .model_outputs
                    .into_iter()
                    .map(|o| ModelOutput {
                        model_id: o.model_id,
                        step: o.step,
                    })
                    .collect(),
            },
        }
    }
}

fn dataset_input(i: pb::DatasetInput) -> DatasetInput {
    let d = i.dataset.unwrap_or_default();
    let mut tags = key_values(i.tags);
    if !i.context.is_empty() && !tags.iter().any(|t| t.key == CONTEXT_TAG) {
        tags.push(KeyValue {
            key: CONTEXT_TAG.into(),
            value: i.context,
        });
    }
    DatasetInput {
        tags,
        dataset: Dataset {
            name: d.name,
            digest: d.digest,
            source_type: d.source_type,
            source: d.source,
            schema: d.schema,
            profile: d.profile,
        },
    }
}

/// Tags from a request's `[{"key", "value"}]` list.
pub fn read_tags(p: &Params, field: &str) -> Result<Vec<pb::Tag>> {
    p.objects(field)?
        .iter()
        .map(|t| {
            let (key, value) = KeyValue::read(t)?;
            Ok(pb::Tag { key, value })
        })
        .collect()
}

/// Params from a request's `[{"key", "value"}]` list.
pub fn read_params(p: &Params, field: &str) -> Result<Vec<pb::Param>> {
    p.objects(field)?
        .iter()
        .map(|t| {
            let (key, value) = KeyValue::read(t)?;
            Ok(pb::Param { key, value })
        })
        .collect()
}

/// A metric point from a request (`key`, `value` and `timestamp` are required, as
/// MLflow requires them). MLflow's links of a point to a logged model or a dataset
/// (`model_id`, `dataset_name`, `dataset_digest`) have no place in tracking's
/// metrics and are not kept.
pub fn read_metric(p: &Params) -> Result<pb::Metric> {
    let key = p.required_string("key")?;
    let value = p.opt_f64("value")?.ok_or_else(|| p.missing("value"))?;
    let timestamp = p
        .opt_i64("timestamp")?
        .ok_or_else(|| p.missing("timestamp"))?;
    let step = p.opt_i64("step")?.unwrap_or(0);
    Ok(pb::Metric {
        key,
        value,
        timestamp,
        step,
        // MLflow 3 links points to logged models (and the datasets they measure).
        model_id: p.string("model_id")?,
        dataset_name: p.string("dataset_name")?,
        dataset_digest: p.string("dataset_digest")?,
        run_id: String::new(),
    })
}

/// A dataset input from a request: the dataset and its tags; the context is the
/// tag `mlflow.data.context`.
pub fn read_dataset_input(p: &Params) -> Result<pb::DatasetInput> {
    let tags = read_tags(p, "tags")?;
    let context = tags
        .iter()
        .find(|t| t.key == CONTEXT_TAG)
        .map(|t| t.value.clone())
        .unwrap_or_default();
    let d = p.object("dataset")?.ok_or_else(|| p.missing("dataset"))?;
    Ok(pb::DatasetInput {
        dataset: Some(pb::Dataset {
            name: d.required_string("name")?,
            digest: d.required_string("digest")?,
            source_type: d.required_string("source_type")?,
            source: d.required_string("source")?,
            schema: d.string("schema")?,
            profile: d.string("profile")?,
        }),
        context,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOT: &str = "file:///data/artifacts";

    fn sample_run() -> pb::Run {
        pb::Run {
            info: Some(pb::RunInfo {
                run_id: "a".repeat(32),
                run_name: "parent".into(),
                experiment_id: "1".into(),
                user_id: "ann".into(),
                status: pb::RunStatus::Running as i32,
                start_time: 10,
                end_time: None,
                artifact_uri: format!("{ROOT}/1/{}/artifacts", "a".repeat(32)),
                lifecycle_stage: pb::LifecycleStage::Active as i32,
                ..Default::default()
            }),
            data: Some(pb::RunData {
                metrics: vec![pb::Metric {
                    key: "loss".into(),
                    value: f64::NAN,
                    timestamp: 5,
                    step: 1,
                    ..Default::default()
                }],
                params: vec![pb::Param {
                    key: "lr".into(),
                    value: "0.1".into(),
                }],
                tags: vec![],
            }),
            inputs: Some(pb::RunInputs {
                dataset_inputs: vec![pb::DatasetInput {
                    dataset: Some(pb::Dataset {
                        name: "d".into(),
                        digest: "abc".into(),
                        source_type: "code".into(),
                        source: "{}".into(),
                        ..Default::default()
                    }),
                    context: "training".into(),
                    tags: vec![],
                }],
                model_inputs: vec![],
            }),
            outputs: Some(pb::RunOutputs {
                model_outputs: vec![pb::ModelOutput {
                    model_id: "m-1".into(),
                    step: 3,
                }],
            }),
        }
    }

    #[test]
    fn a_run_is_written_as_mlflows_server_writes_it() {
        let v = serde_json::to_value(Run::from_pb(sample_run(), Some(ROOT))).unwrap();
        let id = "a".repeat(32);
        assert_eq!(
            v,
            json!({
                "info": {
                    "run_id": id, "run_uuid": id, "run_name": "parent", "experiment_id": "1",
                    "user_id": "ann", "status": "RUNNING", "start_time": 10,
                    "artifact_uri": format!("mlflow-artifacts:/1/{id}/artifacts"),
                    "lifecycle_stage": "active"
                },
                "data": {
                    "metrics": [{"key": "loss", "value": "NaN", "timestamp": 5, "step": 1}],
                    "params": [{"key": "lr", "value": "0.1"}]
                },
                "inputs": {"dataset_inputs": [{
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                    "dataset": {"name": "d", "digest": "abc", "source_type": "code", "source": "{}"}
                }]},
                "outputs": {"model_outputs": [{"model_id": "m-1", "step": 3}]}
            })
        );
        // Without the root, the URI stays what tracking says; a finished run has end_time.
        let mut r = sample_run();
        let info = r.info.as_mut().unwrap();
        info.status = pb::RunStatus::Finished as i32;
        info.end_time = Some(20);
        info.lifecycle_stage = pb::LifecycleStage::Deleted as i32;
        r.data = None;
        r.inputs = None;
        r.outputs = None;
        let v = serde_json::to_value(Run::from_pb(r, None)).unwrap();
        assert_eq!(v["info"]["status"], "FINISHED");
        assert_eq!(v["info"]["end_time"], 20);
        assert_eq!(v["info"]["lifecycle_stage"], "deleted");
        assert!(v["info"]["artifact_uri"]
            .as_str()
            .unwrap()
            .starts_with("file:///"));
        assert_eq!(v["data"], json!({}));
        assert_eq!(v["inputs"], json!({}));
        assert_eq!(v["outputs"], json!({}));
    }

    #[test]
    fn an_experiment_is_written_as_mlflows_server_writes_it() {
        let e = pb::Experiment {
            experiment_id: "3".into(),
            name: "exp".into(),
            artifact_location: format!("{ROOT}/3"),
            lifecycle_stage: pb::LifecycleStage::Active as i32,
            creation_time: 1,
            last_update_time: 2,
            tags: vec![pb::Tag {
                key: "team".into(),
                value: "x".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(Experiment::from_pb(e.clone(), Some(ROOT))).unwrap(),
            json!({"experiment_id": "3", "name": "exp", "artifact_location": "mlflow-artifacts:/3",
                   "lifecycle_stage": "active", "last_update_time": 2, "creation_time": 1,
                   "tags": [{"key": "team", "value": "x"}]})
        );
        let outside = pb::Experiment {
            artifact_location: "s3://elsewhere/x".into(),
            tags: vec![],
            ..e
        };
        let v = serde_json::to_value(Experiment::from_pb(outside, Some(ROOT))).unwrap();
        assert_eq!(v["artifact_location"], "s3://elsewhere/x");
        assert!(v.get("tags").is_none());
    }

    #[test]
    fn requests_are_read_with_mlflows_required_fields() {
        let p = Params::from_value(json!({"key": "loss", "value": "NaN", "timestamp": 5})).unwrap();
        let m = read_metric(&p).unwrap();
        assert!(m.value.is_nan());
        assert_eq!((m.timestamp, m.step), (5, 0));
        let p = Params::from_value(json!({"metrics": [{"key": "a", "value": 1}]})).unwrap();
        let err = read_metric(&p.objects("metrics").unwrap()[0]).unwrap_err();
        assert!(
            err.message.contains("'metrics[0].timestamp'"),
            "{}",
            err.message
        );

        let p = Params::from_value(json!({
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
            "dataset": {"name": "d", "digest": "abc", "source_type": "code", "source": "{}",
                        "schema": "{\"x\": 1}"}
        }))
        .unwrap();
        let i = read_dataset_input(&p).unwrap();
        assert_eq!(i.context, "training");
        assert_eq!(i.tags.len(), 1);
        assert_eq!(i.dataset.unwrap().schema, "{\"x\": 1}");
        let p = Params::from_value(json!({"dataset": {"name": "d"}})).unwrap();
        let err = read_dataset_input(&p).unwrap_err();
        assert!(err.message.contains("'dataset.digest'"), "{}", err.message);
    }
}
