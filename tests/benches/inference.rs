//! `make bench`: the inference service over gRPC on loopback (release build), with the
//! registry as its repository. Prints a table and writes one JSON line
//! (`MLOPS_BENCH_DIR/ours-inference.jsonl`, bench `mlops_inference_grpc`).
//!
//! For each model (the peers' `logreg`, `rf`, `gbdt`, `mlp` from tests/fixtures/sklearn):
//! - single-row latency with one client, one call at a time (p50/p99);
//! - saturation: single-row requests from 64 concurrent clients, rows/s, batching off;
//! - at half of saturation: an open-loop load at 50% of that rate, p50/p99, from a load
//!   generator in a process of its own, each request sent when it is due. Sent one by one,
//!   a request costs the generator about what it costs the server, so on two cores the
//!   generator can fall behind: the bench prints its lag and both processes' CPU;
//! - 64 concurrent clients with dynamic batching on (max_queue_delay 500 µs), rows/s and p99;
//! - the share of the process's CPU that ran the model at saturation, and the ceiling it sets
//!   on what batching can give (1 / (1 - share)): batching saves compute, never a request's
//!   gRPC and bookkeeping.
//!
//! Then deployments (`inference/deploy.rs`): hot swap, shadow, prediction log, rollback.
//!
//! `BENCH_INFERENCE_PARTS` picks parts (comma-separated; all by default): `models`,
//! `deployments`, or `prediction-log` (the prediction log's cost alone, to profile it; on
//! Kafka too when a broker is given).
//!
//! The closed-loop clients run in the same process as the server, and every client on the
//! same two cores, so these figures include the clients' own gRPC cost. The in-process figures (no gRPC) beside
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
    (width, floats(&input["data"]))
}

/// A JSON array of numbers as `f32`s.
fn floats(array: &Value) -> Vec<f32> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
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

/// Set in the environment of the bench's own executable when it runs as the open-loop
/// load generator ([`open_loop`], [`generator`]).
const GENERATOR: &str = "MLOPS_BENCH_OPEN_LOOP_GENERATOR";
/// The generator's CPU priority (nice).
const GENERATOR_NICE: i32 = -10;

/// What an open-loop run measured.
struct OpenLoop {
    /// Each request's latency, from when it went out to its answer.
    lats: Vec<Duration>,
    /// How late requests went out against their schedule, p99 (ms).
    lag_p99_ms: f64,
    /// The CPU the server's process used meanwhile, in cores.
    server_cores: f64,
    /// The CPU the generator used meanwhile, in cores.
    generator_cores: f64,
}

impl OpenLoop {
    fn json(&self) -> Value {
        json!({
            "latency": lat(&self.lats),
            "generator_lag_p99_ms": self.lag_p99_ms,
            "server_cores": self.server_cores,
            "generator_cores": self.generator_cores,
        })
    }
}

/// Requests at `rate` per second for `duration`, each sent when it is due whatever the
/// others do (open loop), over 8 connections.
///
/// The load comes from another process (this executable, run as [`generator`]), as
/// Triton's perf_analyzer runs apart from the server: requests paced from inside the
/// server's runtime go out in bursts at its timer's whole milliseconds, and a client
/// sharing the server's worker threads waits behind the server's own tasks.
async fn open_loop(
    addr: std::net::SocketAddr,
    model: &str,
    width: usize,
    data: &Arc<Vec<f32>>,
    rate: f64,
    duration: Duration,
) -> OpenLoop {
    let load = json!({
        "addr": addr.to_string(),
        "model": model,
        "width": width,
        "data": data.as_slice(),
        "rate": rate,
        "secs": duration.as_secs_f64(),
    });
    let cpu0 = process_cpu();
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().expect("the bench's executable"))
            .env(GENERATOR, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the load generator starts");
        // Its stdin is closed when written, which starts it.
        serde_json::to_writer(child.stdin.take().unwrap(), &load).unwrap();
        let out = child.wait_with_output().expect("the load generator ends");
        assert!(
            out.status.success(),
            "the load generator failed: {}",
            out.status
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("the generator's report")
    })
    .await
    .unwrap();
    let server_cores = (process_cpu() - cpu0).as_secs_f64() / started.elapsed().as_secs_f64();
    let nanos = |key: &str| -> Vec<Duration> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Duration::from_nanos(v.as_u64().unwrap()))
            .collect()
    };
    OpenLoop {
        lats: nanos("latency_ns"),
        lag_p99_ms: pct(&nanos("lag_ns"), 99.0),
        server_cores,
        generator_cores: report["cores"].as_f64().unwrap(),
    }
}

