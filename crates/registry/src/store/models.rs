//! Registered models: create, read, rename, update, delete, tags.

use mlops_proto::events::v1 as ev;
use mlops_proto::registry::v1 as pb;
use mlops_storage::{is_unique_violation, now_millis};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{event, model_not_found, version_columns, version_from_row, Store};
use crate::error::{invalid, RegistryError, Result};
use crate::validate;

pub(crate) const MODEL_COLUMNS: &str = "m.model_id, m.name, m.description, m.creation_timestamp, \
     m.last_updated_timestamp, m.gate_required, m.gate_aliases";

pub(crate) fn model_from_row(r: &AnyRow) -> pb::RegisteredModel {
    let aliases: Vec<String> =
        serde_json::from_str(&r.get::<String, _>("gate_aliases")).unwrap_or_default();
    pb::RegisteredModel {
        name: r.get("name"),
        id: r.get("model_id"),
        creation_timestamp: r.get("creation_timestamp"),
        last_updated_timestamp: r.get("last_updated_timestamp"),
        description: r.get("description"),
        tags: vec![],
        aliases: vec![],
        latest_versions: vec![],
        gate_policy: Some(pb::GatePolicy {
            require_passed_gate: r.get::<i64, _>("gate_required") != 0,
            aliases,
        }),
    }
}

fn check_policy(p: &pb::GatePolicy) -> Result<()> {
    for a in &p.aliases {
        validate::alias(a).map_err(|e| invalid(format!("gate_policy: {e}")))?;
    }
    Ok(())
}

