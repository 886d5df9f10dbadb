//! The registry's models and versions in MLflow's JSON (`model_registry.proto` with
//! snake_case names, int64 as numbers, enums as names), and MLflow's stage names.
//!
//! What MLflow's server leaves out is left out here too (`RegisteredModel.to_proto`
//! and `ModelVersion.to_proto` in `mlflow/entities/model_registry/`): a model's empty
//! description and a zero `last_updated_timestamp`, empty lists, an empty
//! `status_message`. A version's description is always written, as MLflow's server
//! does (its client then reads `""`, not `None`). Two of our fields change meaning on
//! the way: a version number becomes a string, and MLflow's `model_id` of a version
//! is the logged model it came from (our `lineage.logged_model_id`), not our
//! registered model's id.

use mlops_proto::registry::v1 as pb;
use serde::Serialize;

use crate::error::{ApiError, Result};
use crate::json::KeyValue;

/// MLflow's stage names (`model_version_stages.py`), in MLflow's order.
pub const STAGES: [(&str, pb::Stage); 4] = [
    ("None", pb::Stage::None),
    ("Staging", pb::Stage::Staging),
    ("Production", pb::Stage::Production),
    ("Archived", pb::Stage::Archived),
];

/// MLflow's name of a stage.
pub fn stage_name(stage: i32) -> &'static str {
    let stage = pb::Stage::try_from(stage).unwrap_or(pb::Stage::None);
    STAGES
        .iter()
        .find(|(_, s)| *s == stage)
        .map(|(name, _)| *name)
        .unwrap_or("None")
}

/// A stage named as MLflow accepts it: any case of `None`, `Staging`, `Production`,
/// `Archived`, with MLflow's message for anything else.
pub fn parse_stage(name: &str) -> Result<pb::Stage> {
    STAGES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid Model Version stage: {name}. Value must be one of None, Staging, \
                 Production, Archived."
            ))
        })
}

/// MLflow's name of a version status (`None` for an unspecified one).
pub fn status_name(status: i32) -> Option<&'static str> {
    match pb::ModelVersionStatus::try_from(status).ok()? {
        pb::ModelVersionStatus::Unspecified => None,
        pb::ModelVersionStatus::PendingRegistration => Some("PENDING_REGISTRATION"),
        pb::ModelVersionStatus::Ready => Some("READY"),
        pb::ModelVersionStatus::FailedRegistration => Some("FAILED_REGISTRATION"),
    }
}

fn key_values(tags: Vec<pb::Tag>) -> Vec<KeyValue> {
    tags.into_iter()
        .map(|t| KeyValue {
            key: t.key,
            value: t.value,
        })
        .collect()
}

/// A model version.
#[derive(Debug, Serialize)]
pub struct ModelVersion {
    name: String,
    /// MLflow's versions are strings ("1").
    version: String,
    creation_timestamp: i64,
    last_updated_timestamp: i64,
    current_stage: &'static str,
    description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    status_message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    /// The logged model the version was registered from.
    #[serde(skip_serializing_if = "String::is_empty")]
    model_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    user_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    run_link: String,
}

impl From<pb::ModelVersion> for ModelVersion {
    fn from(v: pb::ModelVersion) -> Self {
        ModelVersion {
            name: v.name,
            version: v.version.to_string(),
            creation_timestamp: v.creation_timestamp,
            last_updated_timestamp: v.last_updated_timestamp,
            current_stage: stage_name(v.current_stage),
            description: v.description,
            source: v.source,
            run_id: v.run_id,
            status: status_name(v.status),
            status_message: v.status_message,
            tags: key_values(v.tags),
            aliases: v.aliases,
            model_id: v.lineage.map(|l| l.logged_model_id).unwrap_or_default(),
            user_id: v.user_id,
            run_link: v.run_link,
        }
    }
}

/// An alias of a registered model and the version it names.
#[derive(Debug, Serialize)]
pub struct Alias {
    alias: String,
    version: String,
}

