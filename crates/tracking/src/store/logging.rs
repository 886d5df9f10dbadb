//! Logging to a run: params, tags and metrics in one atomic batch; dataset inputs;
//! and the metric history.
//!
//! A batch's points of one key are stored as one chunk row (24 bytes a point:
//! step, timestamp, value, little-endian), so a 1000-point batch is one insert,
//! and a million-point history is a thousand rows read in order. The latest value
//! per key lives in `latest_metrics` for search and `GetRun`.

use std::collections::BTreeMap;

use mlops_proto::tracking::v1 as pb;
use mlops_storage::now_millis;
use sqlx::Row;

use super::{placeholders, require_active_run, run_not_found, Store};
use crate::error::{invalid, Result, TrackingError};
use crate::validate;

/// Bytes per stored point.
const POINT: usize = 24;
/// Default and largest history page.
const DEFAULT_HISTORY_PAGE: usize = 100_000;
const MAX_HISTORY_PAGE: usize = 1_000_000;

/// Encodes points as a chunk.
pub fn encode_chunk(points: &[&pb::Metric]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * POINT);
    for p in points {
        out.extend_from_slice(&p.step.to_le_bytes());
        out.extend_from_slice(&p.timestamp.to_le_bytes());
        out.extend_from_slice(&p.value.to_le_bytes());
    }
    out
}

/// Decodes a chunk into (steps, timestamps, values), skipping the first `skip` points
/// and taking at most `take`.
pub fn decode_chunk(data: &[u8], skip: usize, take: usize, out: &mut pb::GetMetricHistoryResponse) {
    for p in data.chunks_exact(POINT).skip(skip).take(take) {
        let (s, rest) = p.split_at(8);
        let (t, v) = rest.split_at(8);
        out.steps
            .push(i64::from_le_bytes(s.try_into().unwrap_or_default()));
        out.timestamps
            .push(i64::from_le_bytes(t.try_into().unwrap_or_default()));
        out.values
            .push(f64::from_le_bytes(v.try_into().unwrap_or_default()));
    }
}

/// Whether `(step, timestamp, value)` of `a` is after `b`, MLflow's "latest" order.
fn newer(a: &pb::Metric, b: &pb::Metric) -> bool {
    (a.step, a.timestamp) > (b.step, b.timestamp)
        || ((a.step, a.timestamp) == (b.step, b.timestamp) && a.value.total_cmp(&b.value).is_gt())
}

/// The latest of a key's points in a batch.
fn latest_of<'a>(points: &[&'a pb::Metric]) -> &'a pb::Metric {
    let mut best = points[0];
    for p in &points[1..] {
        if newer(p, best) {
            best = p;
        }
    }
    best
}

/// Locks a run's row (`$1`) and renews its lease from now (`$2`), giving its
/// lifecycle stage: every write starts with it, because writing is a sign of life and
/// writers to one run then queue on this row.
const RENEW_LEASE: &str = "UPDATE runs SET lease_expires_at = CASE WHEN lease_seconds IS NULL \
     OR status != 'RUNNING' THEN lease_expires_at ELSE $2 + lease_seconds * 1000 END \
     WHERE run_id = $1 RETURNING lifecycle_stage";

// A NaN's latest value is stored as NULL (with `is_nan`), made NULL in SQL from the
// bound float: sqlx 0.8's Any driver sends a NULL `f64` typed as `real`, and a statement
// cached on a connection with that type then refuses the next real value ("incorrect
// binary data format") on PostgreSQL.

/// The `WHERE` of the latest-metric upsert: only a newer point replaces the stored one.
const NEWER_THAN_STORED: &str = "WHERE excluded.step > latest_metrics.step \
     OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
     OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp \
         AND excluded.is_nan = 0 AND (latest_metrics.is_nan = 1 OR excluded.value > latest_metrics.value))";

/// The error for a write to a deleted run.
fn deleted_run(run_id: &str) -> TrackingError {
    TrackingError::FailedPrecondition(format!(
        "run {run_id} is deleted; restore it before logging to it"
    ))
}

/// The error for a param logged again with another value.
fn param_changed(run_id: &str, key: &str, old: &str, new: &str) -> TrackingError {
    invalid(format!(
        "param `{key}` of run {run_id} was logged as `{old}` and cannot be changed to `{new}`: params are immutable"
    ))
}

