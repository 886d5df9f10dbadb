//! Logged models (MLflow 3's `LoggedModel`): a model's own record and artifact root,
//! its tags and params, and the runs that produced it.

use mlops_proto::tracking::v1 as pb;
use mlops_storage::now_millis;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::search::PageToken;
use super::{placeholders, require_active_run, stage, Store, ACTIVE, DELETED};
use crate::error::{invalid, Result, TrackingError};
use crate::validate;

const COLUMNS: &str =
    "model_id, experiment_id, name, model_type, source_run_id, status, status_message, \
     artifact_uri, lifecycle_stage, creation_timestamp_ms, last_updated_timestamp_ms";

fn status_str(s: pb::LoggedModelStatus) -> &'static str {
    match s {
        pb::LoggedModelStatus::LoggedModelReady => "READY",
        pb::LoggedModelStatus::LoggedModelUploadFailed => "UPLOAD_FAILED",
        _ => "PENDING",
    }
}

fn status_from_str(s: &str) -> pb::LoggedModelStatus {
    match s {
        "READY" => pb::LoggedModelStatus::LoggedModelReady,
        "UPLOAD_FAILED" => pb::LoggedModelStatus::LoggedModelUploadFailed,
        _ => pb::LoggedModelStatus::LoggedModelPending,
    }
}

fn model_from_row(r: &AnyRow) -> pb::LoggedModel {
    pb::LoggedModel {
        model_id: r.get("model_id"),
        experiment_id: r.get::<i64, _>("experiment_id").to_string(),
        name: r.get("name"),
        creation_timestamp_ms: r.get("creation_timestamp_ms"),
        last_updated_timestamp_ms: r.get("last_updated_timestamp_ms"),
        artifact_uri: r.get("artifact_uri"),
        status: status_from_str(&r.get::<String, _>("status")) as i32,
        model_type: r.get("model_type"),
        source_run_id: r.get("source_run_id"),
        status_message: r.get("status_message"),
        tags: vec![],
        params: vec![],
        lifecycle_stage: stage(&r.get::<String, _>("lifecycle_stage")),
        metrics: vec![],
    }
}

