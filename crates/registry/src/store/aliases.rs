//! Aliases: set (create or move, one atomic step), delete, resolve.

use mlops_proto::events::v1 as ev;
use mlops_proto::registry::v1 as pb;
use mlops_storage::now_millis;
use sqlx::Row;

use super::{event, version_columns, version_from_row, Store, READY};
use crate::error::{precondition, RegistryError, Result};
use crate::validate;

fn alias_not_found(name: &str, alias: &str) -> RegistryError {
    RegistryError::NotFound(format!("model `{name}` has no alias `{alias}`"))
}

impl Store {
    /// Points `alias` at `version`, in one transaction: the version must be READY and,
    /// when the model's gate policy covers the alias, its newest gate result must have
    /// passed. Returns the version the alias pointed at before (0 if none).
    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<i64> {
        validate::alias(alias)?;
        validate::version(version)?;
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT model_id, gate_required, gate_aliases FROM registered_models WHERE name = $1{}",
            self.for_update()
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| super::model_not_found(name))?;
        let id: String = row.get(0);
        let required = row.get::<i64, _>(1) != 0;
        let covered: Vec<String> =
            serde_json::from_str(&row.get::<String, _>(2)).unwrap_or_default();
        let v = sqlx::query(
            "SELECT status, storage_location FROM model_versions WHERE model_id = $1 AND version = $2",
        )
        .bind(&id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| super::version_not_found(name, version))?;
        let status: String = v.get(0);
        let location: String = v.get(1);
        if status != READY {
            return Err(precondition(format!(
                "model `{name}` version {version} is {status}; an alias can only point at a READY version"
            )));
        }
        if required && (covered.is_empty() || covered.iter().any(|a| a == alias)) {
            let last = sqlx::query(
                "SELECT id, passed FROM gate_results WHERE model_id = $1 AND candidate_version = $2 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&id)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            match last {
                None => {
                    return Err(precondition(format!(
                        "model `{name}` requires a passed evaluation gate before alias `{alias}` moves, \
                         and version {version} has no gate result; validate it first \
                         (`mlops models gate {name} {version} ...`)"
                    )))
                }
                Some(r) if r.get::<i64, _>(1) == 0 => {
                    return Err(precondition(format!(
                        "model `{name}` requires a passed evaluation gate before alias `{alias}` moves, \
                         and version {version}'s newest gate result (#{}) failed",
                        r.get::<i64, _>(0)
                    )))
                }
                Some(_) => {}
            }
        }
        let previous: i64 =
            sqlx::query("SELECT version FROM model_aliases WHERE model_id = $1 AND alias = $2")
                .bind(&id)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0))
                .unwrap_or(0);
        sqlx::query(
            "INSERT INTO model_aliases (model_id, alias, version) VALUES ($1, $2, $3) \
             ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version",
        )
        .bind(&id)
        .bind(alias)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        let _enqueued = self
            .outbox
            .enqueue(
                &mut tx,
                &event(
                    &id,
                    format!("{name}/{version}"),
                    &ev::AliasSet {
                        model_id: id.clone(),
                        name: name.to_owned(),
                        alias: alias.to_owned(),
                        version,
                        previous_version: previous,
                        storage_location: location,
                    },
                ),
            )
            .await?;
        Self::touch_model(&mut tx, &id, now).await?;
        tx.commit().await?;
        self.metrics.alias_moves.inc();
        Ok(previous)
    }

    /// Removes an alias; NOT_FOUND when it is not set.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        let row = sqlx::query(
            "DELETE FROM model_aliases WHERE model_id = $1 AND alias = $2 RETURNING version",
        )
        .bind(&id)
        .bind(alias)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| alias_not_found(name, alias))?;
        let version: i64 = row.get(0);
        let _enqueued = self
            .outbox
            .enqueue(
                &mut tx,
                &event(
                    &id,
                    format!("{name}/{version}"),
                    &ev::AliasDeleted {
                        model_id: id.clone(),
                        name: name.to_owned(),
                        alias: alias.to_owned(),
                        version,
                    },
                ),
            )
            .await?;
        Self::touch_model(&mut tx, &id, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The version an alias points at, in one indexed query.
    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<pb::ModelVersion> {
        if alias.is_empty() {
            return Err(crate::error::invalid("alias is required"));
        }
        let sql = format!(
            "SELECT {} FROM registered_models m JOIN model_aliases a ON a.model_id = m.model_id \
             JOIN model_versions v ON v.model_id = a.model_id AND v.version = a.version \
             WHERE m.name = $1 AND a.alias = $2",
            version_columns(self.db.backend())
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(alias)
            .fetch_optional(self.db.reader())
            .await?;
        match row {
            Some(r) => Ok(version_from_row(&r)),
            None => {
                let mut conn = self.db.reader().acquire().await?;
                self.model_id(&mut conn, name, false).await?;
                Err(alias_not_found(name, alias))
            }
        }
    }
}
