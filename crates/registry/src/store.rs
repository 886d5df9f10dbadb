//! The registry store: every read and write of models, versions, aliases,
//! evaluations and gate results, on either backend, each write in one transaction
//! together with its events.

mod aliases;
mod evaluations;
mod models;
mod registration;
mod search;
mod versions;

use mlops_events::outbox::Outbox;
use mlops_events::Envelope;
use mlops_proto::registry::v1 as pb;
use mlops_storage::{Backend, Db, Migration};
use prost::Message;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::{RegistryError, Result};
use crate::metrics::Metrics;

pub(crate) use registration::last_per_key;
pub use registration::{Expected, NewVersion, Pending};
pub use search::PageToken;

const SOURCE: &str = "/mlops/registry";

/// The schema of the registry, per backend.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "models, versions, tags, aliases, evaluations, gate results".into(),
            sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
            postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
        },
        Migration {
            version: 2,
            name: "tag values at MLflow's length limit".into(),
            sqlite: include_str!("../migrations/sqlite/0002_long_tag_values.sql").into(),
            postgres: include_str!("../migrations/postgres/0002_long_tag_values.sql").into(),
        },
    ]
}

/// Reads and writes registry data.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    pub(crate) outbox: Outbox,
    pub(crate) metrics: Metrics,
}

/// The event carrying `msg` on the models topic, keyed by the model's id.
pub(crate) fn event<M: prost::Name + Message>(
    model_id: &str,
    subject: String,
    msg: &M,
) -> Envelope {
    Envelope::of(
        mlops_proto::events::topics::MODELS,
        SOURCE,
        model_id,
        subject,
        msg,
    )
}

/// Stage enum to the stored (and MLflow) name.
pub fn stage_name(s: pb::Stage) -> &'static str {
    match s {
        pb::Stage::None => "None",
        pb::Stage::Staging => "Staging",
        pb::Stage::Production => "Production",
        pb::Stage::Archived => "Archived",
    }
}

/// Stored stage name to enum.
pub fn stage_from_name(s: &str) -> pb::Stage {
    match s {
        "Staging" => pb::Stage::Staging,
        "Production" => pb::Stage::Production,
        "Archived" => pb::Stage::Archived,
        _ => pb::Stage::None,
    }
}

pub(crate) const PENDING: &str = "PENDING_REGISTRATION";
pub(crate) const READY: &str = "READY";
pub(crate) const FAILED: &str = "FAILED_REGISTRATION";

fn status_from_str(s: &str) -> pb::ModelVersionStatus {
    match s {
        PENDING => pb::ModelVersionStatus::PendingRegistration,
        READY => pb::ModelVersionStatus::Ready,
        FAILED => pb::ModelVersionStatus::FailedRegistration,
        _ => pb::ModelVersionStatus::Unspecified,
    }
}

/// The columns of a version (aliased `v`, its model `m`) with its tags, aliases and
/// newest gate result, so one row is one whole version.
pub(crate) fn version_columns(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "m.name, v.model_id, v.version, v.creation_timestamp, v.last_updated_timestamp, \
             v.description, v.stage, v.source, v.storage_location, v.run_id, v.status, \
             v.status_message, v.lineage, v.signature, v.size_bytes, \
             (SELECT json_group_array(json_array(t.key, t.value)) FROM model_version_tags t \
               WHERE t.model_id = v.model_id AND t.version = v.version) AS tags_json, \
             (SELECT json_group_array(a.alias) FROM model_aliases a \
               WHERE a.model_id = v.model_id AND a.version = v.version) AS aliases_json, \
             (SELECT g.result FROM gate_results g WHERE g.model_id = v.model_id \
               AND g.candidate_version = v.version ORDER BY g.id DESC LIMIT 1) AS last_gate"
        }
        Backend::Postgres => {
            "m.name, v.model_id, v.version, v.creation_timestamp, v.last_updated_timestamp, \
             v.description, v.stage, v.source, v.storage_location, v.run_id, v.status, \
             v.status_message, v.lineage, v.signature, v.size_bytes, \
             (SELECT json_agg(json_build_array(t.key, t.value))::text FROM model_version_tags t \
               WHERE t.model_id = v.model_id AND t.version = v.version) AS tags_json, \
             (SELECT json_agg(a.alias)::text FROM model_aliases a \
               WHERE a.model_id = v.model_id AND a.version = v.version) AS aliases_json, \
             (SELECT g.result FROM gate_results g WHERE g.model_id = v.model_id \
               AND g.candidate_version = v.version ORDER BY g.id DESC LIMIT 1) AS last_gate"
        }
    }
}

