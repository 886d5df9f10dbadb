//! The deployments part of the inference bench: what hot swap, shadows, the prediction log
//! and rollbacks cost the requests, and how fast a change reaches serving.
//!
//! - single-row p50/p99 under a steady open-loop load, then under the same load while the
//!   alias moves every 200 ms (goal: p99 during swaps at most 1.2x steady);
//! - the same load with a shadow on every request and without, in turn, four times each (goal:
//!   primary p99 at most 5% above);
//! - saturation rows/s with the prediction log on and off (goal: at most 5% lower with it),
//!   the process's CPU time per request on each, and the log's own CPU time per prediction
//!   recorded and published apart from serving, as a share of an unlogged request's CPU
//!   (steadier than the throughput ratio); one replica, the log turned on and off by its
//!   deployment's `prediction_log_sample` (two replicas alike differ by up to 15% here);
//! - a rollback call until all traffic is on the previous version (goal: under 1 s);
//! - an alias move in the registry until the new version serves, on the in-process bus and,
//!   when `MLOPS_TEST_KAFKA_BROKERS` is set, on Kafka (goal: under 1 s plus load and warm-up);
//!   there the prediction log's cost is measured again, its events published to the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_inference::Inference;
use mlops_proto::inference::v1 as dpb;
use mlops_proto::inference::v1::deployment_service_client::DeploymentServiceClient;
use mlops_proto::registry::v1 as rpb;
use mlops_tests::bench::{lat, pct};
use mlops_tests::{Bus, Replica, Sandbox};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::{closed_loop, cpu_of, first_rows, open_loop, process_cpu, FIXTURES};

type Deployments = DeploymentServiceClient<Channel>;

async fn upload(sb: &Sandbox, name: &str, fixture: &str) {
    let mut r = sb.registry_client().await;
    let _ = r
        .create_registered_model(rpb::CreateRegisteredModelRequest {
            name: name.into(),
            ..Default::default()
        })
        .await;
    let bytes = std::fs::read(format!("{FIXTURES}/{fixture}.onnx")).unwrap();
    let msgs = vec![
        rpb::UploadModelVersionRequest {
            item: Some(rpb::upload_model_version_request::Item::Header(
                rpb::UploadHeader {
                    name: name.into(),
                    file_name: "model.onnx".into(),
                    ..Default::default()
                },
            )),
        },
        rpb::UploadModelVersionRequest {
            item: Some(rpb::upload_model_version_request::Item::Chunk(bytes)),
        },
    ];
    r.upload_model_version(futures::stream::iter(msgs))
        .await
        .unwrap();
}

async fn set_alias(sb: &Sandbox, name: &str, version: i64) {
    sb.registry_client()
        .await
        .set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
            name: name.into(),
            alias: "champion".into(),
            version,
        })
        .await
        .unwrap();
}

async fn serving(d: &mut Deployments, name: &str) -> i64 {
    d.get_deployment(dpb::GetDeploymentRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap()
        .version
}

/// Moves the alias to `v` and waits until `d` serves it: the time it took.
async fn move_and_wait(sb: &Sandbox, d: &mut Deployments, name: &str, v: i64) -> Duration {
    let started = Instant::now();
    set_alias(sb, name, v).await;
    while serving(d, name).await != v {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no swap to {v}"
        );
    }
    started.elapsed()
}