/// Checks a logged model id's form: "m-" and 32 lowercase hex characters.
pub fn check_model_id(id: &str) -> Result<()> {
    let hex = id.strip_prefix("m-").unwrap_or("");
    if hex.len() != 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(format!(
            "model_id `{}` is not a logged model id (\"m-\" and 32 lowercase hex characters)",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Sets `kvs` in a logged model's tags or params `table`, overwriting values.
async fn upsert_kvs(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    model_id: &str,
    kvs: &[(String, String)],
) -> Result<()> {
    for (k, v) in kvs {
        sqlx::query(&format!(
            "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
        ))
        .bind(model_id)
        .bind(k)
        .bind(v)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn not_found(id: &str) -> TrackingError {
    TrackingError::NotFound(format!("logged model {id} not found"))
}

impl Store {
    /// Creates a logged model (PENDING) under an active experiment, with its artifact
    /// root at `<experiment artifact location>/models/<model_id>/artifacts`.
    pub async fn create_logged_model(
        &self,
        req: &pb::CreateLoggedModelRequest,
    ) -> Result<pb::LoggedModel> {
        let exp = validate::experiment_id(&req.experiment_id)?;
        for p in &req.params {
            validate::key("param", &p.key)?;
            validate::value_len("param", &p.key, &p.value, validate::MAX_PARAM_VALUE_LEN)?;
        }
        for t in &req.tags {
            validate::key("tag", &t.key)?;
            validate::value_len("tag", &t.key, &t.value, validate::MAX_TAG_VALUE_LEN)?;
        }
        let model_id = format!("m-{}", uuid::Uuid::new_v4().simple());
        let name = if req.name.trim().is_empty() {
            super::runs::generated_name(&model_id[2..])
        } else {
            req.name.clone()
        };
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = $1{}",
            self.for_update()
        ))
        .bind(exp)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            TrackingError::NotFound(format!("experiment {} not found", req.experiment_id))
        })?;
        if row.get::<String, _>(1) != ACTIVE {
            return Err(TrackingError::FailedPrecondition(format!(
                "experiment {} is deleted; restore it before logging models to it",
                req.experiment_id
            )));
        }
        if validate::run_id(&req.source_run_id).is_ok() {
            require_active_run(&mut tx, &req.source_run_id, "").await?;
        } else if !req.source_run_id.is_empty() {
            // No run here has such an id: a run of another system, recorded as given,
            // as MLflow records it.
            if req.source_run_id.chars().count() > 256
                || req.source_run_id.chars().any(char::is_control)
            {
                return Err(invalid(
                    "source_run_id must be at most 256 characters, without control characters",
                ));
            }
        }
        let location: String = row.get(0);
        let artifact_uri = format!(
            "{}/models/{model_id}/artifacts",
            location.trim_end_matches('/')
        );
        sqlx::query(&format!(
            "INSERT INTO logged_models ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'PENDING', '', $6, 'active', $7, $7)"
        ))
        .bind(&model_id)
        .bind(exp)
        .bind(&name)
        .bind(&req.model_type)
        .bind(&req.source_run_id)
        .bind(&artifact_uri)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let params: Vec<(String, String)> = req
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let tags: Vec<(String, String)> = req
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        upsert_kvs(&mut tx, "logged_model_params", &model_id, &params).await?;
        upsert_kvs(&mut tx, "logged_model_tags", &model_id, &tags).await?;
        tx.commit().await?;
        self.get_logged_model(&model_id, false).await
    }

    /// One logged model with its tags and params.
    pub async fn get_logged_model(
        &self,
        model_id: &str,
        allow_deleted: bool,
    ) -> Result<pb::LoggedModel> {
        check_model_id(model_id)?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM logged_models WHERE model_id = $1"
        ))
        .bind(model_id)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| not_found(model_id))?;
        let mut m = model_from_row(&row);
        if !allow_deleted && m.lifecycle_stage == pb::LifecycleStage::Deleted as i32 {
            return Err(not_found(model_id));
        }
        self.attach_logged_model_data(std::slice::from_mut(&mut m))
            .await?;
        Ok(m)
    }

    async fn attach_logged_model_data(&self, models: &mut [pb::LoggedModel]) -> Result<()> {
        if models.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT model_id, key, value, timestamp, step, dataset_name, dataset_digest, run_id \
             FROM logged_model_metrics WHERE model_id IN ({}) ORDER BY key, step, timestamp",
            placeholders(1, models.len())
        );
        let mut q = sqlx::query(&sql);
        for m in models.iter() {
            q = q.bind(m.model_id.clone());
        }
        for r in q.fetch_all(self.db.reader()).await? {
            let id: String = r.get(0);
            if let Some(m) = models.iter_mut().find(|m| m.model_id == id) {
                m.metrics.push(pb::Metric {
                    key: r.get(1),
                    value: r.get(2),
                    timestamp: r.get(3),
                    step: r.get(4),
                    model_id: id.clone(),
                    dataset_name: r.get(5),
                    dataset_digest: r.get(6),
                    run_id: r.get(7),
                });
            }
        }
        for table in ["logged_model_tags", "logged_model_params"] {
            let sql = format!(
                "SELECT model_id, key, value FROM {table} WHERE model_id IN ({}) ORDER BY key",
                placeholders(1, models.len())
            );
            let mut q = sqlx::query(&sql);
            for m in models.iter() {
                q = q.bind(m.model_id.clone());
            }
            for r in q.fetch_all(self.db.reader()).await? {
                let id: String = r.get(0);
                if let Some(m) = models.iter_mut().find(|m| m.model_id == id) {
                    if table == "logged_model_tags" {
                        m.tags.push(pb::Tag {
                            key: r.get(1),
                            value: r.get(2),
                        });
                    } else {
                        m.params.push(pb::Param {
                            key: r.get(1),
                            value: r.get(2),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The artifact root of a logged model; `writable` refuses deleted ones.
    pub async fn logged_model_artifact_uri(
        &self,
        model_id: &str,
        writable: bool,
    ) -> Result<String> {
        check_model_id(model_id)?;
        let row = sqlx::query(
            "SELECT artifact_uri, lifecycle_stage FROM logged_models WHERE model_id = $1",
        )
        .bind(model_id)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| not_found(model_id))?;
        if writable && row.get::<String, _>(1) != ACTIVE {
            return Err(TrackingError::FailedPrecondition(format!(
                "logged model {model_id} is deleted"
            )));
        }
        Ok(row.get(0))
    }

    /// Sets the final status: READY or UPLOAD_FAILED.
    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: i32,
    ) -> Result<pb::LoggedModel> {
        check_model_id(model_id)?;
        let status = match pb::LoggedModelStatus::try_from(status) {
            Ok(
                s @ (pb::LoggedModelStatus::LoggedModelReady
                | pb::LoggedModelStatus::LoggedModelUploadFailed),
            ) => s,
            _ => {
                return Err(invalid(
                    "status must be LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED",
                ))
            }
        };
        let done = sqlx::query(
            "UPDATE logged_models SET status = $1, last_updated_timestamp_ms = $2 \
             WHERE model_id = $3 AND lifecycle_stage = 'active'",
        )
        .bind(status_str(status))
        .bind(now_millis())
        .bind(model_id)
        .execute(self.db.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(model_id));
        }
        self.get_logged_model(model_id, false).await
    }

    /// Logged models of `experiment_ids`, newest first, paged.
    pub async fn search_logged_models(
        &self,
        req: &pb::SearchLoggedModelsRequest,
    ) -> Result<(Vec<pb::LoggedModel>, String)> {
        if req.experiment_ids.is_empty() {
            return Err(invalid("experiment_ids must name at least one experiment"));
        }
        let max = match req.max_results {
            0 => 100,
            n if !(1..=1000).contains(&n) => {
                return Err(invalid(format!(
                    "max_results is {n}; it must be between 1 and 1000"
                )))
            }
            n => n as i64,
        };
        let offset = PageToken::decode(&req.page_token).map_err(invalid)?;
        let mut exps = vec![];
        for e in &req.experiment_ids {
            exps.push(validate::experiment_id(e)?);
        }
        let n = exps.len();
        let mut sql = format!(
            "SELECT {COLUMNS} FROM logged_models WHERE lifecycle_stage = 'active' \
             AND experiment_id IN ({})",
            placeholders(1, n)
        );
        let mut extra = vec![];
        for (col, v) in [("source_run_id", &req.source_run_id), ("name", &req.name)] {
            if !v.is_empty() {
                extra.push(v.clone());
                sql.push_str(&format!(" AND {col} = ${}", n + extra.len()));
            }
        }
        // MLflow's `datasets` clause: a metric computed on any of the datasets.
        let mut any_dataset = vec![];
        for d in &req.datasets {
            if d.dataset_name.is_empty() {
                return Err(invalid(
                    "`dataset_name` in the `datasets` clause must be specified.",
                ));
            }
            extra.push(d.dataset_name.clone());
            let mut cond = format!("m.dataset_name = ${}", n + extra.len());
            if !d.dataset_digest.is_empty() {
                extra.push(d.dataset_digest.clone());
                cond.push_str(&format!(" AND m.dataset_digest = ${}", n + extra.len()));
            }
            any_dataset.push(format!("({cond})"));
        }
        if !any_dataset.is_empty() {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM logged_model_metrics m WHERE \
                 m.model_id = logged_models.model_id AND ({}))",
                any_dataset.join(" OR ")
            ));
        }
        sql.push_str(&format!(
            " ORDER BY creation_timestamp_ms DESC, model_id LIMIT {} OFFSET {offset}",
            max + 1
        ));
        let mut q = sqlx::query(&sql);
        for e in exps {
            q = q.bind(e);
        }
        for v in extra {
            q = q.bind(v);
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        let more = rows.len() as i64 > max;
        let mut models: Vec<pb::LoggedModel> =
            rows.iter().take(max as usize).map(model_from_row).collect();
        self.attach_logged_model_data(&mut models).await?;
        let next = if more {
            PageToken::encode(offset + max)
        } else {
            String::new()
        };
        Ok((models, next))
    }

    /// Soft-deletes a logged model.
    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        check_model_id(model_id)?;
        let done = sqlx::query(
            "UPDATE logged_models SET lifecycle_stage = $1, last_updated_timestamp_ms = $2 \
             WHERE model_id = $3 AND lifecycle_stage = 'active'",
        )
        .bind(DELETED)
        .bind(now_millis())
        .bind(model_id)
        .execute(self.db.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(model_id));
        }
        Ok(())
    }

    /// Sets tags or params of a logged model (`table` is one of the two).
    async fn upsert_logged_model_kvs(
        &self,
        model_id: &str,
        table: &str,
        kvs: &[(String, String)],
    ) -> Result<()> {
        check_model_id(model_id)?;
        let mut tx = self.db.begin().await?;
        let exists = sqlx::query(&format!(
            "SELECT 1 FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active'{}",
            self.for_update()
        ))
        .bind(model_id)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(not_found(model_id));
        }
        upsert_kvs(&mut tx, table, model_id, kvs).await?;
        sqlx::query("UPDATE logged_models SET last_updated_timestamp_ms = $1 WHERE model_id = $2")
            .bind(now_millis())
            .bind(model_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets (or overwrites) tags of a logged model.
    pub async fn set_logged_model_tags(&self, model_id: &str, tags: &[pb::Tag]) -> Result<()> {
        for t in tags {
            validate::key("tag", &t.key)?;
            validate::value_len("tag", &t.key, &t.value, validate::MAX_TAG_VALUE_LEN)?;
        }
        let kvs: Vec<(String, String)> = tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        self.upsert_logged_model_kvs(model_id, "logged_model_tags", &kvs)
            .await
    }

    /// Logs params of a logged model.
    pub async fn log_logged_model_params(
        &self,
        model_id: &str,
        params: &[pb::Param],
    ) -> Result<()> {
        for p in params {
            validate::key("param", &p.key)?;
            validate::value_len("param", &p.key, &p.value, validate::MAX_PARAM_VALUE_LEN)?;
        }
        let kvs: Vec<(String, String)> = params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        self.upsert_logged_model_kvs(model_id, "logged_model_params", &kvs)
            .await
    }

    /// Deletes a logged model's tag; NOT_FOUND when it is not set.
    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        check_model_id(model_id)?;
        let done = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id)
            .bind(key)
            .execute(self.db.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(TrackingError::NotFound(format!(
                "No tag with key '{key}' found for model with ID '{model_id}'."
            )));
        }
        Ok(())
    }

    /// Records that `run_id` produced `models`.
    pub async fn log_outputs(&self, run_id: &str, models: &[pb::ModelOutput]) -> Result<()> {
        validate::run_id(run_id)?;
        let mut tx = self.db.begin().await?;
        require_active_run(&mut tx, run_id, self.for_update()).await?;
        for m in models {
            check_model_id(&m.model_id)?;
            let exists = sqlx::query("SELECT 1 FROM logged_models WHERE model_id = $1")
                .bind(&m.model_id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(not_found(&m.model_id));
            }
            sqlx::query(
                "INSERT INTO run_outputs (run_id, model_id, step) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
            )
            .bind(run_id)
            .bind(&m.model_id)
            .bind(m.step)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records points logged with a model's id (MLflow 3) with their models, and
    /// returns those the run's history does not have yet (the client re-logs a
    /// run's points with the model's id when it logs the model: they must not show
    /// up twice in the run's history).
    pub(crate) async fn link_model_metrics(
        &self,
        run_id: &str,
        linked: &[&pb::Metric],
    ) -> Result<Vec<pb::Metric>> {
        let mut tx = self.db.begin().await?;
        let mut ids: Vec<&str> = linked.iter().map(|m| m.model_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            check_model_id(id)?;
            let exists = sqlx::query("SELECT 1 FROM logged_models WHERE model_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(not_found(id));
            }
        }
        for m in linked {
            if m.value.is_nan() {
                continue;
            }
            sqlx::query(
                "INSERT INTO logged_model_metrics (model_id, key, step, timestamp, value, run_id, \
                 dataset_name, dataset_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&m.model_id)
            .bind(&m.key)
            .bind(m.step)
            .bind(m.timestamp)
            .bind(m.value)
            .bind(run_id)
            .bind(&m.dataset_name)
            .bind(&m.dataset_digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let mut known: std::collections::HashMap<&str, std::collections::HashSet<(i64, i64, u64)>> =
            Default::default();
        let mut fresh = vec![];
        for m in linked {
            if !known.contains_key(m.key.as_str()) {
                let mut points = pb::GetMetricHistoryResponse::default();
                let rows =
                    sqlx::query("SELECT data FROM metric_chunks WHERE run_id = $1 AND key = $2")
                        .bind(run_id)
                        .bind(&m.key)
                        .fetch_all(self.db.reader())
                        .await?;
                for r in rows {
                    super::decode_chunk(&r.get::<Vec<u8>, _>(0), 0, usize::MAX, &mut points);
                }
                let set = (0..points.steps.len())
                    .map(|i| {
                        (
                            points.steps[i],
                            points.timestamps[i],
                            points.values[i].to_bits(),
                        )
                    })
                    .collect();
                known.insert(&m.key, set);
            }
            let set = known.get_mut(m.key.as_str()).expect("filled above");
            if set.insert((m.step, m.timestamp, m.value.to_bits())) {
                fresh.push((*m).clone());
            }
        }
        Ok(fresh)
    }

    /// The logged models a run produced.
    pub async fn run_outputs(&self, run_id: &str) -> Result<Vec<pb::ModelOutput>> {
        let rows = sqlx::query(
            "SELECT model_id, step FROM run_outputs WHERE run_id = $1 ORDER BY model_id",
        )
        .bind(run_id)
        .fetch_all(self.db.reader())
        .await?;
        Ok(rows
            .iter()
            .map(|r| pb::ModelOutput {
                model_id: r.get(0),
                step: r.get(1),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids() {
        assert!(check_model_id(&format!("m-{}", "a".repeat(32))).is_ok());
        for bad in [
            "",
            "m-",
            "x-0123",
            &"a".repeat(34),
            &format!("m-{}", "A".repeat(32)),
        ] {
            assert!(check_model_id(bad).is_err(), "{bad}");
        }
    }
}
