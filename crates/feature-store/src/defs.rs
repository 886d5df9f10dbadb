//! Definitions: entities, data sources, feature views and feature services, read from
//! a YAML definition set and validated as a whole (nothing is applied from a set with
//! an error in it).
//!
//! ```yaml
//! entities:
//!   - name: driver
//!     join_keys: [driver_id]
//!     value_type: int64
//! sources:
//!   - name: driver_stats_source
//!     type: parquet                 # parquet | push | kafka
//!     path: data/driver_stats.parquet
//!     timestamp_field: event_timestamp
//!     created_timestamp_column: created
//! feature_views:
//!   - name: driver_stats
//!     entities: [driver]
//!     ttl: 1d                       # 0: unlimited; or seconds; or 1h30m, 500ms, 10ns
//!     source: driver_stats_source
//!     schema:
//!       - {name: conv_rate, dtype: float32}
//! feature_services:
//!   - name: driver_activity
//!     features: [driver_stats]      # a whole view, or `view:feature`
//! ```

mod ttl;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use ttl::{format_ttl, parse_ttl};

/// A definition set that cannot be applied, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DefinitionError(pub String);

/// The value type of a join key or a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A 32-bit signed integer.
    Int32,
    /// A 64-bit signed integer.
    Int64,
    /// A 32-bit float.
    Float32,
    /// A 64-bit float.
    Float64,
    /// UTF-8 text.
    String,
    /// Bytes.
    Bytes,
    /// A boolean.
    Bool,
    /// An instant (nanoseconds since the epoch, UTC).
    UnixTimestamp,
}

impl ValueType {
    /// Its name in definition files.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Int32 => "int32",
            ValueType::Int64 => "int64",
            ValueType::Float32 => "float32",
            ValueType::Float64 => "float64",
            ValueType::String => "string",
            ValueType::Bytes => "bytes",
            ValueType::Bool => "bool",
            ValueType::UnixTimestamp => "unix_timestamp",
        }
    }
}

/// A join key of an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinKeyDef {
    /// The column name, the same in entity tables and sources.
    pub name: String,
    /// Its type (int32/int64 keys join as integers, string keys as text).
    pub value_type: ValueType,
}

/// An entity: what features are about, and the keys that identify one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Its name.
    pub name: String,
    /// Its keys (usually one).
    pub join_keys: Vec<JoinKeyDef>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where a source's rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    /// A Parquet file, or a directory of them, on the store (a path relative to the
    /// store's root, or `s3://...` when the store is S3).
    Parquet {
        /// The file or directory.
        path: String,
    },
    /// Rows pushed through the API; `batch_source` (a Parquet source) holds their
    /// history for training, if any.
    Push {
        /// A Parquet source's name.
        batch_source: Option<String>,
    },
    /// A Kafka topic that the user's producers write, ingested into the online store.
    Kafka {
        /// The topic.
        topic: String,
        /// The values' format.
        format: MessageFormat,
        /// The Parquet source that holds its history for training, if any.
        batch_source: Option<String>,
        /// For Avro values: the writer's schema, as JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avro_schema: Option<String>,
    },
}

/// How a Kafka source's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFormat {
    /// One JSON object per message.
    Json,
    /// One Avro binary datum per message (of the source's `avro_schema`, a flat record),
    /// optionally with Avro's single-object header.
    Avro,
}

/// A data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// Where its rows come from.
    pub kind: SourceKind,
    /// The event-time column.
    pub timestamp_field: String,
    /// The created-time column, which breaks ties between rows of equal event time.
    pub created_timestamp_column: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A feature of a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureDef {
    /// Its name (a column of the source).
    pub name: String,
    /// Its type.
    pub dtype: ValueType,
}

/// A feature view: typed features of some entities, from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureView {
    /// Its name.
    pub name: String,
    /// The entities its rows are about (none: a global view).
    pub entities: Vec<String>,
    /// How long a value stays valid after its event time, in nanoseconds; 0 is unlimited.
    pub ttl_nanos: i64,
    /// Its source's name.
    pub source: String,
    /// Whether it is materialized into the online store.
    pub online: bool,
    /// Its features.
    pub schema: Vec<FeatureDef>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A part of a feature service: a view, all of its features or some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    /// The view.
    pub view: String,
    /// Its features, in order; empty means all of them.
    pub features: Vec<String>,
}

/// A named bundle of features, what a model consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureService {
    /// Its name.
    pub name: String,
    /// Its views and features, in order.
    pub projections: Vec<Projection>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A complete, valid definition set, each kind by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    /// Entities.
    pub entities: BTreeMap<String, Entity>,
    /// Data sources.
    pub sources: BTreeMap<String, Source>,
    /// Feature views.
    pub feature_views: BTreeMap<String, FeatureView>,
    /// Feature services.
    pub feature_services: BTreeMap<String, FeatureService>,
}

impl Definitions {
    /// Reads and validates a YAML definition set; `file` names it in messages.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, DefinitionError> {
        validate::from_yaml(file, text)
    }

    /// Validates a set as a whole (references, names, types).
    pub fn validate(&self) -> Result<(), DefinitionError> {
        validate::check(self)
    }
}
