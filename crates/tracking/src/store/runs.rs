//! Runs: create, read, status changes, delete and restore, heartbeat leases,
//! and the events each of these publishes.

use std::collections::HashMap;

use mlops_events::outbox::Enqueued;
use mlops_events::Envelope;
use mlops_proto::events::v1 as ev;
use mlops_proto::tracking::v1 as pb;
use mlops_storage::now_millis;
use sqlx::{AnyConnection, Row};

use super::{
    is_terminal, placeholders, require_active_run, run_from_row, run_info, run_not_found,
    run_with_data_columns, status_str, Store, ACTIVE, DELETED, RUN_COLUMNS,
};
use crate::error::{invalid, Result, TrackingError};
use crate::validate;

const SOURCE: &str = "/mlops/tracking";

/// The event carrying `msg` about run `run_id`, on the runs topic keyed by the run.
fn event<M: prost::Name + prost::Message>(run_id: &str, msg: &M) -> Envelope {
    Envelope::of(
        mlops_proto::events::topics::RUNS,
        SOURCE,
        run_id,
        format!("runs/{run_id}"),
        msg,
    )
}

/// Adjectives and nouns for generated run names, as MLflow does ("bold-owl-42").
const ADJECTIVES: &[&str] = &[
    "bold", "calm", "eager", "gentle", "keen", "lucky", "quick", "sunny", "wise", "zesty",
];
const NOUNS: &[&str] = &[
    "owl", "fox", "lynx", "hare", "wren", "seal", "crab", "moth", "yak", "ibis",
];

pub(crate) fn generated_name(run_id: &str) -> String {
    let b = u32::from_str_radix(&run_id[..8], 16).unwrap_or(0) as usize;
    format!(
        "{}-{}-{}",
        ADJECTIVES[b % 10],
        NOUNS[(b / 10) % 10],
        (b / 100) % 1000
    )
}

async fn fetch_by_ids(
    pool: &sqlx::AnyPool,
    sql: &str,
    ids: &[String],
) -> Result<Vec<sqlx::any::AnyRow>> {
    let mut q = sqlx::query(sql);
    for id in ids {
        q = q.bind(id);
    }
    Ok(q.fetch_all(pool).await?)
}