impl Store {
    /// Metrics only, on PostgreSQL: the lease renewal, the chunks and the latest values
    /// in one statement (writable CTEs), one round trip and one commit instead of five.
    async fn log_metrics_pg(
        &self,
        run_id: &str,
        by_key: &BTreeMap<&str, Vec<&pb::Metric>>,
    ) -> Result<()> {
        let mut chunk_rows = vec![];
        let mut latest_rows = vec![];
        for i in 0..by_key.len() {
            let b = 3 + 7 * i;
            chunk_rows.push(format!(
                "(${b}::text, ${}::bigint, ${}::bytea)",
                b + 1,
                b + 2
            ));
            latest_rows.push(format!(
                "(${b}::text, ${}::double precision, ${}::bigint, ${}::bigint, ${}::bigint)",
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        let sql = format!(
            "WITH run AS ({RENEW_LEASE}), \
             live AS (SELECT 1 FROM run WHERE lifecycle_stage = 'active'), \
             chunks AS (INSERT INTO metric_chunks (run_id, key, n, data) SELECT $1, v.key, v.n, v.data \
               FROM (VALUES {}) AS v(key, n, data) WHERE EXISTS (SELECT 1 FROM live)), \
             latest AS (INSERT INTO latest_metrics (run_id, key, value, is_nan, timestamp, step) \
               SELECT $1, v.key, CASE WHEN v.is_nan = 1 THEN NULL ELSE v.value END, v.is_nan, v.ts, v.step \
               FROM (VALUES {}) AS v(key, value, is_nan, ts, step) \
               WHERE EXISTS (SELECT 1 FROM live) \
               ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
               timestamp = excluded.timestamp, step = excluded.step {NEWER_THAN_STORED}) \
             SELECT lifecycle_stage FROM run",
            chunk_rows.join(", "),
            latest_rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(run_id).bind(now_millis());
        for (key, points) in by_key {
            let best = latest_of(points);
            let nan = best.value.is_nan();
            q = q
                .bind(*key)
                .bind(points.len() as i64)
                .bind(encode_chunk(points))
                .bind(best.value)
                .bind(nan as i64)
                .bind(best.timestamp)
                .bind(best.step);
        }
        let row = q
            .fetch_optional(self.db.writer())
            .await?
            .ok_or_else(|| run_not_found(run_id))?;
        if row.get::<String, _>(0) != super::ACTIVE {
            return Err(TrackingError::FailedPrecondition(format!(
                "The run {run_id} must be in the 'active' state. Current state is deleted. \
                 Restore it before logging to it."
            )));
        }
        Ok(())
    }

    /// One param on PostgreSQL (`LogParam`): the lease renewal and the insert in one
    /// statement, one round trip and one commit instead of four. One param cannot be
    /// half-written; a value already there is read afterwards, in a new snapshot that
    /// sees a concurrent writer's.
    async fn log_param_pg(&self, run_id: &str, p: &pb::Param) -> Result<()> {
        let sql = format!(
            "WITH run AS ({RENEW_LEASE}), \
             ins AS (INSERT INTO params (run_id, key, value) SELECT $1, $3, $4 \
               WHERE EXISTS (SELECT 1 FROM run WHERE lifecycle_stage = 'active') \
               ON CONFLICT (run_id, key) DO NOTHING RETURNING 1) \
             SELECT lifecycle_stage, EXISTS (SELECT 1 FROM ins) FROM run"
        );
        let row = sqlx::query(&sql)
            .bind(run_id)
            .bind(now_millis())
            .bind(&p.key)
            .bind(&p.value)
            .fetch_optional(self.db.writer())
            .await?
            .ok_or_else(|| run_not_found(run_id))?;
        if row.get::<String, _>(0) != super::ACTIVE {
            return Err(deleted_run(run_id));
        }
        if row.get::<bool, _>(1) {
            return Ok(());
        }
        let old: String = sqlx::query("SELECT value FROM params WHERE run_id = $1 AND key = $2")
            .bind(run_id)
            .bind(&p.key)
            .fetch_one(self.db.writer())
            .await?
            .get(0);
        if old != p.value {
            return Err(param_changed(run_id, &p.key, &old, &p.value));
        }
        Ok(())
    }

    /// Writes metrics, params and tags in one transaction: all or nothing.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[pb::Metric],
        params: &[pb::Param],
        tags: &[pb::Tag],
    ) -> Result<()> {
        validate::run_id(run_id)?;
        validate::batch(metrics, params, tags)?;
        // Points linked to a logged model are recorded with it; the run's history
        // takes only those it does not have yet.
        let linked: Vec<&pb::Metric> = metrics.iter().filter(|m| !m.model_id.is_empty()).collect();
        let fresh = if linked.is_empty() {
            vec![]
        } else {
            self.link_model_metrics(run_id, &linked).await?
        };
        let metrics: Vec<&pb::Metric> = metrics
            .iter()
            .filter(|m| m.model_id.is_empty())
            .chain(fresh.iter())
            .collect();
        // Sorted keys: every writer locks rows in the same order, so concurrent
        // batches to one run queue up instead of deadlocking on PostgreSQL.
        let mut by_key: BTreeMap<&str, Vec<&pb::Metric>> = BTreeMap::new();
        for m in metrics.iter().copied() {
            by_key.entry(&m.key).or_default().push(m);
        }
        if self.db.backend() == mlops_storage::Backend::Postgres
            && params.is_empty()
            && tags.is_empty()
            && !by_key.is_empty()
        {
            self.log_metrics_pg(run_id, &by_key).await?;
            self.metrics.metric_points.inc_by(metrics.len() as u64);
            return Ok(());
        }
        if self.db.backend() == mlops_storage::Backend::Postgres
            && params.len() == 1
            && tags.is_empty()
            && by_key.is_empty()
        {
            return self.log_param_pg(run_id, &params[0]).await;
        }
        let mut params: Vec<&pb::Param> = params.iter().collect();
        params.sort_by(|a, b| a.key.cmp(&b.key));
        params.dedup_by(|a, b| a.key == b.key);
        let mut tags: Vec<&pb::Tag> = tags.iter().collect();
        tags.sort_by(|a, b| a.key.cmp(&b.key));

        let mut tx = self.db.begin().await?;
        // Locks the run row first (PostgreSQL) and renews its lease: writing is a sign of life.
        let row = sqlx::query(RENEW_LEASE)
            .bind(run_id)
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| run_not_found(run_id))?;
        if row.get::<String, _>(0) != super::ACTIVE {
            return Err(deleted_run(run_id));
        }

        if !params.is_empty() {
            let sql = format!(
                "INSERT INTO params (run_id, key, value) VALUES {} ON CONFLICT (run_id, key) DO NOTHING RETURNING key",
                (0..params.len()).map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i)).collect::<Vec<_>>().join(", ")
            );
            let mut q = sqlx::query(&sql).bind(run_id);
            for p in &params {
                q = q.bind(&p.key).bind(&p.value);
            }
            let inserted: Vec<String> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let existing: Vec<&&pb::Param> = params
                .iter()
                .filter(|p| !inserted.contains(&p.key))
                .collect();
            if !existing.is_empty() {
                let sql = format!(
                    "SELECT key, value FROM params WHERE run_id = $1 AND key IN ({})",
                    placeholders(2, existing.len())
                );
                let mut q = sqlx::query(&sql).bind(run_id);
                for p in &existing {
                    q = q.bind(&p.key);
                }
                for r in q.fetch_all(&mut *tx).await? {
                    let (key, old): (String, String) = (r.get(0), r.get(1));
                    if let Some(p) = existing.iter().find(|p| p.key == key) {
                        if p.value != old {
                            // Dropping `tx` rolls back everything written so far.
                            return Err(param_changed(run_id, &key, &old, &p.value));
                        }
                    }
                }
            }
        }

