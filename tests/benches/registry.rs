//! `make bench`: the model registry over gRPC on loopback, on SQLite and on
//! PostgreSQL. Prints a table and writes JSON lines
//! (`MLOPS_BENCH_DIR/ours-registry-<backend>.jsonl`) shaped like
//! `../shared/bench/peers/mlflow_registry.py`'s, so `summarize.py` sets MLflow's figures
//! beside ours.
//!
//! Workloads:
//! - peer: `mlflow_registry.py`'s defaults: 100 versions created one call each, the
//!   alias `champion` moved through all of them, 200 alias resolutions. Our versions
//!   are real registrations: each reads the run from tracking, copies a 209-byte ONNX
//!   file from the run's artifacts and reads its signature (MLflow's bench only records
//!   a source URI that does not exist);
//! - scale: 5,000 alias resolutions (p50/p99), and search over 10,000 versions.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Instant;

use mlops_proto::registry::v1 as rpb;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::tracking::v1 as pb;
use mlops_tests::bench::{env_usize, lat, out_dir};
use mlops_tests::{Database, Sandbox};
use serde_json::json;
use tonic::transport::Channel;

type Registry = RegistryServiceClient<Channel>;

const LINEAR: &[u8] = include_bytes!("../fixtures/onnx/linear.onnx");

