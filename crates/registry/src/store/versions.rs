//! Model versions: reads, description, tags, stages, deletes (their registration
//! is in `registration`).

use mlops_proto::events::v1 as ev;
use mlops_proto::registry::v1 as pb;
use mlops_storage::now_millis;
use sqlx::Row;

use super::{
    event, stage_name, version_columns, version_from_row, version_not_found, Store, READY,
};
use crate::error::{invalid, precondition, RegistryError, Result};
use crate::validate;

impl Store {
    /// One version.
    pub async fn get_version(&self, name: &str, version: i64) -> Result<pb::ModelVersion> {
        validate::version(version)?;
        let sql = format!(
            "SELECT {} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id \
             WHERE m.name = $1 AND v.version = $2",
            version_columns(self.db.backend())
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(version)
            .fetch_optional(self.db.reader())
            .await?;
        match row {
            Some(r) => Ok(version_from_row(&r)),
            None => {
                // Tell "no such model" from "no such version".
                let mut conn = self.db.reader().acquire().await?;
                self.model_id(&mut conn, name, false).await?;
                Err(version_not_found(name, version))
            }
        }
    }

    /// Sets a version's description.
    pub async fn update_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<pb::ModelVersion> {
        validate::version(version)?;
        validate::description(description)?;
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        let done = sqlx::query(
            "UPDATE model_versions SET description = $1, last_updated_timestamp = $2 \
             WHERE model_id = $3 AND version = $4",
        )
        .bind(description)
        .bind(now_millis())
        .bind(&id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(version_not_found(name, version));
        }
        tx.commit().await?;
        self.get_version(name, version).await
    }

    /// Deletes a version and its aliases (each with an AliasDeleted event), then the
    /// ModelVersionDeleted event. Returns the model id (to remove the files).
    pub async fn delete_version(&self, name: &str, version: i64) -> Result<String> {
        validate::version(version)?;
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        self.version_status(&mut tx, &id, name, version).await?;
        let aliases: Vec<String> = sqlx::query(
            "SELECT alias FROM model_aliases WHERE model_id = $1 AND version = $2 ORDER BY alias",
        )
        .bind(&id)
        .bind(version)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        for table in ["model_aliases", "model_version_tags", "model_evaluations"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE model_id = $1 AND version = $2"
            ))
            .bind(&id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM gate_results WHERE model_id = $1 AND candidate_version = $2")
            .bind(&id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM model_versions WHERE model_id = $1 AND version = $2")
            .bind(&id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        let subject = format!("{name}/{version}");
        let mut enqueued = Vec::with_capacity(aliases.len() + 1);
        for alias in aliases {
            enqueued.push(
                self.outbox
                    .enqueue(
                        &mut tx,
                        &event(
                            &id,
                            subject.clone(),
                            &ev::AliasDeleted {
                                model_id: id.clone(),
                                name: name.to_owned(),
                                alias,
                                version,
                            },
                        ),
                    )
                    .await?,
            );
        }
        enqueued.push(
            self.outbox
                .enqueue(
                    &mut tx,
                    &event(
                        &id,
                        subject,
                        &ev::ModelVersionDeleted {
                            model_id: id.clone(),
                            name: name.to_owned(),
                            version,
                        },
                    ),
                )
                .await?,
        );
        Self::touch_model(&mut tx, &id, now_millis()).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Sets (or overwrites) a version tag.
    pub async fn set_version_tag(
        &self,
        name: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<()> {
        validate::version(version)?;
        validate::tag(key, value)?;
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        self.version_status(&mut tx, &id, name, version).await?;
        sqlx::query(
            "INSERT INTO model_version_tags (model_id, version, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (model_id, version, key) DO UPDATE SET value = excluded.value",
        )
        .bind(&id)
        .bind(version)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE model_versions SET last_updated_timestamp = $1 WHERE model_id = $2 AND version = $3",
        )
        .bind(now_millis())
        .bind(&id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a version tag; NOT_FOUND when it is not set.
    pub async fn delete_version_tag(&self, name: &str, version: i64, key: &str) -> Result<()> {
        validate::version(version)?;
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        self.version_status(&mut tx, &id, name, version).await?;
        let done = sqlx::query(
            "DELETE FROM model_version_tags WHERE model_id = $1 AND version = $2 AND key = $3",
        )
        .bind(&id)
        .bind(version)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::NotFound(format!(
                "model `{name}` version {version} has no tag `{key}`"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves a version to `stage`; with `archive_existing`, the other versions in that
    /// stage (Staging or Production) move to Archived. One StageChanged event per move.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: pb::Stage,
        archive_existing: bool,
    ) -> Result<pb::ModelVersion> {
        validate::version(version)?;
        if archive_existing && !matches!(stage, pb::Stage::Staging | pb::Stage::Production) {
            return Err(invalid(format!(
                "archive_existing_versions only applies to a move to Staging or Production, not {}",
                stage_name(stage)
            )));
        }
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        let status = self.version_status(&mut tx, &id, name, version).await?;
        if status != READY {
            return Err(precondition(format!(
                "model `{name}` version {version} is {status}; only READY versions change stage"
            )));
        }
        let from: String =
            sqlx::query("SELECT stage FROM model_versions WHERE model_id = $1 AND version = $2")
                .bind(&id)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        let mut moves: Vec<(i64, String, &str)> = vec![];
        if archive_existing {
            let others = sqlx::query(
                "SELECT version, stage FROM model_versions WHERE model_id = $1 AND stage = $2 \
                 AND version <> $3 ORDER BY version",
            )
            .bind(&id)
            .bind(stage_name(stage))
            .bind(version)
            .fetch_all(&mut *tx)
            .await?;
            for r in others {
                moves.push((r.get(0), r.get(1), "Archived"));
            }
        }
        moves.push((version, from, stage_name(stage)));
        let mut enqueued = Vec::with_capacity(moves.len());
        for (v, from, to) in &moves {
            sqlx::query(
                "UPDATE model_versions SET stage = $1, last_updated_timestamp = $2 \
                 WHERE model_id = $3 AND version = $4",
            )
            .bind(*to)
            .bind(now)
            .bind(&id)
            .bind(*v)
            .execute(&mut *tx)
            .await?;
            enqueued.push(
                self.outbox
                    .enqueue(
                        &mut tx,
                        &event(
                            &id,
                            format!("{name}/{v}"),
                            &ev::StageChanged {
                                model_id: id.clone(),
                                name: name.to_owned(),
                                version: *v,
                                from_stage: from.clone(),
                                to_stage: (*to).to_owned(),
                            },
                        ),
                    )
                    .await?,
            );
        }
        Self::touch_model(&mut tx, &id, now).await?;
        tx.commit().await?;
        self.get_version(name, version).await
    }

    /// The newest version in each of `stages` (every stage when empty).
    pub async fn latest_versions(
        &self,
        name: &str,
        stages: &[pb::Stage],
    ) -> Result<Vec<pb::ModelVersion>> {
        let model = self.get_model(name).await?;
        let mut out: Vec<pb::ModelVersion> = model
            .latest_versions
            .into_iter()
            .filter(|v| stages.is_empty() || stages.iter().any(|s| *s as i32 == v.current_stage))
            .collect();
        out.sort_by_key(|v| v.version);
        Ok(out)
    }

    /// A READY version's id, location and files.
    pub async fn version_files(
        &self,
        name: &str,
        version: i64,
    ) -> Result<(String, String, Vec<(String, u64)>)> {
        validate::version(version)?;
        let row = sqlx::query(
            "SELECT v.model_id, v.storage_location, v.files, v.status FROM model_versions v \
             JOIN registered_models m ON m.model_id = v.model_id WHERE m.name = $1 AND v.version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| version_not_found(name, version))?;
        let status: String = row.get(3);
        if status != READY {
            return Err(precondition(format!(
                "model `{name}` version {version} is {status}; only READY versions have files"
            )));
        }
        let location: String = row.get(1);
        if location.is_empty() {
            let source: String = sqlx::query_scalar(
                "SELECT source FROM model_versions WHERE model_id = $1 AND version = $2",
            )
            .bind(row.get::<String, _>(0))
            .bind(version)
            .fetch_one(self.db.reader())
            .await?;
            return Err(precondition(format!(
                "model `{name}` version {version} is a reference to `{source}`: the registry \
                 holds none of its files, so they cannot be listed, downloaded or served; \
                 register it from a run, a logged model or an upload to have them"
            )));
        }
        let files: Vec<(String, u64)> =
            serde_json::from_str(&row.get::<String, _>(2)).unwrap_or_default();
        Ok((row.get(0), location, files))
    }
}