/// The open-loop load generator, in a process of its own: reads its load (address, model,
/// rows, rate, seconds) from stdin as JSON, sends single-row requests on schedule from one
/// thread's runtime, and writes each request's latency and how late it went out, in
/// nanoseconds, to stdout.
///
/// A timerfd paces the requests ([`Ticks`]): the runtime's own timer counts whole
/// milliseconds, and a pacing thread would add a second wake-up to every request.
fn generator() {
    // It stands for a client on a machine of its own: ahead of the server for the CPU, so
    // that it sends on time and reads each answer when it comes, and the latency it
    // measures is the server's. Raising a priority needs CAP_SYS_NICE; without it the
    // generator runs at the server's and its lag (printed) says what that cost.
    if let Err(err) = rustix::process::setpriority_process(None, GENERATOR_NICE) {
        eprintln!("the load generator keeps its priority ({err}); its lag shows what that costs");
    }
    let load: Value = serde_json::from_reader(std::io::stdin()).expect("the load, as JSON");
    let addr: std::net::SocketAddr = load["addr"].as_str().unwrap().parse().unwrap();
    let model = load["model"].as_str().unwrap().to_owned();
    let width = load["width"].as_u64().unwrap() as usize;
    let data = floats(&load["data"]);
    let rate = load["rate"].as_f64().unwrap();
    let n = (rate * load["secs"].as_f64().unwrap()) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (lats, lags, cores) = rt.block_on(async move {
        let mut conns = Vec::new();
        for _ in 0..8 {
            conns.push(client(addr).await);
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        let cpu0 = process_cpu();
        let mut ticks = Ticks::every(interval);
        let mut tasks = Vec::with_capacity(n);
        while tasks.len() < n {
            ticks.next().await;
            let now = ticks.start.elapsed();
            loop {
                let i = tasks.len();
                let due = interval.mul_f64((i + 1) as f64);
                if i == n || due > now {
                    break;
                }
                let due = ticks.start + due;
                let mut c = conns[i % conns.len()].clone();
                let req = single_row(&model, width, &data, i);
                tasks.push(tokio::spawn(async move {
                    let t = Instant::now();
                    c.model_infer(req).await.unwrap();
                    (t.elapsed(), t.saturating_duration_since(due))
                }));
            }
        }
        let cpu = process_cpu() - cpu0;
        let cores = cpu.as_secs_f64() / ticks.start.elapsed().as_secs_f64();
        let (mut lats, mut lags) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for t in tasks {
            let (lat, lag) = t.await.unwrap();
            lats.push(lat.as_nanos() as u64);
            lags.push(lag.as_nanos() as u64);
        }
        (lats, lags, cores)
    });
    serde_json::to_writer(
        std::io::stdout().lock(),
        &json!({"latency_ns": lats, "lag_ns": lags, "cores": cores}),
    )
    .unwrap();
}

/// A periodic timer of the kernel's (timerfd, to the microsecond) that the generator's
/// runtime waits on like any other file.
struct Ticks {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    start: Instant,
}

impl Ticks {
    fn every(interval: Duration) -> Ticks {
        use rustix::time::{timerfd_create, timerfd_settime, Itimerspec, Timespec};
        use rustix::time::{TimerfdClockId, TimerfdFlags, TimerfdTimerFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .expect("a timerfd");
        let every = Timespec {
            tv_sec: interval.as_secs() as _,
            tv_nsec: interval.subsec_nanos() as _,
        };
        let start = Instant::now();
        timerfd_settime(
            &fd,
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: every,
                it_value: every,
            },
        )
        .expect("the timer set");
        // `AsyncFd::new` is deprecated because a `T` that only lends its descriptor could
        // close it while registered; an `OwnedFd` moved in is closed only when the
        // `AsyncFd` drops, after deregistering. Its replacement, `register`, is `unsafe`,
        // which the workspace forbids.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(fd).expect("the timer registered");
        Ticks { fd, start }
    }

    /// Waits for the next tick (the caller sends whatever has come due since).
    async fn next(&mut self) {
        loop {
            let mut ready = self.fd.readable().await.expect("the timer readable");
            let mut buf = [0u8; 8];
            match rustix::io::read(ready.get_inner(), &mut buf) {
                Ok(8) => return,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => panic!("reading the timer: {e}"),
            }
        }
    }
}

/// The CPU time this process has used (user and system, all threads), from
/// `/proc/self/stat` in the kernel's fixed 100 ticks a second.
fn process_cpu() -> Duration {
    cpu_of("self")
}

/// The CPU time (user and system) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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
    if std::env::var_os(GENERATOR).is_some() {
        return generator();
    }
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
        println!(
            "\n== inference over gRPC on loopback (release build; closed-loop clients in-process)"
        );
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
        let mut half_loads = Vec::new();
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
                pct(&half.lats, 50.0),
                pct(&half.lats, 99.0),
                batched,
                pct(&batched_lats, 99.0),
                share * 100.0,
                1.0 / (1.0 - share).max(f64::EPSILON)
            );
            half_loads.push(format!(
                "{name:<7} {:>8.0}/s: server {:.2} cores, generator {:.2} cores, generator lag p99 {:.3} ms{}",
                saturation / 2.0,
                half.server_cores,
                half.generator_cores,
                half.lag_p99_ms,
                // Late by more than the goal itself: the machine, not the server, set the
                // latencies.
                if half.lag_p99_ms > 1.0 {
                    " (behind its schedule: the two cores could not carry server and generator)"
                } else {
                    ""
                }
            ));
            models.insert(
                name.into(),
                json!({
                    "single_client": lat(&one),
                    "saturation_64_clients": {"rows_per_s": saturation, "latency": lat(&sat_lats),
                                              "compute_share_of_cpu": share,
                                              "batching_ceiling": 1.0 / (1.0 - share).max(f64::EPSILON)},
                    "half_saturation": {"rate_per_s": saturation / 2.0, "open_loop": half.json()},
                    "batched_64_clients": {"rows_per_s": batched, "latency": lat(&batched_lats),
                                           "max_queue_delay_us": 500},
                }),
            );
        }
        if !half_loads.is_empty() {
            // What half of saturation asks of the machine: the generator stands for
            // clients elsewhere, but here it shares the two cores.
            println!("at half of saturation (the open-loop generator in its own process):");
            for l in half_loads {
                println!("  {l}");
            }
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
                         "transport": "gRPC on loopback; closed-loop clients in the server's process, the open-loop generator in its own"},
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

/// The allocator of the service binaries (their main.rs), so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
