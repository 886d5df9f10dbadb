//! Evaluations of versions and the evaluation gate's stored results.

use std::collections::BTreeMap;

use mlops_proto::events::v1 as ev;
use mlops_proto::registry::v1 as pb;
use mlops_storage::now_millis;
use prost::Message;
use sqlx::Row;

use super::{event, Store, READY};
use crate::error::{invalid, precondition, Result};
use crate::gate::{self, MetricValues, Valued};
use crate::validate;

/// Longest dataset name.
const MAX_DATASET_LEN: usize = 500;

impl Store {
    /// Records metrics of a version on a dataset.
    pub async fn log_evaluation(&self, req: &pb::LogEvaluationRequest) -> Result<pb::Evaluation> {
        validate::version(req.version)?;
        if req.dataset.trim().is_empty() {
            return Err(invalid(
                "dataset is required: name the data the metrics were computed on, like `holdout-2026-11`",
            ));
        }
        if req.dataset.chars().count() > MAX_DATASET_LEN {
            return Err(invalid(format!(
                "dataset name is longer than {MAX_DATASET_LEN} characters"
            )));
        }
        if req.metrics.is_empty() {
            return Err(invalid("metrics must hold at least one metric"));
        }
        for (k, v) in &req.metrics {
            if k.trim().is_empty() {
                return Err(invalid("metric names must not be empty"));
            }
            if !v.is_finite() {
                return Err(invalid(format!(
                    "metric `{k}` is {v}; evaluation metrics must be finite numbers"
                )));
            }
        }
        let metrics: BTreeMap<&String, &f64> = req.metrics.iter().collect();
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, &req.name, true).await?;
        self.version_status(&mut tx, &id, &req.name, req.version)
            .await?;
        let row = sqlx::query(
            "INSERT INTO model_evaluations (model_id, version, dataset, dataset_digest, metrics, timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&id)
        .bind(req.version)
        .bind(&req.dataset)
        .bind(&req.dataset_digest)
        .bind(serde_json::to_string(&metrics).unwrap_or_else(|_| "{}".into()))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pb::Evaluation {
            id: row.get(0),
            version: req.version,
            dataset: req.dataset.clone(),
            dataset_digest: req.dataset_digest.clone(),
            metrics: req.metrics.clone(),
            timestamp: now,
        })
    }

    /// A version's evaluations, newest first.
    pub async fn list_evaluations(&self, name: &str, version: i64) -> Result<Vec<pb::Evaluation>> {
        validate::version(version)?;
        let mut conn = self.db.reader().acquire().await?;
        let id = self.model_id(&mut conn, name, false).await?;
        self.version_status(&mut conn, &id, name, version).await?;
        let rows = sqlx::query(
            "SELECT id, version, dataset, dataset_digest, metrics, timestamp FROM model_evaluations \
             WHERE model_id = $1 AND version = $2 ORDER BY id DESC",
        )
        .bind(&id)
        .bind(version)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .iter()
            .map(|r| pb::Evaluation {
                id: r.get(0),
                version: r.get(1),
                dataset: r.get(2),
                dataset_digest: r.get(3),
                metrics: serde_json::from_str(&r.get::<String, _>(4)).unwrap_or_default(),
                timestamp: r.get(5),
            })
            .collect())
    }

    /// A version's metric values for the gate: each metric's newest evaluation (on
    /// `dataset` when given), then, for metrics no evaluation has, the run's metrics
    /// captured at registration (only when no dataset is named).
    async fn metric_values(
        &self,
        conn: &mut sqlx::AnyConnection,
        model_id: &str,
        version: i64,
        dataset: &str,
    ) -> Result<MetricValues> {
        let rows = sqlx::query(
            "SELECT dataset, metrics FROM model_evaluations WHERE model_id = $1 AND version = $2 \
             AND ($3 = '' OR dataset = $3) ORDER BY id DESC",
        )
        .bind(model_id)
        .bind(version)
        .bind(dataset)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = MetricValues::new();
        for r in &rows {
            let ds: String = r.get(0);
            let m: BTreeMap<String, f64> =
                serde_json::from_str(&r.get::<String, _>(1)).unwrap_or_default();
            for (k, v) in m {
                out.entry(k).or_insert_with(|| Valued {
                    value: v,
                    source: format!("evaluation:{ds}"),
                });
            }
        }
        if dataset.is_empty() {
            let lineage: Option<Vec<u8>> = sqlx::query(
                "SELECT lineage FROM model_versions WHERE model_id = $1 AND version = $2",
            )
            .bind(model_id)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?
            .and_then(|r| r.get(0));
            if let Some(l) = lineage.and_then(|b| pb::Lineage::decode(b.as_slice()).ok()) {
                for m in l.metrics {
                    if m.value.is_finite() {
                        out.entry(m.key).or_insert(Valued {
                            value: m.value,
                            source: "run".into(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The evaluation gate: validates, stores the result with its event, answers it.
    pub async fn validate_candidate(
        &self,
        req: &pb::ValidateCandidateRequest,
    ) -> Result<pb::GateResult> {
        use pb::validate_candidate_request::Baseline;
        validate::version(req.candidate_version)?;
        let has_baseline = match &req.baseline {
            Some(Baseline::BaselineVersion(v)) => {
                validate::version(*v)?;
                true
            }
            Some(Baseline::BaselineAlias(a)) => {
                if a.is_empty() {
                    return Err(invalid(
                        "baseline_alias is empty; name an alias or leave the baseline unset",
                    ));
                }
                true
            }
            None => false,
        };
        gate::check_thresholds(&req.thresholds, has_baseline)?;
        let name = &req.name;
        let candidate = req.candidate_version;
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let id = self.model_id(&mut tx, name, true).await?;
        let status = self.version_status(&mut tx, &id, name, candidate).await?;
        if status != READY {
            return Err(precondition(format!(
                "model `{name}` version {candidate} is {status}; only READY versions can be validated"
            )));
        }
        let (baseline, baseline_alias) = match &req.baseline {
            Some(Baseline::BaselineVersion(v)) => {
                self.version_status(&mut tx, &id, name, *v).await?;
                (*v, String::new())
            }
            Some(Baseline::BaselineAlias(a)) => {
                let v: i64 = sqlx::query(
                    "SELECT version FROM model_aliases WHERE model_id = $1 AND alias = $2",
                )
                .bind(&id)
                .bind(a)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0))
                .ok_or_else(|| {
                    crate::error::RegistryError::NotFound(format!(
                        "baseline alias `{a}` is not set on model `{name}`"
                    ))
                })?;
                (v, a.clone())
            }
            None => (0, String::new()),
        };
        if baseline == candidate {
            return Err(invalid(format!(
                "the baseline is version {candidate} itself; compare with another version"
            )));
        }
        let cand_values = self
            .metric_values(&mut tx, &id, candidate, &req.dataset)
            .await?;
        let base_values = if baseline > 0 {
            Some(
                self.metric_values(&mut tx, &id, baseline, &req.dataset)
                    .await?,
            )
        } else {
            None
        };
        let cand_label = format!("version {candidate}");
        let base_label = if baseline_alias.is_empty() {
            format!("version {baseline}")
        } else {
            format!("version {baseline} (alias `{baseline_alias}`)")
        };
        gate::check_present(
            &req.thresholds,
            &cand_values,
            &cand_label,
            base_values.as_ref().map(|b| (b, base_label.as_str())),
        )
        .map_err(|e| {
            if req.dataset.is_empty() {
                e
            } else {
                precondition(format!(
                    "{e} (looking only at evaluations on dataset `{}`)",
                    req.dataset
                ))
            }
        })?;
        let verdicts = gate::evaluate(&req.thresholds, &cand_values, base_values.as_ref());
        let passed = verdicts.iter().all(|v| v.passed);
        let summary = gate::summary(&verdicts);
        let mut result = pb::GateResult {
            id: 0,
            name: name.clone(),
            candidate_version: candidate,
            baseline_version: baseline,
            baseline_alias,
            passed,
            metrics: verdicts,
            summary: summary.clone(),
            timestamp: now,
            dataset: req.dataset.clone(),
        };
        let gid: i64 = sqlx::query(
            "INSERT INTO gate_results (model_id, candidate_version, baseline_version, passed, result, timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&id)
        .bind(candidate)
        .bind(baseline)
        .bind(passed as i64)
        .bind(result.encode_to_vec())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        result.id = gid;
        sqlx::query("UPDATE gate_results SET result = $1 WHERE id = $2")
            .bind(result.encode_to_vec())
            .bind(gid)
            .execute(&mut *tx)
            .await?;
        let subject = format!("{name}/{candidate}");
        let env = if passed {
            event(
                &id,
                subject,
                &ev::GatePassed {
                    model_id: id.clone(),
                    name: name.clone(),
                    candidate_version: candidate,
                    baseline_version: baseline,
                    result_id: gid,
                    summary,
                },
            )
        } else {
            event(
                &id,
                subject,
                &ev::GateFailed {
                    model_id: id.clone(),
                    name: name.clone(),
                    candidate_version: candidate,
                    baseline_version: baseline,
                    result_id: gid,
                    summary,
                    failed_metrics: result
                        .metrics
                        .iter()
                        .filter(|m| !m.passed)
                        .map(|m| m.metric.clone())
                        .collect(),
                },
            )
        };
        let _enqueued = self.outbox.enqueue(&mut tx, &env).await?;
        tx.commit().await?;
        self.metrics
            .gate_evaluations
            .with_label_values(&[if passed { "passed" } else { "failed" }])
            .inc();
        Ok(result)
    }

    /// Gate results of a model (or one version), newest first.
    pub async fn list_gate_results(&self, name: &str, version: i64) -> Result<Vec<pb::GateResult>> {
        let mut conn = self.db.reader().acquire().await?;
        let id = self.model_id(&mut conn, name, false).await?;
        if version != 0 {
            validate::version(version)?;
            self.version_status(&mut conn, &id, name, version).await?;
        }
        let rows = sqlx::query(
            "SELECT result FROM gate_results WHERE model_id = $1 AND ($2 = 0 OR candidate_version = $2) \
             ORDER BY id DESC",
        )
        .bind(&id)
        .bind(version)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| pb::GateResult::decode(r.get::<Vec<u8>, _>(0).as_slice()).ok())
            .map(|mut g| {
                g.name = name.to_owned();
                g
            })
            .collect())
    }
}
