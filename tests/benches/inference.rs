//! `make bench`: the inference service over gRPC on loopback (release build), with the
//! registry as its repository. Prints a table and writes one JSON line
//! (`MLOPS_BENCH_DIR/ours-inference.jsonl`, bench `mlops_inference_grpc`).
//!
//! For each model (the peers' `logreg`, `rf`, `gbdt`, `mlp` from tests/fixtures/sklearn):
//! - single-row latency with one client, one call at a time (p50/p99);
//! - saturation: single-row requests from 64 concurrent clients, rows/s, batching off;
//! - at half of saturation: an open-loop load at 50% of that rate, p50/p99;
//! - 64 concurrent clients with dynamic batching on (max_queue_delay 500 µs), rows/s and p99;
//! - the share of the process's CPU that ran the model at saturation, and the ceiling it sets
//!   on what batching can give (1 / (1 - share)): batching saves compute, never a request's
//!   gRPC and bookkeeping.
//!
//! Then deployments (`inference/deploy.rs`): hot swap, shadow, prediction log, rollback.
//!
//! `BENCH_INFERENCE_PARTS` picks parts (comma-separated; all by default): `models`,
//! `deployments`, or `prediction-log` (the prediction log's cost alone, to profile it).
//!
//! The clients run in the same process and on the same two cores as the server, so these
//! figures include the clients' own gRPC cost. The in-process figures (no gRPC) beside
//! onnxruntime's are `cargo bench -p mlops-model --bench onnx_serving`.

#![allow(clippy::print_stdout)]

#[path = "inference/deploy.rs"]
mod deploy;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_inference::Inference;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::triton as pb;
use mlops_proto::triton::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_tests::bench::{env_usize, lat, out_dir, pct};
use mlops_tests::Sandbox;
use serde_json::{json, Value};
use tonic::transport::Channel;

type Oip = GrpcInferenceServiceClient<Channel>;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sklearn");

fn first_rows(name: &str) -> (usize, Vec<f32>) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}.json")).unwrap())
            .unwrap();
    let input = &json["inputs"][0];
    let width = input["shape"][1].as_u64().unwrap() as usize;
    let data = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    (width, data)
}

fn single_row(model: &str, width: usize, data: &[f32], i: usize) -> pb::ModelInferRequest {
    let rows = data.len() / width;
    let r = i % rows;
    let raw: Vec<u8> = data[r * width..(r + 1) * width]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, width as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    }
}

async fn client(addr: std::net::SocketAddr) -> Oip {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GrpcInferenceServiceClient::new(channel)
}

/// `clients` concurrent clients (each its own connection) sending single-row requests for
/// `duration`: (rows/s, latencies).
async fn closed_loop(
    addr: std::net::SocketAddr,
    model: &str,
    width: usize,
    data: &Arc<Vec<f32>>,
    clients: usize,
    duration: Duration,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mut c = client(addr).await;
        let (model, data) = (model.to_owned(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut lats = Vec::new();
            let mut i = k;
            while start.elapsed() < duration {
                let t = Instant::now();
                c.model_infer(single_row(&model, width, &data, i))
                    .await
                    .unwrap();
                lats.push(t.elapsed());
                i += clients;
            }
            lats
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as f64 / start.elapsed().as_secs_f64(), all)
}

/// Requests at `rate` per second for `duration`, each on its own task whatever the others
/// do (open loop), over 8 connections: the latencies.
async fn open_loop(
    addr: std::net::SocketAddr,
    model: &str,
    width: usize,
    data: &Arc<Vec<f32>>,
    rate: f64,
    duration: Duration,
) -> Vec<Duration> {
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(client(addr).await);
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while start.elapsed() < duration {
        ticker.tick().await;
        let mut c = conns[i % conns.len()].clone();
        let req = single_row(model, width, data, i);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            c.model_infer(req).await.unwrap();
            t.elapsed()
        }));
        i += 1;
    }
    let mut lats = Vec::new();
    for t in tasks {
        lats.push(t.await.unwrap());
    }
    lats
}