        if !tags.is_empty() {
            // One row per key (the last value wins), or PostgreSQL refuses the upsert.
            let mut last: BTreeMap<&str, &str> = BTreeMap::new();
            for t in &tags {
                last.insert(&t.key, &t.value);
            }
            let sql = format!(
                "INSERT INTO tags (run_id, key, value) VALUES {} ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                (0..last.len()).map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i)).collect::<Vec<_>>().join(", ")
            );
            let mut q = sqlx::query(&sql).bind(run_id);
            for (k, v) in &last {
                q = q.bind(*k).bind(*v);
            }
            q.execute(&mut *tx).await?;
            // MLflow's run name tag names the run, in the same transaction.
            if let Some(name) = last.get("mlflow.runName") {
                if name.chars().count() > validate::MAX_RUN_NAME_LEN {
                    return Err(invalid(format!(
                        "the mlflow.runName tag is longer than {} characters",
                        validate::MAX_RUN_NAME_LEN
                    )));
                }
                sqlx::query("UPDATE runs SET run_name = $1 WHERE run_id = $2")
                    .bind(*name)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }

        if !by_key.is_empty() {
            let chunks = format!(
                "INSERT INTO metric_chunks (run_id, key, n, data) VALUES {}",
                (0..by_key.len())
                    .map(|i| format!("($1, ${}, ${}, ${})", 2 + 3 * i, 3 + 3 * i, 4 + 3 * i))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(&chunks).bind(run_id);
            for (key, points) in &by_key {
                q = q
                    .bind(*key)
                    .bind(points.len() as i64)
                    .bind(encode_chunk(points));
            }
            q.execute(&mut *tx).await?;

            let latest = format!(
                "INSERT INTO latest_metrics (run_id, key, value, is_nan, timestamp, step) VALUES {} \
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, \
                 timestamp = excluded.timestamp, step = excluded.step {NEWER_THAN_STORED}",
                (0..by_key.len())
                    .map(|i| {
                        let b = 2 + 5 * i;
                        format!(
                            "($1, ${b}, CASE WHEN ${} = 1 THEN NULL ELSE ${} END, ${}, ${}, ${})",
                            b + 2,
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(&latest).bind(run_id);
            for (key, points) in &by_key {
                let best = latest_of(points);
                let nan = best.value.is_nan();
                q = q
                    .bind(*key)
                    .bind(best.value)
                    .bind(nan as i64)
                    .bind(best.timestamp)
                    .bind(best.step);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.metrics.metric_points.inc_by(metrics.len() as u64);
        Ok(())
    }

    /// Deletes a run's tag.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        validate::run_id(run_id)?;
        validate::key("tag", key)?;
        let mut tx = self.db.begin().await?;
        require_active_run(&mut tx, run_id, self.for_update()).await?;
        let n = sqlx::query("DELETE FROM tags WHERE run_id = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(TrackingError::NotFound(format!(
                "No tag with name: {key} in run with id {run_id}"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the datasets a run used; a dataset is stored once per experiment
    /// (by name and digest) and linked to each run with its context.
    pub async fn log_inputs(
        &self,
        run_id: &str,
        inputs: &[pb::DatasetInput],
        models: &[pb::ModelInput],
    ) -> Result<()> {
        validate::run_id(run_id)?;
        for (i, m) in models.iter().enumerate() {
            super::logged_models::check_model_id(&m.model_id)
                .map_err(|e| invalid(format!("models[{i}]: {e}")))?;
        }
        for (i, input) in inputs.iter().enumerate() {
            let d = input
                .dataset
                .as_ref()
                .ok_or_else(|| invalid(format!("datasets[{i}] has no dataset")))?;
            if d.name.is_empty() || d.digest.is_empty() {
                return Err(invalid(format!("datasets[{i}] needs a name and a digest")));
            }
            for (field, v, limit) in [
                ("name", &d.name, 500),
                ("digest", &d.digest, 36),
                ("source_type", &d.source_type, 36),
            ] {
                if v.chars().count() > limit {
                    return Err(invalid(format!(
                        "datasets[{i}].{field} is longer than {limit} characters"
                    )));
                }
            }
            for t in &input.tags {
                validate::key("input tag", &t.key)?;
            }
        }
        let mut tx = self.db.begin().await?;
        require_active_run(&mut tx, run_id, self.for_update()).await?;
        let eid: i64 = sqlx::query("SELECT experiment_id FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        for input in inputs {
            let Some(d) = input.dataset.as_ref() else {
                continue;
            };
            let dataset_id: String = match sqlx::query("SELECT dataset_id FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3")
                .bind(eid)
                .bind(&d.name)
                .bind(&d.digest)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(r) => r.get(0),
                None => {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    sqlx::query(
                        "INSERT INTO datasets (dataset_id, experiment_id, name, digest, source_type, source, schema, profile) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&id)
                    .bind(eid)
                    .bind(&d.name)
                    .bind(&d.digest)
                    .bind(&d.source_type)
                    .bind(&d.source)
                    .bind(&d.schema)
                    .bind(&d.profile)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
            };
            let mut context = input.context.clone();
            let mut tags: Vec<(String, String)> = vec![];
            for t in &input.tags {
                if t.key == "mlflow.data.context" && context.is_empty() {
                    context = t.value.clone();
                }
                tags.push((t.key.clone(), t.value.clone()));
            }
            if !context.is_empty() && !tags.iter().any(|(k, _)| k == "mlflow.data.context") {
                tags.push(("mlflow.data.context".into(), context.clone()));
            }
            sqlx::query(
                "INSERT INTO run_inputs (run_id, dataset_id, context, tags) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, dataset_id) DO UPDATE SET context = excluded.context, tags = excluded.tags",
            )
            .bind(run_id)
            .bind(&dataset_id)
            .bind(&context)
            .bind(serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        }
        for m in models {
            let found = sqlx::query("SELECT 1 FROM logged_models WHERE model_id = $1")
                .bind(&m.model_id)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(TrackingError::NotFound(format!(
                    "Logged model with ID '{}' not found.",
                    m.model_id
                )));
            }
            sqlx::query(
                "INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) \
                 ON CONFLICT (run_id, model_id) DO NOTHING",
            )
            .bind(run_id)
            .bind(&m.model_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One page of a metric's history, in logging order.
    pub async fn metric_history(
        &self,
        req: &pb::GetMetricHistoryRequest,
    ) -> Result<pb::GetMetricHistoryResponse> {
        validate::run_id(&req.run_id)?;
        validate::key("metric", &req.metric_key)?;
        let page = match req.max_results {
            0 => DEFAULT_HISTORY_PAGE,
            n if n < 0 => return Err(invalid(format!("max_results must be positive, got {n}"))),
            n if n as usize > MAX_HISTORY_PAGE => {
                return Err(invalid(format!(
                    "max_results {n} is over the limit of {MAX_HISTORY_PAGE} points"
                )))
            }
            n => n as usize,
        };
        let (from_id, mut skip) = parse_history_token(&req.page_token)?;
        let exists = sqlx::query("SELECT 1 FROM runs WHERE run_id = $1")
            .bind(&req.run_id)
            .fetch_optional(self.db.reader())
            .await?;
        if exists.is_none() {
            return Err(run_not_found(&req.run_id));
        }
        let rows = sqlx::query(
            "SELECT id, n, data FROM metric_chunks WHERE run_id = $1 AND key = $2 AND id >= $3 ORDER BY id",
        )
        .bind(&req.run_id)
        .bind(&req.metric_key)
        .bind(from_id)
        .fetch_all(self.db.reader())
        .await?;
        let mut out = pb::GetMetricHistoryResponse::default();
        let total: usize = rows
            .iter()
            .map(|r| r.get::<i64, _>(1) as usize)
            .sum::<usize>()
            .saturating_sub(skip);
        let want = total.min(page);
        out.steps.reserve(want);
        out.timestamps.reserve(want);
        out.values.reserve(want);
        for r in &rows {
            let (id, n): (i64, i64) = (r.get(0), r.get(1));
            let left = page - out.values.len();
            if left == 0 {
                out.next_page_token = format!("{id}:{skip}");
                break;
            }
            let data: Vec<u8> = r.get(2);
            let available = (n as usize).saturating_sub(skip);
            decode_chunk(&data, skip, left, &mut out);
            if available > left {
                out.next_page_token = format!("{id}:{}", skip + left);
                break;
            }
            skip = 0;
        }
        Ok(out)
    }
}

fn parse_history_token(token: &str) -> Result<(i64, usize)> {
    if token.is_empty() {
        return Ok((0, 0));
    }
    token
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| {
            invalid(format!(
                "page_token `{token}` is not a token this server issued"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_round_trip_with_skip_and_nan() {
        let pts: Vec<pb::Metric> = (0..5)
            .map(|i| pb::Metric {
                key: "k".into(),
                value: if i == 2 { f64::NAN } else { i as f64 },
                timestamp: 100 + i,
                step: i,
                ..Default::default()
            })
            .collect();
        let refs: Vec<&pb::Metric> = pts.iter().collect();
        let data = encode_chunk(&refs);
        assert_eq!(data.len(), 5 * POINT);
        let mut out = pb::GetMetricHistoryResponse::default();
        decode_chunk(&data, 1, 3, &mut out);
        assert_eq!(out.steps, [1, 2, 3]);
        assert_eq!(out.timestamps, [101, 102, 103]);
        assert!(out.values[1].is_nan());
        assert_eq!(out.values[2], 3.0);
    }

    #[test]
    fn latest_order() {
        let m = |step, timestamp, value| pb::Metric {
            key: "k".into(),
            value,
            timestamp,
            step,
            ..Default::default()
        };
        assert!(newer(&m(2, 0, 0.0), &m(1, 9, 9.0)));
        assert!(newer(&m(1, 2, 0.0), &m(1, 1, 9.0)));
        assert!(newer(&m(1, 1, 2.0), &m(1, 1, 1.0)));
        assert!(!newer(&m(1, 1, 1.0), &m(1, 1, 1.0)));
        assert_eq!(parse_history_token("12:3").unwrap(), (12, 3));
        assert!(parse_history_token("x").is_err());
    }
}