/// `name` with versions 1 (logreg) and 2 (a linear SVM), champion on 1, deployed following it.
async fn two_versions(sb: &Sandbox, name: &str) -> Deployments {
    upload(sb, name, "logreg").await;
    upload(sb, name, "linear_svm").await;
    set_alias(sb, name, 1).await;
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("inference").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut d = DeploymentServiceClient::new(channel);
    d.deploy(dpb::DeployRequest {
        name: name.into(),
        target: Some(dpb::Target {
            choice: Some(dpb::target::Choice::Alias("champion".into())),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    d
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the deployments bench against `sb` (in-process bus); prints and returns its figures.
pub async fn run(sb: &Sandbox, duration: Duration) -> Value {
    let name = "swapped";
    let mut d = two_versions(sb, name).await;
    let addr = sb.addresses("inference").api;
    let (width, data) = first_rows("logreg");
    let data = Arc::new(data);
    let rate = 1000.0;

    // Steady, then the same load while the alias moves every 200 ms.
    let steady = open_loop(addr, name, width, &data, rate, duration)
        .await
        .lats;
    let mover = {
        let (registry, name) = (sb.registry().grpc, name.to_owned());
        tokio::spawn(async move {
            let channel = Channel::from_shared(format!("http://{registry}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut r =
                mlops_proto::registry::v1::registry_service_client::RegistryServiceClient::new(
                    channel,
                );
            let started = Instant::now();
            let mut moves = 0;
            while started.elapsed() < duration {
                r.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
                    name: name.clone(),
                    alias: "champion".into(),
                    version: 2 - (moves % 2),
                })
                .await
                .unwrap();
                moves += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            moves
        })
    };
    let swapping = open_loop(addr, name, width, &data, rate, duration)
        .await
        .lats;
    let moves = mover.await.unwrap();
    let serving_now = serving(&mut d, name).await;
    if serving_now != 1 {
        move_and_wait(sb, &mut d, name, 1).await;
    }

    // A shadow on every request, against none: without, with, with, without, twice (as
    // the prediction log's phases, so a drift over the run falls on both alike), each
    // side's latencies pooled. A p99 rests on its slowest 1%: four phases a side give it
    // four times as many requests as one.
    let (mut baseline, mut shadowed) = (vec![], vec![]);
    for shadow in [false, true, true, false, false, true, true, false] {
        set_shadow(&mut d, name, shadow).await;
        let lats = open_loop(addr, name, width, &data, rate, duration)
            .await
            .lats;
        if shadow { &mut shadowed } else { &mut baseline }.extend(lats);
    }
    set_shadow(&mut d, name, false).await;

    let log = in_process_log_cost(sb, name, width, &data, duration).await;

    // Rollbacks and alias moves, five each.
    let mut rollbacks = vec![];
    let mut moves_in_process = vec![];
    for _ in 0..5 {
        moves_in_process.push(move_and_wait(sb, &mut d, name, 2).await);
        let started = Instant::now();
        d.rollback(dpb::RollbackRequest { name: name.into() })
            .await
            .unwrap();
        rollbacks.push(started.elapsed());
        assert_eq!(serving(&mut d, name).await, 1);
    }
    let (kafka_moves, kafka_log) = on_kafka(width, &data, duration, 10).await.unzip();

    rollbacks.sort();
    moves_in_process.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "\n== deployments (logreg and a linear SVM as versions 1 and 2; open loop at {rate}/s)"
    );
    println!(
        "steady p50/p99 {:.3}/{:.3} ms; during {moves} alias moves {:.3}/{:.3} ms (p99 x{:.2}, goal <= 1.2)",
        pct(&steady, 50.0),
        pct(&steady, 99.0),
        pct(&swapping, 50.0),
        pct(&swapping, 99.0),
        pct(&swapping, 99.0) / pct(&steady, 99.0)
    );
    println!(
        "shadow on every request: primary p99 {:.3} ms against {:.3} ms without (x{:.2}, goal <= 1.05)",
        pct(&shadowed, 99.0),
        pct(&baseline, 99.0),
        pct(&shadowed, 99.0) / pct(&baseline, 99.0)
    );
    log.print("in-process");
    if let Some(k) = &kafka_log {
        k.print("on Kafka");
    }
    println!(
        "rollback to 100% on the previous version: median {:.1} ms (goal < 1000)",
        ms(median(&rollbacks))
    );
    println!(
        "alias move to serving, in-process bus: median {:.1} ms{}",
        ms(median(&moves_in_process)),
        match &kafka_moves {
            Some(k) => format!("; Kafka: median {:.1} ms", ms(median(k))),
            None => "; Kafka: not measured (MLOPS_TEST_KAFKA_BROKERS unset)".into(),
        }
    );
    json!({
        "open_loop_rate_per_s": rate,
        "steady": lat(&steady),
        "during_alias_moves": {"moves": moves, "latency": lat(&swapping)},
        "shadow": {"without": lat(&baseline), "with": lat(&shadowed)},
        "prediction_log_rows_per_s": log.json(),
        "prediction_log_rows_per_s_kafka": kafka_log.as_ref().map(LogCost::json),
        "rollback_ms": rollbacks.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "alias_move_to_serving_ms": {
            "in_process": moves_in_process.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "kafka": kafka_moves.map(|k| k.iter().map(|d| ms(*d)).collect::<Vec<_>>()),
        },
    })
}

/// Sets `name`'s traffic to a shadow on every request to version 2, or to none.
async fn set_shadow(d: &mut Deployments, name: &str, on: bool) {
    let shadow = on.then_some(dpb::Shadow {
        target: Some(dpb::Target {
            choice: Some(dpb::target::Choice::Version(2)),
        }),
        share: 1.0,
        fault: None,
    });
    d.set_traffic(dpb::SetTrafficRequest {
        name: name.into(),
        traffic: Some(dpb::Traffic {
            shadow,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
}

/// The prediction log's cost in the serving process, as [`log_cost`] measures it.
struct LogCost {
    /// Saturation rows/s with every prediction logged.
    logged: f64,
    /// And with none.
    unlogged: f64,
    /// The process's CPU time per request with every prediction logged.
    cpu_logged: Duration,
    /// And with none.
    cpu_unlogged: Duration,
    /// The log's own CPU time per prediction, apart from serving ([`record_cost`], on the
    /// in-process bus), when it was measured.
    own: Option<Duration>,
    /// Predictions published on the bus over the logged phases, and dropped (the buffer
    /// full: the bus not keeping up).
    published: u64,
    dropped: u64,
    /// The broker's CPU time per request, logged and not, when it runs here
    /// (`MLOPS_TEST_KAFKA_PID`): it shares the two cores with serving.
    broker: Option<[Duration; 2]>,
}

impl LogCost {
    /// The log's own work as a share of an unlogged request's CPU time: the throughput it
    /// costs, apart from the noise of saturation runs.
    fn own_share(&self, own: Duration) -> f64 {
        own.as_secs_f64() / self.cpu_unlogged.as_secs_f64().max(f64::EPSILON)
    }

    /// Prints the figures; `bus` says where the events went.
    fn print(&self, bus: &str) {
        println!(
            "prediction log, {bus}: {:.0} rows/s on, {:.0} off (x{:.3}, goal >= 0.95); \
             process CPU per request {:.1} us on, {:.1} us off; {} predictions published, {} dropped",
            self.logged,
            self.unlogged,
            self.logged / self.unlogged,
            micros(self.cpu_logged),
            micros(self.cpu_unlogged),
            self.published,
            self.dropped,
        );
        if let Some([on, off]) = self.broker {
            println!(
                "  the broker's own CPU per request (on these cores too): {:.1} us on, {:.1} us off",
                micros(on),
                micros(off)
            );
        }
        if let Some(own) = self.own {
            println!(
                "prediction log alone: {:.2} us of CPU per prediction recorded and published \
                 in-process, {:.1}% of an unlogged request's CPU (x{:.3})",
                micros(own),
                self.own_share(own) * 100.0,
                1.0 / (1.0 + self.own_share(own)),
            );
        }
    }

    fn json(&self) -> Value {
        json!({"on": self.logged, "off": self.unlogged,
               "cpu_per_request_us": {"on": micros(self.cpu_logged), "off": micros(self.cpu_unlogged)},
               "own_cpu_per_prediction_us": self.own.map(micros),
               "own_share_of_request_cpu": self.own.map(|own| self.own_share(own)),
               "published": self.published, "dropped": self.dropped,
               "broker_cpu_per_request_us": self.broker.map(|[on, off]| json!({"on": micros(on), "off": micros(off)}))})
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Saturation rows/s with the prediction log on and off, on one fresh replica whose
/// deployment is redeployed with its `prediction_log_sample` at 1 or 0 between phases (two
/// replicas alike differ by more than the log costs): warmed up each way, then measured in
/// turn as on, off, off, on, twice (so a drift in the process over time, which favours
/// whichever goes first, falls on both alike); the mean of each, and the process's CPU time
/// per request on each (clients included: they share it), and the broker's when `broker`
/// names its pid.
async fn log_cost(
    sb: &Sandbox,
    name: &str,
    width: usize,
    data: &Arc<Vec<f32>>,
    duration: Duration,
    broker: Option<&str>,
) -> LogCost {
    let (replica, _dir) = replica(sb, name).await;
    let mut d = DeploymentServiceClient::new(
        Channel::from_shared(format!("http://{}", replica.api))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let shares = ["1", "0"];
    // A first phase each way, not counted: a model's first saturation is its slowest.
    for share in shares {
        log_share(&mut d, name, share).await;
        closed_loop(replica.api, name, width, data, 64, duration / 2).await;
    }
    let mut sums = [0.0f64; 2];
    let mut cpu = [Duration::ZERO; 2];
    let mut requests = [0.0f64; 2];
    let mut broker_cpu = [Duration::ZERO; 2];
    let counted = log_counters();
    for _ in 0..2 {
        for i in [0, 1, 1, 0] {
            log_share(&mut d, name, shares[i]).await;
            let cpu0 = process_cpu();
            let broker0 = broker.map(cpu_of);
            let started = Instant::now();
            let (rows, _) = closed_loop(replica.api, name, width, data, 64, duration).await;
            cpu[i] += process_cpu() - cpu0;
            if let (Some(pid), Some(before)) = (broker, broker0) {
                broker_cpu[i] += cpu_of(pid).saturating_sub(before);
            }
            requests[i] += rows * started.elapsed().as_secs_f64();
            sums[i] += rows / 4.0;
        }
    }
    replica.stop().await.unwrap();
    let (published, dropped) = log_counters();
    LogCost {
        logged: sums[0],
        unlogged: sums[1],
        cpu_logged: cpu[0].div_f64(requests[0].max(1.0)),
        cpu_unlogged: cpu[1].div_f64(requests[1].max(1.0)),
        own: None,
        published: published - counted.0,
        dropped: dropped - counted.1,
        broker: broker.map(|_| {
            [
                broker_cpu[0].div_f64(requests[0].max(1.0)),
                broker_cpu[1].div_f64(requests[1].max(1.0)),
            ]
        }),
    }
}

/// The process's prediction-log counters: predictions published and dropped (every
/// replica in this process counts into the same two).
fn log_counters() -> (u64, u64) {
    let count = |name: &str| mlops_runtime::metrics::int_counter(name, name).get();
    (
        count("mlops_inference_predictions_logged_total"),
        count("mlops_inference_prediction_log_dropped_total"),
    )
}

/// [`log_cost`] on the in-process bus `sb` uses, with the log's own CPU time per
/// prediction ([`record_cost`], measured on an in-process bus too).
async fn in_process_log_cost(
    sb: &Sandbox,
    name: &str,
    width: usize,
    data: &Arc<Vec<f32>>,
    duration: Duration,
) -> LogCost {
    let own = Some(record_cost(width, 200_000).await);
    LogCost {
        own,
        ..log_cost(sb, name, width, data, duration, None).await
    }
}

/// The prediction log's own CPU time per prediction, apart from serving: `n` predictions of
/// the logistic regression's shape (`width` float inputs; a label and two probabilities out)
/// recorded and published on an in-process bus, as the process's CPU time over `n`; after a
/// first `n`, not counted, that grow the heap to what the log and the bus hold at this pace.
/// Counted, that growth was most of the figure: the kernel zeroing pages the process touched
/// for the first time (0.5 s of CPU over the first 200,000 predictions on this VM), which
/// serving pays once, not per prediction.
async fn record_cost(width: usize, n: usize) -> Duration {
    use mlops_inference::prediction_log::{Prediction, PredictionLog};
    use mlops_model::{DataType, IoSpec, Tensor, TensorData};

    let bus: Arc<dyn mlops_events::EventBus> = Arc::new(mlops_events::memory::InProcessBus::new());
    let (log, publisher) = PredictionLog::new(bus, 1.0, 1 << 16, "bench");
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let publishing = tokio::spawn(publisher.run(stop.clone()));
    let input = Tensor::new(vec![1, width], TensorData::F32(vec![0.5; width])).unwrap();
    let outputs = [
        Tensor::new(vec![1], TensorData::I64(vec![1])).unwrap(),
        Tensor::new(vec![1, 2], TensorData::F32(vec![0.25, 0.75])).unwrap(),
    ];
    let spec = |name: &str, dtype, shape| IoSpec {
        name: name.into(),
        dtype,
        shape,
    };
    let specs = [
        spec("label", DataType::I64, vec![None]),
        spec("probabilities", DataType::F32, vec![None, Some(2)]),
    ];
    let input_specs = [spec("float_input", DataType::F32, vec![None, Some(width)])];
    let mut cpu = Duration::ZERO;
    let dropped = log_counters().1;
    // Two rounds; the second's figure stands.
    for _ in 0..2 {
        let cpu0 = process_cpu();
        for i in 0..n {
            let p = Prediction {
                request_id: "6f1d8c2e-3b7a-4c55-8e0f-2a9b4d1c7e63",
                deployment: "bench",
                model_id: "0b6c1c0e-4a0b-4b5e-9a53-1d0c6f4e7f10",
                version: 1,
                variant: "stable",
            };
            let pending = log.begin(&p, std::slice::from_ref(&input), &input_specs);
            log.record(&p, pending, &outputs, &specs, Duration::from_micros(250));
            // A request's pace, roughly: the publisher runs on the other core meanwhile.
            if i % 256 == 255 {
                tokio::task::yield_now().await;
            }
            // And no faster than the publisher takes them (4,096 a linger of 5 ms): a
            // prediction dropped from a full buffer costs less than one published.
            if i % 4096 == 4095 {
                tokio::time::sleep(Duration::from_millis(6)).await;
            }
        }
        // The publisher's last linger: what this round recorded is published within it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cpu = process_cpu() - cpu0;
    }
    stop.cancel();
    publishing.await.unwrap().unwrap();
    assert_eq!(
        log_counters().1,
        dropped,
        "the log dropped predictions: the figure would leave out their publishing"
    );
    cpu.div_f64(n as f64)
}

/// The prediction log's cost alone (`BENCH_INFERENCE_PARTS=prediction-log`), to profile it:
/// in-process, and on Kafka when a broker is given.
pub async fn run_log_only(sb: &Sandbox, duration: Duration) -> Value {
    let name = "swapped";
    two_versions(sb, name).await;
    let (width, data) = first_rows("logreg");
    let data = Arc::new(data);
    let cost = in_process_log_cost(sb, name, width, &data, duration).await;
    cost.print("in-process");
    let kafka = on_kafka(width, &data, duration, 0).await.map(|(_, k)| k);
    if let Some(k) = &kafka {
        k.print("on Kafka");
    }
    json!({"prediction_log_rows_per_s": cost.json(),
           "prediction_log_rows_per_s_kafka": kafka.as_ref().map(LogCost::json)})
}

/// Another inference replica on `sb` with `name` deployed, and its state directory.
async fn replica(sb: &Sandbox, name: &str) -> (Replica, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let replica = sb
        .inference_replica(dir.path(), None, |_| {})
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", replica.api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    DeploymentServiceClient::new(channel)
        .deploy(dpb::DeployRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    (replica, dir)
}

/// Redeploys `name` logging `share` of its predictions.
async fn log_share(d: &mut Deployments, name: &str, share: &str) {
    d.deploy(dpb::DeployRequest {
        name: name.into(),
        parameters: [("prediction_log_sample".to_owned(), share.to_owned())].into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// On Kafka, when a broker is given: alias moves to serving, `moves` times, then the
/// prediction log's cost with its events published to the broker.
async fn on_kafka(
    width: usize,
    data: &Arc<Vec<f32>>,
    duration: Duration,
    moves: usize,
) -> Option<(Vec<Duration>, LogCost)> {
    std::env::var("MLOPS_TEST_KAFKA_BROKERS").ok()?;
    let sb = Sandbox::builder()
        .bus(Bus::Kafka)
        .registry()
        .service::<Inference>(|_| {})
        .start()
        .await
        .expect("a sandbox on Kafka");
    let name = "swapped-kafka";
    let mut d = two_versions(&sb, name).await;
    let mut took = vec![];
    let mut v = 2;
    for _ in 0..moves {
        took.push(move_and_wait(&sb, &mut d, name, v).await);
        v = 3 - v;
    }
    if serving(&mut d, name).await != 1 {
        move_and_wait(&sb, &mut d, name, 1).await;
    }
    let broker = std::env::var("MLOPS_TEST_KAFKA_PID").ok();
    let log = log_cost(&sb, name, width, data, duration, broker.as_deref()).await;
    sb.stop().await.unwrap();
    took.sort();
    Some((took, log))
}