/// The CPU time this process has used (user and system, all threads), from
/// `/proc/self/stat` in the kernel's fixed 100 ticks a second.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) end with `)`.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11) // state is field 3; utime and stime are fields 14 and 15
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The time `model` has spent computing (ModelStatistics' `compute_infer`).
async fn compute_time(c: &mut Oip, model: &str) -> Duration {
    let stats = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: model.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    Duration::from_nanos(
        stats
            .model_stats
            .iter()
            .filter_map(|m| m.inference_stats.as_ref()?.compute_infer.as_ref())
            .map(|d| d.ns)
            .sum(),
    )
}

async fn load(c: &mut Oip, model: &str, batching: bool) {
    let mut parameters = std::collections::HashMap::new();
    parameters.insert(
        "dynamic_batching".to_owned(),
        pb::ModelRepositoryParameter {
            parameter_choice: Some(pb::model_repository_parameter::ParameterChoice::BoolParam(
                batching,
            )),
        },
    );
    c.repository_model_load(pb::RepositoryModelLoadRequest {
        model_name: model.into(),
        parameters,
        ..Default::default()
    })
    .await
    .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _telemetry = mlops_runtime::telemetry::init("bench").expect("telemetry");
        let secs = env_usize("BENCH_INFERENCE_SECS", 3) as u64;
        let duration = Duration::from_secs(secs);
        let sb = Sandbox::builder()
            .registry()
            .service::<Inference>(|c| c.max_queue_delay_us = 500)
            .start()
            .await
            .expect("sandbox starts");
        let addr = sb.addresses("inference").api;
        let mut c = client(addr).await;
        let mut r = sb.registry_client().await;
        let parts = std::env::var("BENCH_INFERENCE_PARTS").unwrap_or_default();
        let part = |p: &str| parts.is_empty() || parts.split(',').any(|x| x.trim() == p);
        let mut models = serde_json::Map::new();
        println!("\n== inference over gRPC on loopback (release build, clients in-process)");
        println!(
            "{:<7} {:>10} {:>10} {:>12} {:>10} {:>10} {:>13} {:>10} {:>8} {:>9}",
            "model",
            "1-cl p50",
            "1-cl p99",
            "sat. rows/s",
            "½sat p50",
            "½sat p99",
            "batched rows/s",
            "batch p99",
            "compute",
            "ceiling"
        );
        let names: &[&str] = if part("models") {
            &["logreg", "rf", "gbdt", "mlp"]
        } else {
            &[]
        };
        for &name in names {
            r.create_registered_model(rpb::CreateRegisteredModelRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap();
            let bytes = std::fs::read(format!("{FIXTURES}/{name}.onnx")).unwrap();
            let mut msgs = vec![rpb::UploadModelVersionRequest {
                item: Some(rpb::upload_model_version_request::Item::Header(
                    rpb::UploadHeader {
                        name: name.into(),
                        file_name: "model.onnx".into(),
                        ..Default::default()
                    },
                )),
            }];
            msgs.push(rpb::UploadModelVersionRequest {
                item: Some(rpb::upload_model_version_request::Item::Chunk(bytes)),
            });
            r.upload_model_version(futures::stream::iter(msgs))
                .await
                .unwrap();
            let (width, data) = first_rows(name);
            let data = Arc::new(data);
            load(&mut c, name, false).await;
            // Warm-up, then one client, one call at a time.
            for i in 0..200 {
                c.model_infer(single_row(name, width, &data, i))
                    .await
                    .unwrap();
            }
            let mut one = Vec::new();
            for i in 0..2000 {
                let t = Instant::now();
                c.model_infer(single_row(name, width, &data, i))
                    .await
                    .unwrap();
                one.push(t.elapsed());
            }
            let (cpu0, compute0) = (process_cpu(), compute_time(&mut c, name).await);
            let (saturation, sat_lats) = closed_loop(addr, name, width, &data, 64, duration).await;
            // The share of the process's CPU that ran the model: the most batching can
            // save, since it still pays every request's gRPC and bookkeeping.
            let share = (compute_time(&mut c, name).await - compute0).as_secs_f64()
                / (process_cpu() - cpu0).as_secs_f64();
            let half = open_loop(addr, name, width, &data, saturation / 2.0, duration).await;
            load(&mut c, name, true).await;
            let (batched, batched_lats) = closed_loop(addr, name, width, &data, 64, duration).await;
            println!(
                "{name:<7} {:>8.3}ms {:>8.3}ms {:>12.0} {:>8.3}ms {:>8.3}ms {:>13.0} {:>8.3}ms {:>7.1}% {:>8.2}x",
                pct(&one, 50.0),
                pct(&one, 99.0),
                saturation,
                pct(&half, 50.0),
                pct(&half, 99.0),
                batched,
                pct(&batched_lats, 99.0),
                share * 100.0,
                1.0 / (1.0 - share).max(f64::EPSILON)
            );
            models.insert(
                name.into(),
                json!({
                    "single_client": lat(&one),
                    "saturation_64_clients": {"rows_per_s": saturation, "latency": lat(&sat_lats),
                                              "compute_share_of_cpu": share,
                                              "batching_ceiling": 1.0 / (1.0 - share).max(f64::EPSILON)},
                    "half_saturation": {"rate_per_s": saturation / 2.0, "latency": lat(&half)},
                    "batched_64_clients": {"rows_per_s": batched, "latency": lat(&batched_lats),
                                           "max_queue_delay_us": 500},
                }),
            );
        }
        let deployments = if part("deployments") {
            deploy::run(&sb, duration).await
        } else if part("prediction-log") {
            deploy::run_log_only(&sb, duration).await
        } else {
            Value::Null
        };
        let line = json!({
            "bench": "mlops_inference_grpc",
            "workload": {"seconds_per_phase": secs, "clients": 64, "rows_per_request": 1,
                         "transport": "gRPC on loopback, clients in the same process"},
            "models": models,
            "deployments": deployments,
        });
        let path = format!("{}/ours-inference.jsonl", out_dir());
        let _ = std::fs::create_dir_all(out_dir());
        writeln!(std::fs::File::create(&path).unwrap(), "{line}").unwrap();
        println!("JSON: {path}");
        sb.stop().await.unwrap();
    });
}
