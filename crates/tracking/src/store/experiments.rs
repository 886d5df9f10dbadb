//! Experiments: create, read, search, rename, delete and restore, tags.

use mlops_proto::tracking::v1 as pb;
use mlops_storage::{is_unique_violation, now_millis};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::search::{experiment_filter_sql, order_sql, page_size, PageToken, SqlBuilder};
use super::{stage, stages, Store, ACTIVE, DELETED};
use crate::error::{invalid, Result, TrackingError};
use crate::validate;
use mlops_filter::{self as filter, Entity};

const EXPERIMENT_COLUMNS: &str =
    "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time";

fn experiment(r: &AnyRow) -> pb::Experiment {
    pb::Experiment {
        experiment_id: r.get::<i64, _>("experiment_id").to_string(),
        name: r.get("name"),
        artifact_location: r.get("artifact_location"),
        lifecycle_stage: stage(&r.get::<String, _>("lifecycle_stage")),
        creation_time: r.get("creation_time"),
        last_update_time: r.get("last_update_time"),
        tags: vec![],
    }
}

fn not_found(id: &str) -> TrackingError {
    // MLflow's words: clients match them.
    TrackingError::NotFound(format!("No Experiment with id={id} exists"))
}

impl Store {
    /// Creates the Default experiment (id 0) if it does not exist.
    pub async fn ensure_default_experiment(&self) -> Result<()> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES (0, 'Default', $1, 'active', $2, $2) ON CONFLICT DO NOTHING",
        )
        .bind(format!("{}/0", self.artifact_root))
        .bind(now)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Creates an experiment; its name must be unused, deleted experiments included.
    pub async fn create_experiment(&self, req: pb::CreateExperimentRequest) -> Result<String> {
        let name = req.name.trim();
        if name.is_empty() {
            return Err(invalid("experiment name must not be empty"));
        }
        if name.chars().count() > validate::MAX_EXPERIMENT_NAME_LEN {
            return Err(invalid(format!(
                "experiment name is {} characters long; the limit is {}",
                name.chars().count(),
                validate::MAX_EXPERIMENT_NAME_LEN
            )));
        }
        validate::artifact_location(&req.artifact_location, &self.artifact_root)?;
        for t in &req.tags {
            validate::key("tag", &t.key)?;
            validate::value_len("tag", &t.key, &t.value, validate::MAX_TAG_VALUE_LEN)?;
        }
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, 'active', $3, $3) RETURNING experiment_id",
        )
        .bind(name)
        .bind(req.artifact_location.trim_end_matches('/'))
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.get(0),
            Err(e) if is_unique_violation(&e) => {
                return Err(TrackingError::AlreadyExists(format!(
                    "an experiment named `{name}` already exists (possibly deleted: restore it or pick another name)"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if req.artifact_location.is_empty() {
            sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2")
                .bind(format!("{}/{id}", self.artifact_root))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for t in &req.tags {
            sqlx::query(
                "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id.to_string())
    }

    /// One experiment by id, with its tags.
    pub async fn get_experiment(&self, id: &str) -> Result<pb::Experiment> {
        let eid = validate::experiment_id(id)?;
        let row = sqlx::query(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE experiment_id = $1"
        ))
        .bind(eid)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| not_found(id))?;
        let mut e = experiment(&row);
        self.attach_experiment_tags(std::slice::from_mut(&mut e))
            .await?;
        Ok(e)
    }

    /// One experiment by exact name.
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<pb::Experiment> {
        if name.is_empty() {
            return Err(invalid("experiment name must not be empty"));
        }
        let row = sqlx::query(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| TrackingError::NotFound(format!("no experiment named `{name}`")))?;
        let mut e = experiment(&row);
        self.attach_experiment_tags(std::slice::from_mut(&mut e))
            .await?;
        Ok(e)
    }

    async fn attach_experiment_tags(&self, exps: &mut [pb::Experiment]) -> Result<()> {
        if exps.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ({}) ORDER BY key",
            super::placeholders(1, exps.len())
        );
        let mut q = sqlx::query(&sql);
        for e in exps.iter() {
            q = q.bind(e.experiment_id.parse::<i64>().unwrap_or(-1));
        }
        for r in q.fetch_all(self.db.reader()).await? {
            let id = r.get::<i64, _>(0).to_string();
            if let Some(e) = exps.iter_mut().find(|e| e.experiment_id == id) {
                e.tags.push(pb::Tag {
                    key: r.get(1),
                    value: r.get(2),
                });
            }
        }
        Ok(())
    }

    /// Experiments matching a filter, one page.
    pub async fn search_experiments(
        &self,
        req: &pb::SearchExperimentsRequest,
    ) -> Result<(Vec<pb::Experiment>, String)> {
        let filter = filter::parse_filter(&req.filter, Entity::Experiment)
            .map_err(|e| invalid(e.to_string()))?;
        let max = page_size(req.max_results)?;
        let offset = PageToken::decode(&req.page_token).map_err(invalid)?;
        let mut sql = SqlBuilder::new(self.db.backend());
        sql.push(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments e WHERE e.lifecycle_stage IN ("
        ));
        let st = stages(req.view_type);
        for (i, s) in st.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_str(s);
        }
        sql.push(")");
        experiment_filter_sql(&mut sql, &filter);
        let orders = filter::parse_order_by_list(&req.order_by, Entity::Experiment)
            .map_err(|e| invalid(e.to_string()))?;
        order_sql(&mut sql, &orders, Entity::Experiment);
        sql.push(&format!(" LIMIT {} OFFSET {offset}", max + 1));
        let rows = sql.fetch_all(&self.db).await?;
        let mut exps: Vec<pb::Experiment> = rows.iter().map(experiment).collect();
        let next = if exps.len() > max as usize {
            exps.truncate(max as usize);
            PageToken::encode(offset + max as i64)
        } else {
            String::new()
        };
        self.attach_experiment_tags(&mut exps).await?;
        Ok((exps, next))
    }

    /// Renames an active experiment.
    pub async fn rename_experiment(&self, id: &str, new_name: &str) -> Result<()> {
        let eid = validate::experiment_id(id)?;
        let new_name = new_name.trim();
        if new_name.is_empty() {
            return Err(invalid("new_name must not be empty"));
        }
        let mut tx = self.db.begin().await?;
        self.require_active_experiment(&mut tx, eid, id).await?;
        let r = sqlx::query(
            "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
        )
        .bind(new_name)
        .bind(now_millis())
        .bind(eid)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(TrackingError::AlreadyExists(format!(
                    "an experiment named `{new_name}` already exists"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    async fn require_active_experiment(
        &self,
        conn: &mut sqlx::AnyConnection,
        eid: i64,
        id: &str,
    ) -> Result<()> {
        let row = sqlx::query(&format!(
            "SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1{}",
            self.for_update()
        ))
        .bind(eid)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(id))?;
        if row.get::<String, _>(0) != ACTIVE {
            return Err(TrackingError::FailedPrecondition(format!(
                "experiment {id} is deleted; restore it first"
            )));
        }
        Ok(())
    }

    /// Marks an experiment and its active runs deleted.
    pub async fn delete_experiment(&self, id: &str) -> Result<()> {
        let eid = validate::experiment_id(id)?;
        if eid == 0 {
            return Err(TrackingError::FailedPrecondition(
                "the Default experiment (id 0) cannot be deleted".into(),
            ));
        }
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        self.require_active_experiment(&mut tx, eid, id).await?;
        sqlx::query("UPDATE experiments SET lifecycle_stage = $1, deleted_time = $2, last_update_time = $2 WHERE experiment_id = $3")
            .bind(DELETED)
            .bind(now)
            .bind(eid)
            .execute(&mut *tx)
            .await?;
        let runs = sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE experiment_id = $3 AND lifecycle_stage = $4 RETURNING run_id")
            .bind(DELETED)
            .bind(now)
            .bind(eid)
            .bind(ACTIVE)
            .fetch_all(&mut *tx)
            .await?;
        let mut enqueued = Vec::with_capacity(runs.len());
        for r in &runs {
            enqueued.push(
                self.enqueue_run_deleted(&mut tx, &r.get::<String, _>(0), id)
                    .await?,
            );
        }
        tx.commit().await?;
        drop(enqueued);
        Ok(())
    }

    /// Restores a deleted experiment and the runs deleted with it.
    pub async fn restore_experiment(&self, id: &str) -> Result<()> {
        let eid = validate::experiment_id(id)?;
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT lifecycle_stage, deleted_time FROM experiments WHERE experiment_id = $1{}",
            self.for_update()
        ))
        .bind(eid)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(id))?;
        if row.get::<String, _>(0) != DELETED {
            return Err(TrackingError::FailedPrecondition(format!(
                "experiment {id} is not deleted"
            )));
        }
        let deleted_time: Option<i64> = row.get(1);
        sqlx::query("UPDATE experiments SET lifecycle_stage = $1, deleted_time = NULL, last_update_time = $2 WHERE experiment_id = $3")
            .bind(ACTIVE)
            .bind(now_millis())
            .bind(eid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = NULL WHERE experiment_id = $2 AND deleted_time = $3")
            .bind(ACTIVE)
            .bind(eid)
            .bind(deleted_time)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets or deletes (`value` None) an experiment tag.
    pub async fn set_experiment_tag(&self, id: &str, key: &str, value: Option<&str>) -> Result<()> {
        let eid = validate::experiment_id(id)?;
        validate::key("tag", key)?;
        if let Some(v) = value {
            validate::value_len("tag", key, v, validate::MAX_TAG_VALUE_LEN)?;
        }
        let mut tx = self.db.begin().await?;
        self.require_active_experiment(&mut tx, eid, id).await?;
        match value {
            Some(v) => {
                sqlx::query(
                    "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(eid)
                .bind(key)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                let n = sqlx::query(
                    "DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2",
                )
                .bind(eid)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(TrackingError::NotFound(format!(
                        "No tag with name: {key} in experiment with id {id}"
                    )));
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