/// A registered model.
#[derive(Debug, Serialize)]
pub struct RegisteredModel {
    name: String,
    creation_timestamp: i64,
    #[serde(skip_serializing_if = "is_zero")]
    last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    latest_versions: Vec<ModelVersion>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<Alias>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl From<pb::RegisteredModel> for RegisteredModel {
    fn from(m: pb::RegisteredModel) -> Self {
        RegisteredModel {
            name: m.name,
            creation_timestamp: m.creation_timestamp,
            last_updated_timestamp: m.last_updated_timestamp,
            description: m.description,
            latest_versions: m
                .latest_versions
                .into_iter()
                .map(ModelVersion::from)
                .collect(),
            tags: key_values(m.tags),
            aliases: m
                .aliases
                .into_iter()
                .map(|a| Alias {
                    alias: a.alias,
                    version: a.version.to_string(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version() -> pb::ModelVersion {
        pb::ModelVersion {
            name: "fraud".into(),
            version: 3,
            creation_timestamp: 1_700_000_000_000,
            last_updated_timestamp: 1_700_000_000_500,
            description: String::new(),
            current_stage: pb::Stage::Production as i32,
            source: "runs:/0123456789abcdef0123456789abcdef/model".into(),
            storage_location: "file:///data/models/abc/3".into(),
            run_id: "0123456789abcdef0123456789abcdef".into(),
            status: pb::ModelVersionStatus::Ready as i32,
            tags: vec![pb::Tag {
                key: "validated".into(),
                value: "yes".into(),
            }],
            aliases: vec!["champion".into()],
            lineage: Some(pb::Lineage {
                logged_model_id: "m-0123456789abcdef0123456789abcdef".into(),
                ..Default::default()
            }),
            size_bytes: 10,
            // Our registered model's id, which is not MLflow's `model_id`.
            model_id: "ffffffffffffffffffffffffffffffff".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_version_is_written_as_mlflows_server_writes_it() {
        let v = serde_json::to_value(ModelVersion::from(version())).unwrap();
        assert_eq!(
            v,
            json!({
                "name": "fraud",
                "version": "3",
                "creation_timestamp": 1_700_000_000_000i64,
                "last_updated_timestamp": 1_700_000_000_500i64,
                "current_stage": "Production",
                "description": "",
                "source": "runs:/0123456789abcdef0123456789abcdef/model",
                "run_id": "0123456789abcdef0123456789abcdef",
                "status": "READY",
                "tags": [{"key": "validated", "value": "yes"}],
                "aliases": ["champion"],
                "model_id": "m-0123456789abcdef0123456789abcdef",
            })
        );
        // A failed upload without a run: no run_id, tags, aliases or model_id; the reason.
        let failed = pb::ModelVersion {
            name: "fraud".into(),
            version: 4,
            creation_timestamp: 5,
            last_updated_timestamp: 6,
            source: "upload:model.onnx".into(),
            status: pb::ModelVersionStatus::FailedRegistration as i32,
            status_message: "`model.onnx` is not a valid ONNX model".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(ModelVersion::from(failed)).unwrap();
        assert_eq!(
            v,
            json!({
                "name": "fraud", "version": "4", "creation_timestamp": 5,
                "last_updated_timestamp": 6, "current_stage": "None", "description": "",
                "source": "upload:model.onnx", "status": "FAILED_REGISTRATION",
                "status_message": "`model.onnx` is not a valid ONNX model",
            })
        );
    }

    #[test]
    fn a_model_is_written_with_its_latest_versions_tags_and_aliases() {
        let m = pb::RegisteredModel {
            name: "fraud".into(),
            id: "ffffffffffffffffffffffffffffffff".into(),
            creation_timestamp: 1,
            last_updated_timestamp: 2,
            description: "detects fraud".into(),
            tags: vec![pb::Tag {
                key: "team".into(),
                value: "risk".into(),
            }],
            aliases: vec![pb::AliasRef {
                alias: "champion".into(),
                version: 3,
            }],
            latest_versions: vec![version()],
            gate_policy: Some(pb::GatePolicy::default()),
        };
        let v = serde_json::to_value(RegisteredModel::from(m)).unwrap();
        assert_eq!(v["aliases"], json!([{"alias": "champion", "version": "3"}]));
        assert_eq!(v["tags"], json!([{"key": "team", "value": "risk"}]));
        assert_eq!(v["latest_versions"][0]["version"], "3");
        assert_eq!(v["description"], "detects fraud");
        assert_eq!(v["last_updated_timestamp"], 2);
        // Neither our id nor the gate policy is MLflow's.
        assert!(v.get("id").is_none() && v.get("gate_policy").is_none());

        let bare = pb::RegisteredModel {
            name: "new".into(),
            creation_timestamp: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(RegisteredModel::from(bare)).unwrap(),
            json!({"name": "new", "creation_timestamp": 1})
        );
    }

    #[test]
    fn stages_are_read_in_any_case_and_written_in_mlflows() {
        assert_eq!(parse_stage("staging").unwrap(), pb::Stage::Staging);
        assert_eq!(parse_stage("PRODUCTION").unwrap(), pb::Stage::Production);
        assert_eq!(parse_stage("None").unwrap(), pb::Stage::None);
        assert_eq!(parse_stage("archived").unwrap(), pb::Stage::Archived);
        let err = parse_stage("prod").unwrap_err();
        assert_eq!(err.code.name(), "INVALID_PARAMETER_VALUE");
        assert!(
            err.message.contains("prod") && err.message.contains("Staging"),
            "{}",
            err.message
        );
        assert!(parse_stage("").is_err());
        for (name, stage) in STAGES {
            assert_eq!(stage_name(stage as i32), name);
        }
        assert_eq!(status_name(0), None);
        assert_eq!(
            status_name(pb::ModelVersionStatus::PendingRegistration as i32),
            Some("PENDING_REGISTRATION")
        );
    }
}
