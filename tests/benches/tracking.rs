//! `make bench`: the tracking service over gRPC on loopback, on SQLite and on
//! PostgreSQL. Prints a table and writes JSON lines (`MLOPS_BENCH_DIR/ours-<backend>.jsonl`) shaped like
//! `../shared/bench/peers/` results, so `summarize.py` sets MLflow's figures beside ours.
//!
//! Workloads:
//! - peer: exactly `mlflow_tracking.py`'s defaults (200 runs with 10 params and 5
//!   metrics logged one call each; 20,000 points in `LogBatch`es of 1,000; 20 searches
//!   `metrics.m0 > 0.5 and params.p0 = 'a'` with max_results 1000; 5 history reads);
//! - scale: `LogBatch` of 1,000 points into one run; runs created with 10 params and
//!   5 metrics in one batch; search p50/p99 over 10,000 runs; a 1,000,000-point history.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::{Duration, Instant};

use mlops_proto::tracking::v1 as pb;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_tests::bench::{env_usize, lat, out_dir};
use mlops_tests::{Database, Sandbox};
use serde_json::json;
use tonic::transport::Channel;

type Client = TrackingServiceClient<Channel>;
const BASE: i64 = 1_700_000_000_000;

/// A small deterministic generator (splitmix64), so every run logs the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn new_experiment(c: &mut Client, name: &str) -> String {
    c.create_experiment(pb::CreateExperimentRequest {
        name: format!("{name}-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .experiment_id
}

async fn new_run(c: &mut Client, exp: &str, start: i64, name: String) -> String {
    c.create_run(pb::CreateRunRequest {
        experiment_id: exp.into(),
        start_time: Some(start),
        run_name: name,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .run
    .unwrap()
    .info
    .unwrap()
    .run_id
}

fn p_values(rng: &mut Rng) -> Vec<String> {
    (0..10)
        .map(|j| {
            if j == 0 {
                ["a", "b", "c", "d"][(rng.next() % 4) as usize].to_owned()
            } else {
                format!("v{}", rng.next() % 1000)
            }
        })
        .collect()
}

/// The peer workload, call for call (one RPC per param and per metric in (a)).
async fn peer(c: &mut Client, backend: &str) -> serde_json::Value {
    let mut rng = Rng(42);
    let runs = 200;
    let exp = new_experiment(c, "peer").await;
    let mut expected = 0;
    let t0 = Instant::now();
    let mut log_time = Duration::ZERO;
    for i in 0..runs {
        let r = new_run(c, &exp, BASE + i, format!("run-{i:05}")).await;
        let p = p_values(&mut rng);
        let m: Vec<f64> = (0..5).map(|_| rng.f64()).collect();
        if m[0] > 0.5 && p[0] == "a" {
            expected += 1;
        }
        let tl = Instant::now();
        for (j, v) in p.iter().enumerate() {
            c.log_param(pb::LogParamRequest {
                run_id: r.clone(),
                param: Some(pb::Param {
                    key: format!("p{j}"),
                    value: v.clone(),
                }),
            })
            .await
            .unwrap();
        }
        for (k, v) in m.iter().enumerate() {
            c.log_metric(pb::LogMetricRequest {
                run_id: r.clone(),
                metric: Some(pb::Metric {
                    key: format!("m{k}"),
                    value: *v,
                    timestamp: BASE + i,
                    step: 0,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        }
        log_time += tl.elapsed();
        c.update_run(pb::UpdateRunRequest {
            run_id: r,
            status: pb::RunStatus::Finished as i32,
            end_time: Some(BASE + i + 1),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let ta = t0.elapsed().as_secs_f64();

    let rb = new_run(c, &exp, BASE, "batch-run".into()).await;
    let loss: Vec<f64> = (0..20_000).map(|_| rng.f64()).collect();
    let t0 = Instant::now();
    for s in (0..20_000).step_by(1000) {
        let metrics = (s..s + 1000)
            .map(|t| pb::Metric {
                key: "loss".into(),
                value: loss[t],
                timestamp: BASE + t as i64,
                step: t as i64,
                ..Default::default()
            })
            .collect();
        c.log_batch(pb::LogBatchRequest {
            run_id: rb.clone(),
            metrics,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let tb = t0.elapsed().as_secs_f64();

    let filter = "metrics.m0 > 0.5 and params.p0 = 'a'";
    let mut search = vec![];
    let mut matches = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let r = c
            .search_runs(pb::SearchRunsRequest {
                experiment_ids: vec![exp.clone()],
                filter: filter.into(),
                max_results: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        search.push(t.elapsed());
        matches = r.runs.len();
    }
    let mut hist = vec![];
    let mut sum_ok = false;
    for _ in 0..5 {
        let t = Instant::now();
        let h = c
            .get_metric_history(pb::GetMetricHistoryRequest {
                run_id: rb.clone(),
                metric_key: "loss".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        hist.push(t.elapsed());
        sum_ok = h.values.len() == 20_000
            && (h.values.iter().sum::<f64>() - loss.iter().sum::<f64>()).abs() < 1e-6;
    }
    json!({
        "bench": "mlflow_tracking",
        "system": "mlops (gRPC, Rust client)",
        "workload": {"runs": runs, "params_per_run": 10, "metrics_per_run": 5, "points": 20000, "batch": 1000, "backend": backend},
        "a_runs": {"seconds": ta, "runs_per_s": runs as f64 / ta, "log_calls_per_s": 3000.0 / log_time.as_secs_f64(), "all_api_calls_per_s": 3401.0 / ta},
        "b_log_batch": {"seconds": tb, "points_per_s": 20_000.0 / tb},
        "c_search_runs": {"filter": filter, "matches": matches, "expected_matches": expected, "latency": lat(&search)},
        "d_metric_history": {"points_returned": 20000, "values_match": sum_ok, "first_call_ms": hist[0].as_secs_f64() * 1000.0, "latency": lat(&hist)},
        "ok": matches == expected && sum_ok,
    })
}

/// `filter` and clauses that every run of the search workload passes, 100 in all.
fn hundred_clauses(filter: &str) -> String {
    let mut clauses = vec![filter.to_owned()];
    let mut i = 0;
    while clauses.len() < 99 {
        clauses.push(match i % 3 {
            0 => format!("params.p{} != 'none-{i}'", i % 10),
            1 => format!("metrics.m{} > -{}", i % 5, i + 1),
            _ => format!("attributes.run_name != 'none-{i}'"),
        });
        i += 1;
    }
    clauses.join(" and ")
}

/// The workloads at scale.
async fn scale(sb: &Sandbox, c: &mut Client, backend: &str) -> serde_json::Value {
    let mut rng = Rng(7);
    let exp = new_experiment(c, "scale").await;

    // Ingest: LogBatch of 1000 points into one run, one client, then 4 clients.
    let batches = env_usize("BENCH_INGEST_BATCHES", 300);
    let r = new_run(c, &exp, BASE, "ingest".into()).await;
    let t0 = Instant::now();
    for b in 0..batches {
        let metrics = (0..1000)
            .map(|i| pb::Metric {
                key: "loss".into(),
                value: rng.f64(),
                timestamp: BASE + i,
                step: (b * 1000) as i64 + i,
                ..Default::default()
            })
            .collect();
        c.log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let ingest_1 = (batches * 1000) as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut tasks = vec![];
    for w in 0..4 {
        let mut c = sb.tracking_client().await;
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..batches / 4 {
                let metrics = (0..1000)
                    .map(|i| pb::Metric {
                        key: format!("w{w}"),
                        value: i as f64,
                        timestamp: BASE + i,
                        step: (b * 1000) as i64 + i,
                        ..Default::default()
                    })
                    .collect();
                c.log_batch(pb::LogBatchRequest {
                    run_id: r.clone(),
                    metrics,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ingest_4 = ((batches / 4) * 4 * 1000) as f64 / t0.elapsed().as_secs_f64();

    // Runs created with 10 params and 5 metrics in one batch, and finished.
    let n_runs = env_usize("BENCH_CREATE_RUNS", 1000);
    let t0 = Instant::now();
    for i in 0..n_runs {
        let r = new_run(c, &exp, BASE + i as i64, String::new()).await;
        let p = p_values(&mut rng);
        c.log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            params: p
                .iter()
                .enumerate()
                .map(|(j, v)| pb::Param {
                    key: format!("p{j}"),
                    value: v.clone(),
                })
                .collect(),
            metrics: (0..5)
                .map(|k| pb::Metric {
                    key: format!("m{k}"),
                    value: rng.f64(),
                    timestamp: BASE,
                    step: 0,
                    ..Default::default()
                })
                .collect(),
            tags: vec![],
        })
        .await
        .unwrap();
        c.update_run(pb::UpdateRunRequest {
            run_id: r,
            status: pb::RunStatus::Finished as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let runs_per_s = n_runs as f64 / t0.elapsed().as_secs_f64();

    // Search over 10,000 runs (in their own experiment).
    let n_search = env_usize("BENCH_SEARCH_RUNS", 10_000);
    let sexp = new_experiment(c, "search").await;
    let mut expected = 0;
    let mut tasks = vec![];
    let per = n_search / 4;
    for w in 0..4 {
        let mut c = sb.tracking_client().await;
        let sexp = sexp.clone();
        let mut rng = Rng(1000 + w as u64);
        tasks.push(tokio::spawn(async move {
            let mut expected = 0;
            for i in 0..per {
                let r = new_run(&mut c, &sexp, BASE + (w * per + i) as i64, String::new()).await;
                let p = p_values(&mut rng);
                let m: Vec<f64> = (0..5).map(|_| rng.f64()).collect();
                if m[0] > 0.5 && p[0] == "a" {
                    expected += 1;
                }
                c.log_batch(pb::LogBatchRequest {
                    run_id: r,
                    params: p
                        .iter()
                        .enumerate()
                        .map(|(j, v)| pb::Param {
                            key: format!("p{j}"),
                            value: v.clone(),
                        })
                        .collect(),
                    metrics: m
                        .iter()
                        .enumerate()
                        .map(|(k, v)| pb::Metric {
                            key: format!("m{k}"),
                            value: *v,
                            timestamp: BASE,
                            step: 0,
                            ..Default::default()
                        })
                        .collect(),
                    tags: vec![],
                })
                .await
                .unwrap();
            }
            expected
        }));
    }
    for t in tasks {
        expected += t.await.unwrap();
    }
    // What autovacuum does on a live PostgreSQL after a bulk load (a no-op cost on SQLite).
    if backend == "postgres" {
        sqlx::query("ANALYZE")
            .execute(sb.tracking().store.db().writer())
            .await
            .unwrap();
    }
    let filter = "metrics.m0 > 0.5 and params.p0 = 'a'";
    let mut search = |max: i32| {
        let exp = sexp.clone();
        let mut c = c.clone();
        async move {
            let mut lat = vec![];
            let mut first_page = 0;
            for _ in 0..50 {
                let t = Instant::now();
                let r = c
                    .search_runs(pb::SearchRunsRequest {
                        experiment_ids: vec![exp.clone()],
                        filter: filter.into(),
                        max_results: max,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                lat.push(t.elapsed());
                first_page = r.runs.len();
            }
            (lat, first_page)
        }
    };
    // The same search called on the store in-process: the database's share of the time.
    let mut store_lat = vec![];
    for _ in 0..50 {
        let t = Instant::now();
        sb.tracking()
            .store
            .search_runs(&pb::SearchRunsRequest {
                experiment_ids: vec![sexp.clone()],
                filter: filter.into(),
                max_results: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        store_lat.push(t.elapsed());
    }
    let (s100, n100) = search(100).await;
    let (s1000, n1000) = search(1000).await;
    let _ = &mut search;

    // A hostile filter: 100 clauses (the same two that select, and 98 that every run
    // passes), over the same 10,000 runs, page of 100.
    let hundred = hundred_clauses(filter);
    let mut s_hundred = vec![];
    let mut n_hundred = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let r = c
            .search_runs(pb::SearchRunsRequest {
                experiment_ids: vec![sexp.clone()],
                filter: hundred.clone(),
                max_results: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        s_hundred.push(t.elapsed());
        n_hundred = r.runs.len();
    }

    // A 1,000,000-point history: logged in batches of 1000, read in one page and in pages.
    let n_hist = env_usize("BENCH_HISTORY_POINTS", 1_000_000);
    let hr = new_run(c, &exp, BASE, "history".into()).await;
    let mut sum = 0.0;
    let t0 = Instant::now();
    for b in 0..n_hist / 1000 {
        let metrics: Vec<pb::Metric> = (0..1000)
            .map(|i| {
                let v = rng.f64();
                sum += v;
                pb::Metric {
                    key: "loss".into(),
                    value: v,
                    timestamp: BASE + i,
                    step: (b * 1000) as i64 + i,
                    ..Default::default()
                }
            })
            .collect();
        c.log_batch(pb::LogBatchRequest {
            run_id: hr.clone(),
            metrics,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let hist_ingest = n_hist as f64 / t0.elapsed().as_secs_f64();
    let mut one_page = vec![];
    let mut ok = true;
    for _ in 0..5 {
        let t = Instant::now();
        let h = c
            .get_metric_history(pb::GetMetricHistoryRequest {
                run_id: hr.clone(),
                metric_key: "loss".into(),
                max_results: n_hist.min(1_000_000) as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        one_page.push(t.elapsed());
        ok &= h.values.len() == n_hist
            && (h.values.iter().sum::<f64>() - sum).abs() < 1e-6 * n_hist as f64;
    }
    let mut paged = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let mut token = String::new();
        let mut n = 0;
        loop {
            let h = c
                .get_metric_history(pb::GetMetricHistoryRequest {
                    run_id: hr.clone(),
                    metric_key: "loss".into(),
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            n += h.values.len();
            if h.next_page_token.is_empty() {
                break;
            }
            token = h.next_page_token;
        }
        paged.push(t.elapsed());
        ok &= n == n_hist;
    }
    json!({
        "bench": "mlops_tracking_scale",
        "workload": {"backend": backend, "ingest_batches": batches, "create_runs": n_runs, "search_runs": n_search, "history_points": n_hist},
        "ingest_points_per_s_1_client": ingest_1,
        "ingest_points_per_s_4_clients": ingest_4,
        "runs_created_per_s": runs_per_s,
        "search_page100": {"matches_in_page": n100, "total_matches": expected, "latency": lat(&s100)},
        "search_page100_store_in_process": lat(&store_lat),
        "search_page1000": {"matches_in_page": n1000, "total_matches": expected, "latency": lat(&s1000)},
        "search_100_clauses_page100": {"matches_in_page": n_hundred, "latency": lat(&s_hundred)},
        "history_ingest_points_per_s": hist_ingest,
        "history_1m_one_page": lat(&one_page),
        "history_1m_pages_of_100k": lat(&paged),
        "ok": ok && n1000 == expected.min(1000) && n100 == expected.min(100) && n_hundred == n100,
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _telemetry = mlops_runtime::telemetry::init("bench").expect("telemetry");
        let out_dir = out_dir();
        let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
        for name in backends.split(',') {
            let db = if name == "postgres" {
                Database::Postgres
            } else {
                Database::Sqlite
            };
            let sb = Sandbox::builder()
                .database(db)
                .tracking()
                .start()
                .await
                .expect("sandbox starts");
            let mut c = sb.tracking_client().await;
            let p = peer(&mut c, name).await;
            let s = scale(&sb, &mut c, name).await;
            // One file per backend: summarize.py keys lines by bench name.
            let out_path = format!("{out_dir}/ours-{name}.jsonl");
            let mut out = std::fs::File::create(&out_path).unwrap();
            writeln!(out, "{p}").unwrap();
            writeln!(out, "{s}").unwrap();
            println!("\n== tracking on {name} (gRPC on loopback, release build)");
            println!("peer workload (mlflow_tracking.py, call for call):");
            println!(
                "  (a) runs created, 1 call per param/metric   {:>12.1} runs/s",
                p["a_runs"]["runs_per_s"].as_f64().unwrap()
            );
            println!(
                "  (a) individual log calls                    {:>12.0} calls/s",
                p["a_runs"]["log_calls_per_s"].as_f64().unwrap()
            );
            println!(
                "  (b) LogBatch points (batches of 1000)       {:>12.0} points/s",
                p["b_log_batch"]["points_per_s"].as_f64().unwrap()
            );
            println!(
                "  (c) search p50 / p99 (200 runs)             {:>8.3} / {:.3} ms  ({} matches)",
                p["c_search_runs"]["latency"]["p50_ms"].as_f64().unwrap(),
                p["c_search_runs"]["latency"]["p99_ms"].as_f64().unwrap(),
                p["c_search_runs"]["matches"]
            );
            println!(
                "  (d) history of 20k points p50               {:>8.3} ms",
                p["d_metric_history"]["latency"]["p50_ms"].as_f64().unwrap()
            );
            println!("scale:");
            println!(
                "  LogBatch ingest, 1 client                   {:>12.0} points/s",
                s["ingest_points_per_s_1_client"].as_f64().unwrap()
            );
            println!(
                "  LogBatch ingest, 4 clients                  {:>12.0} points/s",
                s["ingest_points_per_s_4_clients"].as_f64().unwrap()
            );
            println!(
                "  runs created (10 params + 5 metrics)        {:>12.1} runs/s",
                s["runs_created_per_s"].as_f64().unwrap()
            );
            for key in ["search_page100", "search_page1000"] {
                println!(
                    "  {key} over {} runs p50 / p99    {:>8.3} / {:.3} ms  ({} in page, {} match)",
                    s["workload"]["search_runs"],
                    s[key]["latency"]["p50_ms"].as_f64().unwrap(),
                    s[key]["latency"]["p99_ms"].as_f64().unwrap(),
                    s[key]["matches_in_page"],
                    s[key]["total_matches"]
                );
            }
            println!(
                "  search_page100 (goal: p50 under 5 ms)         {:>8.3} ms p50",
                s["search_page100"]["latency"]["p50_ms"].as_f64().unwrap()
            );
            println!(
                "  100-clause search over {} runs, page 100 p50 / p99 {:>8.3} / {:.3} ms  ({} in page)",
                s["workload"]["search_runs"],
                s["search_100_clauses_page100"]["latency"]["p50_ms"].as_f64().unwrap(),
                s["search_100_clauses_page100"]["latency"]["p99_ms"].as_f64().unwrap(),
                s["search_100_clauses_page100"]["matches_in_page"]
            );
            println!(
                "  search_page100, store in-process p50 / p99   {:>8.3} / {:.3} ms",
                s["search_page100_store_in_process"]["p50_ms"]
                    .as_f64()
                    .unwrap(),
                s["search_page100_store_in_process"]["p99_ms"]
                    .as_f64()
                    .unwrap()
            );
            println!(
                "  history {} points, one page p50         {:>8.1} ms",
                s["workload"]["history_points"],
                s["history_1m_one_page"]["p50_ms"].as_f64().unwrap()
            );
            println!(
                "  history {} points, pages of 100k p50    {:>8.1} ms",
                s["workload"]["history_points"],
                s["history_1m_pages_of_100k"]["p50_ms"].as_f64().unwrap()
            );
            println!("  checks: peer ok={} scale ok={}", p["ok"], s["ok"]);
            sb.stop().await.unwrap();
        }
        println!("\nJSON lines in {out_dir}/ours-<backend>.jsonl");
    });
}

/// The allocator of the service binaries (their main.rs), so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
