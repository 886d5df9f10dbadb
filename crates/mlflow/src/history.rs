//! Metric histories. [`metric_history`] reads a run's history of a metric from
//! tracking, page after page; the `metrics/get-history` endpoint answers with it.
//! [`bulk_interval`] serves `GET /api/2.0/mlflow/metrics/get-history-bulk-interval`:
//! one metric of up to 100 runs, each sampled to at most `max_results` points over a
//! step range (MLflow's UI draws its charts from it). Tracking serves the full
//! histories; the sampling is that of MLflow's SQL store
//! (`SqlAlchemyStore.get_metric_history_bulk_interval`).

use axum::extract::State;
use axum::Json;
use mlops_proto::tracking::v1 as pb;
use serde::Serialize;
use serde_json::{json, Value};

use crate::entities::Metric;
use crate::error::{ApiError, Result};
use crate::json::{float, Params};
use crate::state::{AppState, Auth};

/// Most runs per request (MLflow's `MAX_RUNS_GET_METRIC_HISTORY_BULK`).
const MAX_RUNS: usize = 100;
/// Most sampled steps per run (MLflow's `MAX_RESULTS_PER_RUN`), also the default.
const MAX_RESULTS_PER_RUN: i64 = 2500;

/// A point of one run's metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    key: String,
    #[serde(serialize_with = "float")]
    value: f64,
    timestamp: i64,
    step: i64,
    run_id: String,
}

/// The sort key of a point, as MLflow's SQL store orders them: step, time, value
/// (a NaN is stored as 0 and flagged), then the NaN flag.
fn order_key(m: &Metric) -> (i64, i64, f64, bool) {
    let nan = m.value.is_nan();
    (m.step, m.timestamp, if nan { 0.0 } else { m.value }, nan)
}

/// The first index of each of `n` buckets over `total` items, as SQL's `NTILE(n)`
/// splits them (the first `total % n` buckets hold one more item).
pub fn ntile_starts(total: usize, n: usize) -> Vec<usize> {
    if total <= n {
        return (0..total).collect();
    }
    let (q, r) = (total / n, total % n);
    (0..n).map(|i| i * q + i.min(r)).collect()
}

/// The points of one run's history to answer: those in `range` (steps, inclusive),
/// ordered, sampled to at most `max_results` by MLflow's SQL store's rule: the first
/// point of each of `max_results` equal buckets, and the last point always (it
/// replaces the last sample when the answer is full).
pub fn sample_run(
    run_id: &str,
    history: Vec<Metric>,
    max_results: usize,
    range: Option<(i64, i64)>,
) -> Vec<Point> {
    let mut points: Vec<Metric> = history
        .into_iter()
        .filter(|m| range.is_none_or(|(a, b)| (a..=b).contains(&m.step)))
        .collect();
    points.sort_by(|a, b| {
        order_key(a)
            .partial_cmp(&order_key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let Some(last) = points.len().checked_sub(1) else {
        return vec![];
    };
    let max_results = max_results.max(1);
    let mut picked = ntile_starts(points.len(), max_results);
    if picked.last() != Some(&last) {
        if picked.len() >= max_results {
            picked.pop();
        }
        picked.push(last);
    }
    picked
        .into_iter()
        .map(|i| {
            let m = &points[i];
            Point {
                key: m.key.clone(),
                value: m.value,
                timestamp: m.timestamp,
                step: m.step,
                run_id: run_id.to_owned(),
            }
        })
        .collect()
}

/// The handler.
pub async fn bulk_interval(
    State(s): State<AppState>,
    auth: Auth,
    p: Params,
) -> Result<Json<Value>> {
    let run_ids = p.strings("run_ids")?;
    if run_ids.is_empty() {
        return Err(p.missing("run_ids"));
    }
    if run_ids.len() > MAX_RUNS {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS} run_ids. \
             Received {} run_ids.",
            run_ids.len()
        )));
    }
    let key = p.required_string("metric_key")?;
    let max_results = p.opt_i64("max_results")?.unwrap_or(MAX_RESULTS_PER_RUN);
    if !(1..=MAX_RESULTS_PER_RUN).contains(&max_results) {
        return Err(ApiError::invalid(format!(
            "max_results must be between 1 and {MAX_RESULTS_PER_RUN}."
        )));
    }
    let range = match (p.opt_i64("start_step")?, p.opt_i64("end_step")?) {
        (Some(a), Some(b)) if a > b => {
            return Err(ApiError::invalid(format!(
                "end_step must be greater than start_step. Found start_step={a} and end_step={b}."
            )))
        }
        (Some(a), Some(b)) => Some((a, b)),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "If either start step or end step are specified, both must be specified.",
            ))
        }
    };
    let mut points = vec![];
    for run_id in &run_ids {
        let (history, _) = metric_history(&s, &auth, run_id, &key, 0, String::new(), false).await?;
        points.extend(sample_run(run_id, history, max_results as usize, range));
    }
    if points.is_empty() {
        return Ok(crate::json::empty());
    }
    Ok(Json(json!({ "metrics": points })))
}