impl Store {
    /// Creates a RUNNING run.
    pub async fn create_run(&self, req: pb::CreateRunRequest) -> Result<pb::Run> {
        let exp_id = if req.experiment_id.is_empty() {
            "0".to_owned()
        } else {
            req.experiment_id.clone()
        };
        let eid = validate::experiment_id(&exp_id)?;
        if req.run_name.chars().count() > validate::MAX_RUN_NAME_LEN {
            return Err(invalid(format!(
                "run_name is longer than {} characters",
                validate::MAX_RUN_NAME_LEN
            )));
        }
        for t in &req.tags {
            validate::key("tag", &t.key)?;
            validate::value_len("tag", &t.key, &t.value, validate::MAX_TAG_VALUE_LEN)?;
        }
        if req.heartbeat_timeout_seconds == Some(0) {
            return Err(invalid(
                "heartbeat_timeout_seconds must be at least 1 when set",
            ));
        }
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let run_name = if req.run_name.is_empty() {
            generated_name(&run_id)
        } else {
            req.run_name.clone()
        };
        let start_time = req.start_time.unwrap_or_else(now_millis);
        let lease_seconds = req.heartbeat_timeout_seconds.map(i64::from);
        let lease_expires_at = lease_seconds.map(|s| now_millis() + s * 1000);

        let mut tx = self.db.begin().await?;
        let exp = sqlx::query(&format!(
            "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = $1{}",
            self.for_update()
        ))
        .bind(eid)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| TrackingError::NotFound(format!("experiment {exp_id} not found")))?;
        if exp.get::<String, _>(0) != ACTIVE {
            return Err(TrackingError::FailedPrecondition(format!(
                "experiment {exp_id} is deleted; restore it before creating runs in it"
            )));
        }
        let artifact_uri = format!("{}/{run_id}/artifacts", exp.get::<String, _>(1));
        if !req.parent_run_id.is_empty() {
            validate::run_id(&req.parent_run_id)?;
            // Any run may be a parent, in this experiment or another, as in MLflow.
            sqlx::query("SELECT 1 FROM runs WHERE run_id = $1")
                .bind(&req.parent_run_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    TrackingError::NotFound(format!("parent run {} not found", req.parent_run_id))
                })?;
        }
        sqlx::query(
            "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time, artifact_uri, \
             lifecycle_stage, parent_run_id, lease_seconds, lease_expires_at) \
             VALUES ($1, $2, $3, $4, 'RUNNING', $5, $6, 'active', $7, $8, $9)",
        )
        .bind(&run_id)
        .bind(eid)
        .bind(&run_name)
        .bind(&req.user_id)
        .bind(start_time)
        .bind(&artifact_uri)
        .bind((!req.parent_run_id.is_empty()).then_some(req.parent_run_id.as_str()))
        .bind(lease_seconds)
        .bind(lease_expires_at)
        .execute(&mut *tx)
        .await?;
        // MLflow clients read these system tags; keep them in step with the columns.
        let mut tags: Vec<(String, String)> = req
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        tags.push(("mlflow.runName".into(), run_name.clone()));
        if !req.user_id.is_empty() {
            tags.push(("mlflow.user".into(), req.user_id.clone()));
        }
        if !req.parent_run_id.is_empty() {
            tags.push(("mlflow.parentRunId".into(), req.parent_run_id.clone()));
        }
        for (k, v) in &tags {
            sqlx::query(
                "INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(&run_id)
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        let created = ev::RunCreated {
            run_id: run_id.clone(),
            experiment_id: exp_id.clone(),
            run_name: run_name.clone(),
            parent_run_id: req.parent_run_id.clone(),
            start_time,
            tags: tags.iter().cloned().collect(),
        };
        let _enqueued = self
            .outbox
            .enqueue(&mut tx, &event(&run_id, &created))
            .await?;
        tx.commit().await?;
        self.metrics.runs_created.inc();
        self.get_run(&run_id).await
    }

    /// One run with its data.
    pub async fn get_run(&self, run_id: &str) -> Result<pb::Run> {
        validate::run_id(run_id)?;
        let row = sqlx::query(&format!(
            "SELECT {} FROM runs r WHERE r.run_id = $1",
            run_with_data_columns(self.db.backend(), true)
        ))
        .bind(run_id)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
        let (run, linked) = run_from_row(&row);
        let mut runs = [run];
        if linked {
            self.attach_inputs_and_outputs(&mut runs).await?;
        }
        let [mut run] = runs;
        run.outputs.get_or_insert_with(Default::default);
        Ok(run)
    }

    /// A run's artifact root, in one small query; `writable` refuses deleted runs.
    pub async fn artifact_uri(&self, run_id: &str, writable: bool) -> Result<String> {
        validate::run_id(run_id)?;
        let row = sqlx::query("SELECT artifact_uri, lifecycle_stage FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(self.db.reader())
            .await?
            .ok_or_else(|| run_not_found(run_id))?;
        if writable && row.get::<String, _>(1) != ACTIVE {
            return Err(TrackingError::FailedPrecondition(format!(
                "run {run_id} is deleted; restore it before uploading"
            )));
        }
        Ok(row.get(0))
    }

    /// Attaches the dataset inputs and the logged models produced to runs, in one
    /// query each.
    pub(crate) async fn attach_inputs_and_outputs(&self, runs: &mut [pb::Run]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let index: HashMap<String, usize> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.info.as_ref().map(|info| (info.run_id.clone(), i)))
            .collect();
        let ids: Vec<String> = index.keys().cloned().collect();
        // Both at once, on two reader connections: a search pays one round trip for them.
        let inputs_sql = format!(
            "SELECT i.run_id, i.context, i.tags, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
             FROM run_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id WHERE i.run_id IN ({}) ORDER BY d.name",
            placeholders(1, ids.len())
        );
        // The logged models each run produced (`o`) and used (`i`), in one query.
        let models_sql = format!(
            "SELECT run_id, model_id, step, 'o' FROM run_outputs WHERE run_id IN ({}) \
             UNION ALL SELECT run_id, model_id, 0, 'i' FROM run_model_inputs WHERE run_id IN ({}) \
             ORDER BY 2",
            placeholders(1, ids.len()),
            placeholders(ids.len() + 1, ids.len())
        );
        let twice: Vec<String> = ids.iter().chain(&ids).cloned().collect();
        let (inputs, models) = tokio::join!(
            fetch_by_ids(self.db.reader(), &inputs_sql, &ids),
            fetch_by_ids(self.db.reader(), &models_sql, &twice)
        );
        let (inputs, models) = (inputs?, models?);
        for r in models {
            let Some(run) = index.get(&r.get::<String, _>(0)).map(|i| &mut runs[*i]) else {
                continue;
            };
            let model_id: String = r.get(1);
            if r.get::<String, _>(3) == "o" {
                run.outputs
                    .get_or_insert_with(Default::default)
                    .model_outputs
                    .push(pb::ModelOutput {
                        model_id,
                        step: r.get(2),
                    });
            } else {
                run.inputs
                    .get_or_insert_with(Default::default)
                    .model_inputs
                    .push(pb::ModelInput { model_id });
            }
        }
        for r in inputs {
            let Some(run) = index.get(&r.get::<String, _>(0)).map(|i| &mut runs[*i]) else {
                continue;
            };
            let tags: Vec<(String, String)> =
                serde_json::from_str(&r.get::<String, _>(2)).unwrap_or_default();
            run.inputs
                .get_or_insert_with(Default::default)
                .dataset_inputs
                .push(pb::DatasetInput {
                    context: r.get(1),
                    tags: tags
                        .into_iter()
                        .map(|(key, value)| pb::Tag { key, value })
                        .collect(),
                    dataset: Some(pb::Dataset {
                        name: r.get(3),
                        digest: r.get(4),
                        source_type: r.get(5),
                        source: r.get(6),
                        schema: r.get(7),
                        profile: r.get(8),
                    }),
                });
        }
        Ok(())
    }

    /// Changes status, end time or name; a first terminal status publishes `RunFinished`.
    pub async fn update_run(&self, req: pb::UpdateRunRequest) -> Result<pb::RunInfo> {
        validate::run_id(&req.run_id)?;
        let status = pb::RunStatus::try_from(req.status)
            .map_err(|_| invalid(format!("status {} is not a run status", req.status)))?;
        if req.run_name.chars().count() > validate::MAX_RUN_NAME_LEN {
            return Err(invalid(format!(
                "run_name is longer than {} characters",
                validate::MAX_RUN_NAME_LEN
            )));
        }
        let mut tx = self.db.begin().await?;
        let old = require_active_run(&mut tx, &req.run_id, self.for_update()).await?;
        let new = if status == pb::RunStatus::Unspecified {
            old.clone()
        } else {
            status_str(status).to_owned()
        };
        let finishing = is_terminal(&new) && !is_terminal(&old);
        let end_time = if is_terminal(&new) {
            Some(req.end_time.unwrap_or_else(now_millis))
        } else {
            req.end_time
        };
        sqlx::query(
            "UPDATE runs SET status = $1, end_time = COALESCE($2, end_time), \
             run_name = CASE WHEN $3 = '' THEN run_name ELSE $3 END WHERE run_id = $4",
        )
        .bind(&new)
        .bind(end_time)
        .bind(&req.run_name)
        .bind(&req.run_id)
        .execute(&mut *tx)
        .await?;
        if !req.run_name.is_empty() {
            sqlx::query("UPDATE tags SET value = $1 WHERE run_id = $2 AND key = 'mlflow.runName'")
                .bind(&req.run_name)
                .bind(&req.run_id)
                .execute(&mut *tx)
                .await?;
        }
        let _enqueued = if finishing {
            Some(
                self.enqueue_run_finished(
                    &mut tx,
                    &req.run_id,
                    &new,
                    end_time.unwrap_or_default(),
                    false,
                )
                .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        if finishing {
            self.metrics.runs_finished.with_label_values(&[&new]).inc();
        }
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"))
            .bind(&req.run_id)
            .fetch_one(self.db.reader())
            .await?;
        Ok(run_info(&row))
    }

    pub(crate) async fn enqueue_run_finished(
        &self,
        conn: &mut AnyConnection,
        run_id: &str,
        status: &str,
        end_time: i64,
        lease_expired: bool,
    ) -> Result<Enqueued> {
        let head = sqlx::query("SELECT experiment_id FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&mut *conn)
            .await?;
        let metrics = sqlx::query("SELECT key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_id = $1 ORDER BY key")
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| ev::FinalMetric {
                key: r.get(0),
                value: if r.get::<i64, _>(2) != 0 { f64::NAN } else { r.get::<Option<f64>, _>(1).unwrap_or(f64::NAN) },
                timestamp: r.get(3),
                step: r.get(4),
            })
            .collect();
        let params = sqlx::query("SELECT key, value FROM params WHERE run_id = $1")
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let finished = ev::RunFinished {
            run_id: run_id.to_owned(),
            experiment_id: head.get::<i64, _>(0).to_string(),
            status: status.to_owned(),
            end_time,
            metrics,
            params,
            lease_expired,
        };
        Ok(self.outbox.enqueue(conn, &event(run_id, &finished)).await?)
    }

    pub(crate) async fn enqueue_run_deleted(
        &self,
        conn: &mut AnyConnection,
        run_id: &str,
        experiment_id: &str,
    ) -> Result<Enqueued> {
        let deleted = ev::RunDeleted {
            run_id: run_id.to_owned(),
            experiment_id: experiment_id.to_owned(),
        };
        Ok(self.outbox.enqueue(conn, &event(run_id, &deleted)).await?)
    }

    /// Soft-deletes a run.
    pub async fn delete_run(&self, run_id: &str) -> Result<()> {
        validate::run_id(run_id)?;
        let mut tx = self.db.begin().await?;
        require_active_run(&mut tx, run_id, self.for_update()).await?;
        let row = sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_id = $3 RETURNING experiment_id")
            .bind(DELETED)
            .bind(now_millis())
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        let _enqueued = self
            .enqueue_run_deleted(&mut tx, run_id, &row.get::<i64, _>(0).to_string())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Restores a deleted run.
    pub async fn restore_run(&self, run_id: &str) -> Result<()> {
        validate::run_id(run_id)?;
        let n = sqlx::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = NULL WHERE run_id = $2 AND lifecycle_stage = $3")
            .bind(ACTIVE)
            .bind(run_id)
            .bind(DELETED)
            .execute(self.db.writer())
            .await?
            .rows_affected();
        if n == 0 {
            let exists = sqlx::query("SELECT 1 FROM runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(self.db.reader())
                .await?;
            return Err(match exists {
                None => run_not_found(run_id),
                Some(_) => {
                    TrackingError::FailedPrecondition(format!("run {run_id} is not deleted"))
                }
            });
        }
        Ok(())
    }

    /// Extends a run's lease; returns the new expiry.
    pub async fn heartbeat(&self, run_id: &str) -> Result<i64> {
        validate::run_id(run_id)?;
        let now = now_millis();
        let row = sqlx::query(
            "UPDATE runs SET lease_expires_at = $1 + lease_seconds * 1000 \
             WHERE run_id = $2 AND status = 'RUNNING' AND lifecycle_stage = 'active' AND lease_seconds IS NOT NULL \
             RETURNING lease_expires_at",
        )
        .bind(now)
        .bind(run_id)
        .fetch_optional(self.db.writer())
        .await?;
        if let Some(r) = row {
            return Ok(r.get(0));
        }
        let row = sqlx::query(
            "SELECT status, lifecycle_stage, lease_seconds FROM runs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
        let (status, stage, lease): (String, String, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        Err(TrackingError::FailedPrecondition(if stage != ACTIVE {
            format!("run {run_id} is deleted")
        } else if lease.is_none() {
            format!(
                "run {run_id} was created without heartbeat_timeout_seconds, so it holds no lease"
            )
        } else {
            format!("run {run_id} is {status}; only RUNNING runs hold a lease")
        }))
    }

    /// Kills RUNNING runs whose lease ran out; returns how many.
    pub async fn expire_leases(&self) -> Result<usize> {
        let now = now_millis();
        let due = sqlx::query(
            "SELECT run_id FROM runs WHERE lease_expires_at IS NOT NULL AND lease_expires_at < $1 \
             AND status = 'RUNNING' AND lifecycle_stage = 'active' LIMIT 100",
        )
        .bind(now)
        .fetch_all(self.db.reader())
        .await?;
        let mut killed = 0;
        for r in due {
            let run_id: String = r.get(0);
            let mut tx = self.db.begin().await?;
            // Re-checked under the write lock: a heartbeat may have just renewed it.
            let row = sqlx::query(
                "UPDATE runs SET status = 'KILLED', end_time = lease_expires_at \
                 WHERE run_id = $1 AND status = 'RUNNING' AND lease_expires_at < $2 RETURNING end_time",
            )
            .bind(&run_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                let _enqueued = self
                    .enqueue_run_finished(&mut tx, &run_id, "KILLED", row.get(0), true)
                    .await?;
                tx.commit().await?;
                killed += 1;
                self.metrics.lease_expired.inc();
                self.metrics
                    .runs_finished
                    .with_label_values(&["KILLED"])
                    .inc();
                tracing::info!(run_id = %run_id, "run killed: heartbeat lease expired");
            }
        }
        Ok(killed)
    }
}