impl Store {
    /// Creates a registered model.
    pub async fn create_model(
        &self,
        req: pb::CreateRegisteredModelRequest,
    ) -> Result<pb::RegisteredModel> {
        validate::model_name(&req.name)?;
        validate::description(&req.description)?;
        for t in &req.tags {
            validate::tag(&t.key, &t.value)?;
        }
        let policy = req.gate_policy.clone().unwrap_or_default();
        check_policy(&policy)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO registered_models (model_id, name, description, creation_timestamp, \
             last_updated_timestamp, gate_required, gate_aliases) VALUES ($1, $2, $3, $4, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&req.name)
        .bind(&req.description)
        .bind(now)
        .bind(policy.require_passed_gate as i64)
        .bind(serde_json::to_string(&policy.aliases).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // MLflow's words: clients match them.
                return Err(RegistryError::AlreadyExists(format!(
                    "Registered Model (name={}) already exists.",
                    req.name
                )));
            }
            Err(e) => return Err(e.into()),
        }
        for t in &req.tags {
            sqlx::query(
                "INSERT INTO registered_model_tags (model_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(&id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_model(&req.name).await
    }

    /// One model with its tags, aliases and latest version per stage.
    pub async fn get_model(&self, name: &str) -> Result<pb::RegisteredModel> {
        let row = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM registered_models m WHERE m.name = $1"
        ))
        .bind(name)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| model_not_found(name))?;
        let mut models = vec![model_from_row(&row)];
        self.attach_model_details(&mut models).await?;
        Ok(models.pop().expect("one model"))
    }

    /// Fills tags, aliases and latest versions of a page of models (three queries).
    pub(crate) async fn attach_model_details(
        &self,
        models: &mut [pb::RegisteredModel],
    ) -> Result<()> {
        if models.is_empty() {
            return Ok(());
        }
        let ids = super::placeholders(1, models.len());
        let idx = |id: &str| models.iter().position(|m| m.id == id);
        let tags_sql = format!(
            "SELECT model_id, key, value FROM registered_model_tags WHERE model_id IN ({ids}) ORDER BY model_id, key"
        );
        let mut q = sqlx::query(&tags_sql);
        for m in models.iter() {
            q = q.bind(m.id.clone());
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        let mut tags: Vec<(usize, pb::Tag)> = vec![];
        for r in &rows {
            if let Some(i) = idx(&r.get::<String, _>(0)) {
                tags.push((
                    i,
                    pb::Tag {
                        key: r.get(1),
                        value: r.get(2),
                    },
                ));
            }
        }
        let aliases_sql = format!(
            "SELECT model_id, alias, version FROM model_aliases WHERE model_id IN ({ids}) ORDER BY model_id, alias"
        );
        let mut q = sqlx::query(&aliases_sql);
        for m in models.iter() {
            q = q.bind(m.id.clone());
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        let mut aliases: Vec<(usize, pb::AliasRef)> = vec![];
        for r in &rows {
            if let Some(i) = idx(&r.get::<String, _>(0)) {
                aliases.push((
                    i,
                    pb::AliasRef {
                        alias: r.get(1),
                        version: r.get(2),
                    },
                ));
            }
        }
        let latest_sql = format!(
            "SELECT {} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id \
             WHERE v.model_id IN ({ids}) AND v.version = (SELECT MAX(x.version) FROM model_versions x \
             WHERE x.model_id = v.model_id AND x.stage = v.stage) ORDER BY v.model_id, v.version",
            version_columns(self.db.backend())
        );
        let mut q = sqlx::query(&latest_sql);
        for m in models.iter() {
            q = q.bind(m.id.clone());
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        let mut latest: Vec<(usize, pb::ModelVersion)> = vec![];
        for r in &rows {
            let v = version_from_row(r);
            if let Some(i) = idx(&v.model_id) {
                latest.push((i, v));
            }
        }
        for (i, t) in tags {
            models[i].tags.push(t);
        }
        for (i, a) in aliases {
            models[i].aliases.push(a);
        }
        for (i, v) in latest {
            models[i].latest_versions.push(v);
        }
        Ok(())
    }

    /// NOT_FOUND unless the model exists (one indexed lookup).
    pub async fn require_model(&self, name: &str) -> Result<()> {
        let mut conn = self.db.reader().acquire().await?;
        self.model_id(&mut conn, name, false).await.map(|_| ())
    }

    /// Renames a model; versions, aliases and history follow it.
    pub async fn rename_model(&self, name: &str, new_name: &str) -> Result<pb::RegisteredModel> {
        validate::model_name(new_name)?;
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        let done = sqlx::query(
            "UPDATE registered_models SET name = $1, last_updated_timestamp = $2 WHERE model_id = $3",
        )
        .bind(new_name)
        .bind(now_millis())
        .bind(&id)
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(RegistryError::AlreadyExists(format!(
                    "cannot rename `{name}` to `{new_name}`: a registered model with that name exists"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        self.get_model(new_name).await
    }

    /// Updates the description and/or gate policy.
    pub async fn update_model(
        &self,
        req: pb::UpdateRegisteredModelRequest,
    ) -> Result<pb::RegisteredModel> {
        if let Some(d) = &req.description {
            validate::description(d)?;
        }
        if let Some(p) = &req.gate_policy {
            check_policy(p)?;
        }
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, &req.name, true).await?;
        let now = now_millis();
        if let Some(d) = &req.description {
            sqlx::query("UPDATE registered_models SET description = $1 WHERE model_id = $2")
                .bind(d)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(p) = &req.gate_policy {
            sqlx::query(
                "UPDATE registered_models SET gate_required = $1, gate_aliases = $2 WHERE model_id = $3",
            )
            .bind(p.require_passed_gate as i64)
            .bind(serde_json::to_string(&p.aliases).unwrap_or_else(|_| "[]".into()))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        }
        Self::touch_model(&mut tx, &id, now).await?;
        tx.commit().await?;
        self.get_model(&req.name).await
    }

    /// Deletes a model with everything in it; returns its id (to remove its files).
    pub async fn delete_model(&self, name: &str) -> Result<String> {
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        // Children first: SQLite enforces the foreign keys, but be explicit on both.
        for table in [
            "gate_results",
            "model_evaluations",
            "model_aliases",
            "model_version_tags",
            "model_versions",
            "registered_model_tags",
            "registered_models",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE model_id = $1"))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        let _enqueued = self
            .outbox
            .enqueue(
                &mut tx,
                &event(
                    &id,
                    name.to_owned(),
                    &ev::RegisteredModelDeleted {
                        model_id: id.clone(),
                        name: name.to_owned(),
                    },
                ),
            )
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Sets (or overwrites) a model tag.
    pub async fn set_model_tag(&self, name: &str, key: &str, value: &str) -> Result<()> {
        validate::tag(key, value)?;
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        sqlx::query(
            "INSERT INTO registered_model_tags (model_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(&id)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        Self::touch_model(&mut tx, &id, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a model tag; NOT_FOUND when it is not set.
    pub async fn delete_model_tag(&self, name: &str, key: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        let done =
            sqlx::query("DELETE FROM registered_model_tags WHERE model_id = $1 AND key = $2")
                .bind(&id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::NotFound(format!(
                "registered model `{name}` has no tag `{key}`"
            )));
        }
        Self::touch_model(&mut tx, &id, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }
}