/// `$a, $b, ...` for `n` parameters starting at `first`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_list<T: serde::de::DeserializeOwned>(text: Option<String>, what: &str) -> Vec<T> {
    match text.as_deref() {
        None | Some("") => vec![],
        Some(t) => serde_json::from_str(t).unwrap_or_else(|e| {
            tracing::error!(what, error = %e, "cannot decode aggregated registry data");
            vec![]
        }),
    }
}

fn decode<M: Message + Default>(bytes: Option<Vec<u8>>, what: &str) -> Option<M> {
    let bytes = bytes?;
    match M::decode(bytes.as_slice()) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(what, error = %e, "cannot decode a stored protobuf");
            None
        }
    }
}

/// A row of [`version_columns`] as the API's version.
pub(crate) fn version_from_row(r: &AnyRow) -> pb::ModelVersion {
    let mut tags: Vec<(String, String)> = json_list(r.get("tags_json"), "version tags");
    tags.sort();
    let mut aliases: Vec<String> = json_list(r.get("aliases_json"), "version aliases");
    aliases.sort();
    let lineage: Option<pb::Lineage> = decode(r.get("lineage"), "lineage");
    let storage_location: String = r.get("storage_location");
    pb::ModelVersion {
        // A reference keeps no files, so it has no location (see `Registrar::register_reference`).
        reference_only: storage_location.is_empty(),
        user_id: lineage
            .as_ref()
            .map(|l| l.user_id.clone())
            .unwrap_or_default(),
        run_link: lineage
            .as_ref()
            .map(|l| l.run_link.clone())
            .unwrap_or_default(),
        name: r.get("name"),
        version: r.get("version"),
        creation_timestamp: r.get("creation_timestamp"),
        last_updated_timestamp: r.get("last_updated_timestamp"),
        description: r.get("description"),
        current_stage: stage_from_name(&r.get::<String, _>("stage")) as i32,
        source: r.get("source"),
        storage_location,
        run_id: r.get("run_id"),
        status: status_from_str(&r.get::<String, _>("status")) as i32,
        status_message: r.get("status_message"),
        tags: tags
            .into_iter()
            .map(|(key, value)| pb::Tag { key, value })
            .collect(),
        aliases,
        lineage,
        signature: decode(r.get("signature"), "signature"),
        size_bytes: r.get::<i64, _>("size_bytes") as u64,
        last_gate: decode(r.get("last_gate"), "gate result"),
        model_id: r.get("model_id"),
    }
}

pub(crate) fn model_not_found(name: &str) -> RegistryError {
    // MLflow's words: clients match them.
    RegistryError::NotFound(format!("Registered Model with name={name} not found"))
}

pub(crate) fn version_not_found(name: &str, version: i64) -> RegistryError {
    RegistryError::NotFound(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

impl Store {
    /// A store over `db`, publishing through `outbox`.
    pub fn new(db: Db, outbox: Outbox, metrics: Metrics) -> Self {
        Store {
            db,
            outbox,
            metrics,
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// `FOR UPDATE` where the backend has row locks; SQLite serializes writers anyway.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// The id of the model called `name`, locking its row inside a write.
    pub(crate) async fn model_id(
        &self,
        conn: &mut AnyConnection,
        name: &str,
        lock: bool,
    ) -> Result<String> {
        let lock = if lock { self.for_update() } else { "" };
        let row = sqlx::query(&format!(
            "SELECT model_id FROM registered_models WHERE name = $1{lock}"
        ))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| model_not_found(name))?;
        Ok(row.get(0))
    }

    /// The stored status of a version, or NOT_FOUND.
    pub(crate) async fn version_status(
        &self,
        conn: &mut AnyConnection,
        model_id: &str,
        name: &str,
        version: i64,
    ) -> Result<String> {
        let row =
            sqlx::query("SELECT status FROM model_versions WHERE model_id = $1 AND version = $2")
                .bind(model_id)
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| version_not_found(name, version))?;
        Ok(row.get(0))
    }

    /// Marks the model as changed now.
    pub(crate) async fn touch_model(
        conn: &mut AnyConnection,
        model_id: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE registered_models SET last_updated_timestamp = $1 WHERE model_id = $2")
            .bind(now)
            .bind(model_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Samples the connection pool into the gauge.
    pub fn sample_pool(&self) {
        let (size, idle) = self.db.pool_stats();
        self.metrics
            .db_pool
            .with_label_values(&["idle"])
            .set(idle as i64);
        self.metrics
            .db_pool
            .with_label_values(&["in_use"])
            .set(size as i64 - idle as i64);
    }
}
