//! The attribute names each entity accepts, in filters and in `order_by`.

use super::Mode;
use crate::{Attribute, Entity};

/// Attribute spellings accepted for runs (filter and order_by), MLflow aliases included.
const RUN_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("run_id", Attribute::RunId),
    ("run_name", Attribute::RunName),
    ("run name", Attribute::RunName),
    ("Run name", Attribute::RunName),
    ("Run Name", Attribute::RunName),
    ("status", Attribute::Status),
    ("start_time", Attribute::StartTime),
    ("created", Attribute::StartTime),
    ("Created", Attribute::StartTime),
    ("end_time", Attribute::EndTime),
    ("user_id", Attribute::UserId),
    ("artifact_uri", Attribute::ArtifactUri),
];

/// Attribute names accepted in experiment filters.
const EXPERIMENT_FILTER_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("name", Attribute::ExperimentName),
    ("creation_time", Attribute::CreationTime),
    ("last_update_time", Attribute::LastUpdateTime),
];
/// Attribute names accepted in experiment order_by clauses.
const EXPERIMENT_ORDER_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("name", Attribute::ExperimentName),
    ("creation_time", Attribute::CreationTime),
    ("last_update_time", Attribute::LastUpdateTime),
    ("experiment_id", Attribute::ExperimentId),
];

/// Attribute names accepted in registered model filters.
const REGISTERED_MODEL_FILTER_ATTRIBUTES: &[(&str, Attribute)] = &[("name", Attribute::ModelName)];
/// Attribute names accepted in registered model order_by clauses.
const REGISTERED_MODEL_ORDER_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("name", Attribute::ModelName),
    ("creation_timestamp", Attribute::CreationTimestamp),
    ("last_updated_timestamp", Attribute::LastUpdatedTimestamp),
];

/// Attribute names accepted in model version filters.
const MODEL_VERSION_FILTER_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("name", Attribute::ModelName),
    ("version_number", Attribute::VersionNumber),
    ("run_id", Attribute::RunId),
    ("source_path", Attribute::SourcePath),
];
/// Attribute names accepted in model version order_by clauses.
const MODEL_VERSION_ORDER_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("name", Attribute::ModelName),
    ("version_number", Attribute::VersionNumber),
    ("creation_timestamp", Attribute::CreationTimestamp),
    ("last_updated_timestamp", Attribute::LastUpdatedTimestamp),
];

/// The attribute spellings accepted for `entity` in `mode`.
pub(super) fn attribute_table(entity: Entity, mode: Mode) -> &'static [(&'static str, Attribute)] {
    match (entity, mode) {
        (Entity::Run, _) => RUN_ATTRIBUTES,
        (Entity::Experiment, Mode::Filter) => EXPERIMENT_FILTER_ATTRIBUTES,
        (Entity::Experiment, Mode::OrderBy) => EXPERIMENT_ORDER_ATTRIBUTES,
        (Entity::RegisteredModel, Mode::Filter) => REGISTERED_MODEL_FILTER_ATTRIBUTES,
        (Entity::RegisteredModel, Mode::OrderBy) => REGISTERED_MODEL_ORDER_ATTRIBUTES,
        (Entity::ModelVersion, Mode::Filter) => MODEL_VERSION_FILTER_ATTRIBUTES,
        (Entity::ModelVersion, Mode::OrderBy) => MODEL_VERSION_ORDER_ATTRIBUTES,
    }
}