/// A run holding `model/model.onnx`.
async fn source_run(sb: &Sandbox) -> String {
    let mut t = sb.tracking_client().await;
    let exp = t
        .create_experiment(pb::CreateExperimentRequest {
            name: format!("bench-registry-{}", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .experiment_id;
    let run = t
        .create_run(pb::CreateRunRequest {
            experiment_id: exp,
            run_name: "model-source-run".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
        .info
        .unwrap()
        .run_id;
    t.log_batch(pb::LogBatchRequest {
        run_id: run.clone(),
        metrics: vec![pb::Metric {
            key: "auc".into(),
            value: 0.9,
            timestamp: 1,
            step: 0,
            ..Default::default()
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let msgs = vec![
        pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Header(
                pb::ArtifactHeader {
                    run_id: run.clone(),
                    path: "model/model.onnx".into(),
                    ..Default::default()
                },
            )),
        },
        pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Chunk(LINEAR.to_vec())),
        },
    ];
    t.upload_artifact(futures::stream::iter(msgs))
        .await
        .unwrap();
    run
}

async fn create_model(c: &mut Registry, name: &str) {
    c.create_registered_model(rpb::CreateRegisteredModelRequest {
        name: name.into(),
        description: "peers benchmark".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn register(c: &mut Registry, name: &str, run: &str, tags: Vec<rpb::Tag>) -> i64 {
    c.create_model_version(rpb::CreateModelVersionRequest {
        name: name.into(),
        run_id: run.into(),
        artifact_path: "model".into(),
        tags,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .model_version
    .unwrap()
    .version
}

/// The peer workload, call for call.
async fn peer(c: &mut Registry, run: &str, backend: &str) -> serde_json::Value {
    let k = env_usize("BENCH_REGISTRY_PEER_VERSIONS", 100);
    let reads = 200;
    let model = "peers-bench-model";
    create_model(c, model).await;
    // warm-up, as the peer script does with one search
    c.search_registered_models(rpb::SearchRegisteredModelsRequest::default())
        .await
        .unwrap();

    let mut la = vec![];
    let t0 = Instant::now();
    let mut ok = true;
    for i in 0..k {
        let t = Instant::now();
        let v = register(c, model, run, vec![]).await;
        la.push(t.elapsed());
        ok &= v == i as i64 + 1;
    }
    let ta = t0.elapsed().as_secs_f64();

    let mut lb = vec![];
    let t0 = Instant::now();
    for v in 1..=k as i64 {
        let t = Instant::now();
        c.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
            name: model.into(),
            alias: "champion".into(),
            version: v,
        })
        .await
        .unwrap();
        lb.push(t.elapsed());
    }
    let tb = t0.elapsed().as_secs_f64();

    let mut lc = vec![];
    let mut got = 0;
    for _ in 0..reads {
        let t = Instant::now();
        got = c
            .get_model_version_by_alias(rpb::GetModelVersionByAliasRequest {
                name: model.into(),
                alias: "champion".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .model_version
            .unwrap()
            .version;
        lc.push(t.elapsed());
    }
    json!({
        "bench": "mlflow_registry",
        "versions": {"mlops": env!("CARGO_PKG_VERSION")},
        "workload": {"model_versions": k, "alias": "champion", "alias_reads": reads, "backend": backend,
                     "registration": "from a run's artifact: lineage read from tracking, a 209-byte ONNX file copied, signature read"},
        "a_create_model_version": {"ops": k, "seconds": ta, "ops_per_s": k as f64 / ta, "latency": lat(&la)},
        "b_set_alias": {"ops": k, "seconds": tb, "ops_per_s": k as f64 / tb, "latency": lat(&lb)},
        "c_get_by_alias": {"calls": reads, "resolved_version": got, "expected_version": k, "latency": lat(&lc)},
        "combined_write_ops_per_s": 2.0 * k as f64 / (ta + tb),
        "ok": ok && got == k as i64,
    })
}

/// Alias resolution at volume, and search over many versions.
async fn scale(sb: &Sandbox, run: &str, backend: &str) -> serde_json::Value {
    let mut c = sb.registry_client().await;
    let reads = env_usize("BENCH_ALIAS_READS", 5000);
    let mut lr = vec![];
    for _ in 0..reads {
        let t = Instant::now();
        c.get_model_version_by_alias(rpb::GetModelVersionByAliasRequest {
            name: "peers-bench-model".into(),
            alias: "champion".into(),
        })
        .await
        .unwrap();
        lr.push(t.elapsed());
    }

    // 10,000 versions over 5 models, every 10th of each tagged, registered by 4 clients.
    let n = env_usize("BENCH_SEARCH_VERSIONS", 10_000);
    let models = 5;
    for m in 0..models {
        create_model(&mut c, &format!("search-{m}")).await;
    }
    let t0 = Instant::now();
    let mut tasks = vec![];
    for w in 0..4 {
        let mut c = sb.registry_client().await;
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                // every 10th version of each model is tagged
                let tags = if (i / models) % 10 == 0 {
                    vec![rpb::Tag {
                        key: "validated".into(),
                        value: "yes".into(),
                    }]
                } else {
                    vec![]
                };
                register(&mut c, &format!("search-{}", i % models), &run, tags).await;
                i += 4;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fill_per_s = n as f64 / t0.elapsed().as_secs_f64();

    let mut by_tag = vec![];
    let mut tag_matches = 0;
    for q in 0..50 {
        let t = Instant::now();
        let r = c
            .search_model_versions(rpb::SearchModelVersionsRequest {
                filter: format!("name = 'search-{}' AND tags.validated = 'yes'", q % models),
                max_results: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        by_tag.push(t.elapsed());
        tag_matches = r.model_versions.len();
    }
    let mut by_run = vec![];
    let mut run_matches = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let r = c
            .search_model_versions(rpb::SearchModelVersionsRequest {
                filter: format!("run_id = '{run}'"),
                max_results: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        by_run.push(t.elapsed());
        run_matches = r.model_versions.len();
    }
    json!({
        "bench": "mlops_registry_scale",
        "workload": {"backend": backend, "alias_reads": reads, "search_versions": n, "models": models},
        "get_by_alias": lat(&lr),
        "versions_registered_per_s_4_clients": fill_per_s,
        "search_name_and_tag_page100": {"matches_in_page": tag_matches, "latency": lat(&by_tag)},
        "search_run_id_page100": {"matches_in_page": run_matches, "latency": lat(&by_run)},
        "ok": tag_matches == 100.min(n / models / 10) && run_matches == 100,
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
                .registry()
                .start()
                .await
                .expect("sandbox starts");
            let run = source_run(&sb).await;
            let mut c = sb.registry_client().await;
            let p = peer(&mut c, &run, name).await;
            let s = scale(&sb, &run, name).await;
            let out_path = format!("{out_dir}/ours-registry-{name}.jsonl");
            let mut out = std::fs::File::create(&out_path).unwrap();
            writeln!(out, "{p}").unwrap();
            writeln!(out, "{s}").unwrap();
            let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
            println!("\n== registry on {name} (gRPC on loopback, release build)");
            println!("peer workload (mlflow_registry.py, call for call):");
            println!(
                "  (a) versions registered (1 client)          {:>10.1} /s   p50 {:.3} ms",
                f(&p["a_create_model_version"]["ops_per_s"]),
                f(&p["a_create_model_version"]["latency"]["p50_ms"])
            );
            println!(
                "  (b) alias moves                             {:>10.1} /s   p50 {:.3} ms",
                f(&p["b_set_alias"]["ops_per_s"]),
                f(&p["b_set_alias"]["latency"]["p50_ms"])
            );
            println!(
                "  (c) alias resolution p50 / p99 (200)        {:>8.3} / {:.3} ms",
                f(&p["c_get_by_alias"]["latency"]["p50_ms"]),
                f(&p["c_get_by_alias"]["latency"]["p99_ms"])
            );
            println!("scale:");
            println!(
                "  alias resolution p50 / p99 ({} calls)      {:>8.3} / {:.3} ms",
                s["workload"]["alias_reads"],
                f(&s["get_by_alias"]["p50_ms"]),
                f(&s["get_by_alias"]["p99_ms"])
            );
            println!(
                "  versions registered (4 clients)             {:>10.1} /s",
                f(&s["versions_registered_per_s_4_clients"])
            );
            println!(
                "  search over {} versions, name+tag, page 100  p50 {:.3} / p99 {:.3} ms ({} matches)",
                s["workload"]["search_versions"],
                f(&s["search_name_and_tag_page100"]["latency"]["p50_ms"]),
                f(&s["search_name_and_tag_page100"]["latency"]["p99_ms"]),
                s["search_name_and_tag_page100"]["matches_in_page"]
            );
            println!(
                "  search by run_id, page 100                   p50 {:.3} / p99 {:.3} ms ({} matches)",
                f(&s["search_run_id_page100"]["latency"]["p50_ms"]),
                f(&s["search_run_id_page100"]["latency"]["p99_ms"]),
                s["search_run_id_page100"]["matches_in_page"]
            );
            println!("  ok: {} / {}", p["ok"], s["ok"]);
            println!("  json: {out_path}");
            sb.stop().await.unwrap();
        }
    });
}

/// The allocator of the service binaries (their main.rs), so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