/// Every point of a run's metric, page after page (`max_results` per page, 0 for
/// tracking's default), or one page when `one_page`.
pub async fn metric_history(
    s: &AppState,
    auth: &Auth,
    run_id: &str,
    key: &str,
    max_results: i32,
    page_token: String,
    one_page: bool,
) -> Result<(Vec<Metric>, String)> {
    let mut points = vec![];
    let mut token = page_token;
    loop {
        let page = s
            .tracking()
            .get_metric_history(auth.request(pb::GetMetricHistoryRequest {
                run_id: run_id.to_owned(),
                metric_key: key.to_owned(),
                max_results,
                page_token: token,
            }))
            .await?
            .into_inner();
        let n = page
            .steps
            .len()
            .min(page.timestamps.len())
            .min(page.values.len());
        points.extend((0..n).map(|i| {
            Metric::new(
                key.to_owned(),
                page.values[i],
                page.timestamps[i],
                page.steps[i],
            )
        }));
        token = page.next_page_token;
        if one_page || token.is_empty() {
            return Ok((points, token));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(points: &[(i64, i64, f64)]) -> Vec<Metric> {
        points
            .iter()
            .map(|&(step, ts, v)| Metric::new("m".into(), v, ts, step))
            .collect()
    }

    fn steps(points: &[Point]) -> Vec<(i64, i64)> {
        points.iter().map(|p| (p.step, p.timestamp)).collect()
    }

    #[test]
    fn buckets_split_like_sql_ntile() {
        assert_eq!(ntile_starts(0, 5), Vec::<usize>::new());
        assert_eq!(ntile_starts(3, 5), vec![0, 1, 2]);
        // 10 rows in 4 buckets: sizes 3, 3, 2, 2.
        assert_eq!(ntile_starts(10, 4), vec![0, 3, 6, 8]);
        assert_eq!(ntile_starts(10, 1), vec![0]);
    }

    #[test]
    fn a_run_is_sampled_like_mlflows_sql_store() {
        // 99 points: steps 0..=96 at ts 1000+step, and two more at step 3 logged later.
        let mut pts: Vec<(i64, i64, f64)> = (0..97).map(|i| (i, 1000 + i, i as f64)).collect();
        pts.push((3, 5000, 5.0));
        pts.push((3, 5001, 6.0));
        let got = sample_run("r", history(&pts), 10, None);
        // What MLflow 3.17's server answers for this history (NTILE(10), last row kept).
        let want: Vec<i64> = vec![0, 8, 18, 28, 38, 48, 58, 68, 78, 96];
        assert_eq!(got.iter().map(|p| p.step).collect::<Vec<_>>(), want);
        let got = sample_run("r", history(&pts), 7, Some((10, 60)));
        assert_eq!(
            got.iter().map(|p| p.step).collect::<Vec<_>>(),
            vec![10, 18, 26, 33, 40, 47, 60]
        );
        let got = sample_run("r", history(&pts), 1, None);
        assert_eq!(steps(&got), vec![(96, 1096)]);
        // Everything fits: all points, ordered by step then time.
        let got = sample_run("r", history(&pts), 2500, Some((2, 4)));
        assert_eq!(
            steps(&got),
            vec![(2, 1002), (3, 1003), (3, 5000), (3, 5001), (4, 1004)]
        );
        assert!(sample_run("r", vec![], 10, None).is_empty());
        let v = serde_json::to_value(&got[0]).unwrap();
        assert_eq!(
            v,
            json!({"key": "m", "value": 2.0, "timestamp": 1002, "step": 2, "run_id": "r"})
        );
    }
}
