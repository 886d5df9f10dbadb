//! The closed loop, end to end, through gRPC and the bus: a champion serves; the
//! monitoring service takes its reference from the prediction log, then sees traffic with
//! a shifted distribution drift; the retraining service joins fresh features, runs the example trainer
//! (`examples/rust/trainer.rs`) against a tracking run, registers and evaluates the
//! candidate beside the champion, passes the registry's gate and canaries it through the
//! deployment's automatic analysis to promotion, after which the deployment's answers are
//! the new model's. Also: a worse candidate stopped by the gate, a faulty canary rolled
//! back, a drift delivered three times with the service restarted mid-pipeline (one
//! retrain, resumed, one promotion), and bad policies refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array};
use mlops_events::Envelope;
use mlops_feature_store::FeatureStore;
use mlops_inference::Inference;
use mlops_kit::{Composition, Local};
use mlops_monitoring::Monitoring;
use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::inference::v1 as dpb;
use mlops_proto::monitoring::v1 as mpb;
use mlops_proto::monitoring::v1::monitoring_service_client::MonitoringServiceClient;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::retraining::v1 as pb;
use mlops_proto::retraining::v1::retraining_service_client::RetrainingServiceClient;
use mlops_proto::triton as oip;
use mlops_retraining::Retraining;
use mlops_runtime::shutdown::CancellationToken;
use mlops_tests::{Bus, Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

use crate::deployments::{deployments, follow};
use crate::feature_store::{apply, batch, times, write_parquet, HOUR};
use crate::inference::{f32s, oip as oip_client, raw_f32};

type Client = RetrainingServiceClient<Channel>;

pub(crate) const TRAINER: &str = env!("CARGO_BIN_EXE_mlops-example-trainer");

const DEFS: &str = r#"
entities:
  - name: house
    join_keys: [house_id]
    value_type: int64
sources:
  - name: house_source
    type: parquet
    path: houses.parquet
feature_views:
  - name: house
    entities: [house]
    source: house_source
    schema:
      - {name: a, dtype: float64}
      - {name: b, dtype: float64}
"#;

/// Houses 0..N with two features, known from hour 1.
const HOUSES: i64 = 200;

fn features(i: i64) -> (f64, f64) {
    (
        ((i * 37) % 101) as f64 / 10.0,
        ((i * 53) % 89) as f64 / 10.0,
    )
}

/// The world before the drift, and after.
fn old_world(a: f64, b: f64) -> f64 {
    a + b + 1.0
}
fn new_world(a: f64, b: f64) -> f64 {
    2.0 * a - 3.0 * b + 1.0
}

/// The feature source, and the training and evaluation entity tables labelled by `world`
/// (even houses train, odd ones evaluate), on the feature store's offline store.
fn write_world(root: &std::path::Path, world: fn(f64, f64) -> f64) {
    let ids: Vec<i64> = (0..HOUSES).collect();
    let (a, b): (Vec<f64>, Vec<f64>) = ids.iter().map(|i| features(*i)).unzip();
    write_parquet(
        &root.join("houses.parquet"),
        &batch(vec![
            (
                "house_id",
                Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
            ),
            ("event_timestamp", times(&vec![Some(HOUR); ids.len()])),
            ("a", Arc::new(Float64Array::from(a))),
            ("b", Arc::new(Float64Array::from(b))),
        ]),
    );
    for (file, parity) in [("train.parquet", 0), ("eval.parquet", 1)] {
        let ids: Vec<i64> = (0..HOUSES).filter(|i| i % 2 == parity).collect();
        let y: Vec<f64> = ids
            .iter()
            .map(|i| {
                let (a, b) = features(*i);
                world(a, b)
            })
            .collect();
        write_parquet(
            &root.join("entities").join(file),
            &batch(vec![
                (
                    "house_id",
                    Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
                ),
                ("event_timestamp", times(&vec![Some(2 * HOUR); ids.len()])),
                ("y", Arc::new(Float64Array::from(y))),
            ]),
        );
    }
}

/// The policies' cooldown: at most one retrain started per 2 s, whatever triggers it.
const COOLDOWN_SECONDS: i64 = 2;

pub(crate) fn policy(model: &str) -> pb::Policy {
    pb::Policy {
        model: model.into(),
        triggers: Some(pb::Triggers {
            drift: true,
            ..Default::default()
        }),
        cooldown_seconds: COOLDOWN_SECONDS,
        trainer: Some(pb::Trainer {
            command: vec![TRAINER.into()],
            ..Default::default()
        }),
        data: Some(pb::Data {
            features: vec!["house:a".into(), "house:b".into()],
            label: "y".into(),
            training: Some(pb::Dataset {
                entity_table: "entities/train.parquet".into(),
                window_seconds: 0,
            }),
            evaluation: Some(pb::Dataset {
                entity_table: "entities/eval.parquet".into(),
                window_seconds: 0,
            }),
            task: "regression".into(),
        }),
        gate: Some(pb::Gate {
            thresholds: vec![rpb::MetricThreshold {
                metric: "rmse".into(),
                threshold: Some(0.5),
                max_absolute_degradation: Some(0.0),
                greater_is_better: false,
                ..Default::default()
            }],
        }),
        rollout: Some(pb::Rollout {
            canary_weight: 50,
            analysis: Some(dpb::Analysis {
                interval_ms: 300,
                max_error_rate: 0.05,
                min_requests: 3,
                failure_limit: 0,
                consecutive_error_limit: 3,
                successes_to_promote: 2,
                ..Default::default()
            }),
            fault: None,
            timeout_seconds: 60,
        }),
        ..Default::default()
    }
}

pub(crate) async fn client(addr: std::net::SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the retraining service accepts connections");
    RetrainingServiceClient::new(channel)
}

/// Tracking, the registry, the feature store (definitions applied, the old world written),
/// inference and monitoring (following the prediction log); retraining is started by the
/// caller ([`retraining`]).
pub(crate) async fn platform(bus: Bus) -> Sandbox {
    let group = format!("it-retraining-{}", uuid::Uuid::new_v4().simple());
    let sb = Sandbox::builder()
        .bus(bus)
        .registry()
        .service::<FeatureStore>(|_| {})
        .service::<Inference>(|_| {})
        .service::<Monitoring>(move |c| c.prediction_log_group = group)
        .start()
        .await
        .expect("sandbox starts");
    write_world(&sb.dir().join("features"), old_world);
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("feature-store").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut fs =
        mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient::new(
            channel,
        );
    apply(&mut fs, DEFS).await.expect("definitions apply");
    sb
}

/// The retraining service in a composition of its own over the sandbox's services and
/// bus (so a test can kill it alone), its data under `dir`.
pub(crate) struct Retrainer {
    pub(crate) addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// `database_url`: its PostgreSQL database (None: SQLite under `dir`).
async fn retraining_on(
    sb: &Sandbox,
    dir: &std::path::Path,
    database_url: Option<String>,
) -> Retrainer {
    retraining_with(sb, dir, move |cfg| {
        if let Some(url) = database_url {
            cfg.db.database_url = url;
        }
    })
    .await
}

/// With its settings changed by `tweak`.
pub(crate) async fn retraining_with(
    sb: &Sandbox,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut mlops_retraining::RetrainingConfig) + 'static,
) -> Retrainer {
    let mut c = Composition::new(Local::new(dir).with_bus(sb.bus.clone()));
    let (tracking, registry) = (sb.tracking().grpc, sb.registry().grpc);
    let (features, inference) = (
        sb.addresses("feature-store").api,
        sb.addresses("inference").api,
    );
    let a = c
        .start::<Retraining>(move |cfg| {
            cfg.tracking_addr = format!("http://{tracking}");
            cfg.registry_addr = format!("http://{registry}");
            cfg.feature_store_addr = format!("http://{features}");
            cfg.inference_addr = format!("http://{inference}");
            cfg.poll_interval_ms = 50;
            cfg.trigger_group = format!("it-retraining-{}", uuid::Uuid::new_v4().simple());
            tweak(cfg);
        })
        .await
        .expect("retraining starts");
    let stop = CancellationToken::new();
    let task = tokio::spawn(c.run(stop.clone()));
    Retrainer {
        addr: a.api,
        stop,
        task,
    }
}

pub(crate) async fn retraining(sb: &Sandbox, dir: &std::path::Path) -> Retrainer {
    retraining_on(sb, dir, None).await
}

impl Retrainer {
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Waits until the newest retrain of `model` is in a terminal state; answers it.
pub(crate) async fn finished(c: &mut Client, model: &str, id: &str) -> pb::Retrain {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = c
            .get_retrain(pb::GetRetrainRequest { id: id.into() })
            .await
            .expect("get retrain")
            .into_inner()
            .retrain
            .unwrap();
        if matches!(
            r.state.as_str(),
            "PROMOTED" | "GATE_FAILED" | "ROLLED_BACK" | "FAILED"
        ) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "retrain of {model} stuck in {}: {:#?}",
            r.state,
            r.transitions
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn monitoring(sb: &Sandbox) -> MonitoringServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("monitoring").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    MonitoringServiceClient::new(channel)
}

pub(crate) async fn retrains(c: &mut Client, model: &str) -> Vec<pb::Retrain> {
    c.list_retrains(pb::ListRetrainsRequest {
        model: model.into(),
        limit: 0,
    })
    .await
    .unwrap()
    .into_inner()
    .retrains
}

pub(crate) async fn champion(sb: &Sandbox, model: &str) -> i64 {
    sb.registry_client()
        .await
        .get_model_version_by_alias(rpb::GetModelVersionByAliasRequest {
            name: model.into(),
            alias: "champion".into(),
        })
        .await
        .map(|v| v.into_inner().model_version.unwrap().version)
        .unwrap_or(0)
}

/// The first model: a manual retrain of a model with no champion and no deployment is
/// gated on the absolute floor and becomes the champion; the model is then deployed
/// following its champion. Returns once the cooldown that retrain started is over.
async fn first_champion(sb: &Sandbox, c: &mut Client, model: &str) {
    c.set_policy(pb::SetPolicyRequest {
        policy: Some(policy(model)),
    })
    .await
    .expect("policy set");
    let r = c
        .start_retrain(pb::StartRetrainRequest {
            model: model.into(),
            force: false,
            reason: "the first model".into(),
        })
        .await
        .expect("manual retrain")
        .into_inner()
        .retrain
        .unwrap();
    let r = finished(c, model, &r.id).await;
    assert_eq!(r.state, "PROMOTED", "{:#?}", r.transitions);
    assert!(r.reason.contains("not deployed"), "{}", r.reason);
    assert_eq!(champion(sb, model).await, r.version);
    let mut d = deployments(sb.addresses("inference").api).await;
    d.deploy(dpb::DeployRequest {
        name: model.into(),
        target: follow("champion"),
        ..Default::default()
    })
    .await
    .expect("deploy");
    let over = r.created_at + COOLDOWN_SECONDS * 1000;
    let wait = over - mlops_storage::now_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64 + 10)).await;
    }
}

/// The deployment's answer for house `i`.
async fn predict(o: &mut crate::inference::Oip, model: &str, i: i64) -> Result<f64, tonic::Status> {
    let (a, b) = features(i);
    infer(o, model, a, b).await
}

/// The deployment's answer for the features `a` and `b`.
async fn infer(
    o: &mut crate::inference::Oip,
    model: &str,
    a: f64,
    b: f64,
) -> Result<f64, tonic::Status> {
    let out = o
        .model_infer(oip::ModelInferRequest {
            model_name: model.into(),
            inputs: vec![oip::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![1, 2],
                ..Default::default()
            }],
            raw_input_contents: vec![raw_f32(&[a as f32, b as f32])],
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(f32s(&out.raw_output_contents[0])[0])
}

/// Requests to `model` without pause until the flag is set (the canary's analysis needs them).
fn load(sb: &Sandbox, model: &'static str) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    load_shifted(sb, model, 0.0)
}

/// Requests whose features are moved by `shift`, without pause until the flag is set.
fn load_shifted(
    sb: &Sandbox,
    model: &'static str,
    shift: f64,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = sb.addresses("inference").api;
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut o = oip_client(addr).await;
        let mut i = 0;
        while !flag.load(Ordering::Relaxed) {
            let (a, b) = features(i % HOUSES);
            let _ = infer(&mut o, model, a + shift, b + shift).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (stop, task)
}

/// A drift of the monitor watching `model`, as the monitoring service publishes it.
fn drift(model: &str) -> Envelope {
    Envelope::of(
        topics::MONITORING,
        "/mlops/monitoring",
        "houses",
        "monitors/houses",
        &ev::DriftDetected {
            monitor: "houses".into(),
            model: model.into(),
            report_id: "r-1".into(),
            share: 1.0,
            drift_share: 0.5,
            ..Default::default()
        },
    )
}

fn at(r: &pb::Retrain, state: &str) -> i64 {
    r.transitions
        .iter()
        .find(|t| t.state == state)
        .unwrap_or_else(|| panic!("no {state} in {:#?}", r.transitions))
        .time
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_retrains_gates_canaries_and_promotes_and_the_answers_change() {
    closed_loop(Bus::InProcess).await
}

/// Drift detected on shifted traffic → retrain → gate → canary → promotion, on `bus`
/// (also run on tansu in `kafka`).
pub(crate) async fn closed_loop(bus: Bus) {
    let model = "houses";
    let sb = platform(bus).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let rt = retraining(&sb, rt_dir.path()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    let mut o = oip_client(sb.addresses("inference").api).await;
    let (a, b) = features(3);
    let before = predict(&mut o, model, 3).await.unwrap();
    assert!((before - old_world(a, b)).abs() < 1e-3, "{before}");

    // monitoring takes its reference from the first 300 predictions served
    let mut m = monitoring(&sb).await;
    m.create_monitor(mpb::CreateMonitorRequest {
        name: "houses".into(),
        model: model.into(),
        // one DriftDetected: the windows after the shift keep drifting
        cooldown_seconds: 3600,
        prediction_log: Some(mpb::PredictionLogSource {
            deployment: model.into(),
            window_rows: 200,
            input_columns: vec!["a".into(), "b".into()],
            reference_rows: 300,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("monitor created");
    let (stop, traffic) = load(&sb, model);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mon = m
            .get_monitor(mpb::GetMonitorRequest {
                name: "houses".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if mon.reference_version == 1 && mon.capture.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "no reference captured: {mon:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();

    // the world changes: new labels in the feature store, shifted traffic
    write_world(&sb.dir().join("features"), new_world);
    let (stop, traffic) = load_shifted(&sb, model, 5.0);
    let drifted = Instant::now();
    let r = loop {
        let all = retrains(&mut c, model).await;
        if all.len() == 2 {
            break all[0].clone();
        }
        assert!(
            drifted.elapsed() < Duration::from_secs(30),
            "no retrain: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((r.trigger.as_str(), r.policy_version), ("drift", 1));
    assert!(
        r.trigger_detail.contains("monitor houses"),
        "{}",
        r.trigger_detail
    );
    let r = finished(&mut c, model, &r.id).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(r.state, "PROMOTED", "{:#?}", r.transitions);
    let states: Vec<&str> = r.transitions.iter().map(|t| t.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "TRIGGERED",
            "TRAINING",
            "TRAINED",
            "REGISTERED",
            "EVALUATED",
            "GATED",
            "CANARY",
            "PROMOTED"
        ]
    );
    assert_eq!((r.version, r.champion_version), (2, 1));
    assert!(
        r.candidate_metrics["rmse"] < 0.01,
        "{:?}",
        r.candidate_metrics
    );
    assert!(r.champion_metrics["rmse"] > 1.0, "{:?}", r.champion_metrics);
    assert_eq!(champion(&sb, model).await, 2);

    // the gate's result and both evaluations are in the registry, on the same dataset
    let mut g = sb.registry_client().await;
    let gate = g
        .list_gate_results(rpb::ListGateResultsRequest {
            name: model.into(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(gate[0].passed && gate[0].baseline_version == 1, "{gate:#?}");
    assert_eq!(gate[0].dataset, "entities/eval.parquet");
    // the run the trainer logged to is finished, with the trainer's metrics
    let run = sb
        .tracking_client()
        .await
        .get_run(mlops_proto::tracking::v1::GetRunRequest {
            run_id: r.run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(
        run.info.unwrap().status(),
        mlops_proto::tracking::v1::RunStatus::Finished
    );
    assert!(run
        .data
        .unwrap()
        .metrics
        .iter()
        .any(|m| m.key == "train_rmse"));

    // every replica answers with the new champion
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let p = predict(&mut o, model, 3).await.unwrap();
        if (p - new_world(a, b)).abs() < 1e-2 || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!((after - new_world(a, b)).abs() < 1e-2, "{after}");

    // the platform's own time: everything but the trainer's run
    let training = at(&r, "TRAINED") - at(&r, "TRAINING");
    // the drift's report, stored in the transaction that published DriftDetected
    let reports = m
        .list_reports(mpb::ListReportsRequest {
            monitor: "houses".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .reports;
    let detected = reports
        .iter()
        .filter(|rep| rep.dataset_drift)
        .map(|rep| rep.created_at_ms)
        .min()
        .expect("a drifted report");
    assert!(detected <= r.created_at);
    let to_canary = at(&r, "CANARY") - detected - training;
    let analysis = 2 * 300;
    let to_promotion = at(&r, "PROMOTED") - at(&r, "CANARY") - analysis;
    eprintln!(
        "closed loop ({bus:?}): drift detected → canary {to_canary} ms of platform time \
         (the trainer ran {training} ms; drift event → retrain started {} ms); canary's last \
         interval → promoted {to_promotion} ms",
        r.created_at - detected
    );
    rt.stop().await;
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_candidate_fails_the_gate_and_the_champion_stays() {
    let model = "worse";
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let rt = retraining(&sb, rt_dir.path()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    // the next trainer shrinks its weights: a worse model on the same world
    let mut p = policy(model);
    p.trainer
        .as_mut()
        .unwrap()
        .parameters
        .insert("shrink".into(), "0.5".into());
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    let r = c
        .start_retrain(pb::StartRetrainRequest {
            model: model.into(),
            force: true,
            reason: "try a shrunk model".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .retrain
        .unwrap();
    assert_eq!(r.trigger, "manual");
    let r = finished(&mut c, model, &r.id).await;
    assert_eq!(r.state, "GATE_FAILED", "{:#?}", r.transitions);
    // the policy's parameter is the run's param
    let run = sb
        .tracking_client()
        .await
        .get_run(mlops_proto::tracking::v1::GetRunRequest {
            run_id: r.run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert!(run
        .data
        .unwrap()
        .params
        .iter()
        .any(|p| p.key == "shrink" && p.value == "0.5"));
    assert!(r.reason.contains("rmse"), "{}", r.reason);
    assert!(
        r.candidate_metrics["rmse"] > r.champion_metrics["rmse"],
        "{r:#?}"
    );
    assert_eq!(champion(&sb, model).await, 1);
    let d = deployments(sb.addresses("inference").api)
        .await
        .get_deployment(dpb::GetDeploymentRequest { name: model.into() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(d.version, 1);
    assert!(d.traffic.unwrap_or_default().variants.is_empty());
    rt.stop().await;
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_errors_in_canary_is_rolled_back() {
    let model = "faulty";
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let rt = retraining(&sb, rt_dir.path()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    write_world(&sb.dir().join("features"), new_world);
    let mut p = policy(model);
    p.rollout.as_mut().unwrap().fault = Some(dpb::Fault {
        error_rate: 0.5,
        delay_us: 0,
    });
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    let (stop, traffic) = load(&sb, model);
    let r = c
        .start_retrain(pb::StartRetrainRequest {
            model: model.into(),
            force: true,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .retrain
        .unwrap();
    let r = finished(&mut c, model, &r.id).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(r.state, "ROLLED_BACK", "{:#?}", r.transitions);
    assert!(
        r.reason.contains("rolled the deployment back"),
        "{}",
        r.reason
    );
    assert!(r.transitions.iter().any(|t| t.state == "CANARY"));
    assert_eq!(champion(&sb, model).await, 1);
    rt.stop().await;
    sb.stop().await.unwrap();
}

async fn a_drift_delivered_three_times_with_the_service_restarted_midway_retrains_once(
    db: Database,
) {
    let model = "resumed";
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let url = mlops_tests::database_url(db).await;
    let rt = retraining_on(&sb, rt_dir.path(), url.clone()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    write_world(&sb.dir().join("features"), new_world);
    // the next trainer takes a second, so the service stops while it runs
    let mut p = policy(model);
    p.trainer.as_mut().unwrap().command =
        vec!["sh".into(), "-c".into(), format!("sleep 1; exec {TRAINER}")];
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    // the same event three times (a redelivery), then a second drift inside the cooldown
    let e = drift(model);
    for _ in 0..3 {
        sb.bus.publish(std::slice::from_ref(&e)).await.1.unwrap();
    }
    sb.bus.publish(&[drift(model)]).await.1.unwrap();
    let (stop, traffic) = load(&sb, model);
    // stopped once the retrain is under way (its trainer is killed with it), started again
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let all = retrains(&mut c, model).await;
        if let Some(r) = all
            .iter()
            .find(|r| r.trigger == "drift" && r.state == "TRAINING")
        {
            break r.id.clone();
        }
        assert!(Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    rt.stop().await;
    let rt = retraining_on(&sb, rt_dir.path(), url).await;
    let mut c = client(rt.addr).await;
    let r = finished(&mut c, model, &id).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(r.state, "PROMOTED", "{:#?}", r.transitions);
    // resumed: the trainer killed with the service ran again, on the same run
    assert_eq!(r.attempts, 2, "{r:#?}");
    let drifts: Vec<_> = retrains(&mut c, model)
        .await
        .into_iter()
        .filter(|r| r.trigger == "drift")
        .collect();
    assert_eq!(drifts.len(), 1, "{drifts:#?}");
    assert_eq!(champion(&sb, model).await, 2);
    // one version registered by the retrain, one promotion
    let versions = sb
        .registry_client()
        .await
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: format!("name = '{model}'"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions;
    assert_eq!(versions.len(), 2, "{versions:#?}");
    rt.stop().await;
    sb.stop().await.unwrap();
}

async fn bad_policies_and_requests_are_refused_with_what_to_fix(db: Database) {
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let url = mlops_tests::database_url(db).await;
    let rt = retraining_on(&sb, rt_dir.path(), url).await;
    let mut c = client(rt.addr).await;
    let mut p = policy("m");
    p.data.as_mut().unwrap().features = vec!["nocolon".into()];
    let e = c
        .set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("`nocolon` is not a feature reference"),
        "{}",
        e.message()
    );
    let mut p = policy("m");
    p.rollout
        .as_mut()
        .unwrap()
        .analysis
        .as_mut()
        .unwrap()
        .successes_to_promote = 0;
    let e = c
        .set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("successes_to_promote"),
        "{}",
        e.message()
    );
    let e = c
        .start_retrain(pb::StartRetrainRequest {
            model: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("no retraining policy"),
        "{}",
        e.message()
    );
    // a policy, then the cooldown holds a second manual retrain unless forced; its
    // trainer outlives its time limit
    let mut slow = policy("m");
    let trainer = slow.trainer.as_mut().unwrap();
    trainer.command = vec!["sleep".into(), "30".into()];
    trainer.timeout_seconds = 1;
    let stored = c
        .set_policy(pb::SetPolicyRequest {
            policy: Some(slow.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(stored.version, 1);
    let again = c
        .set_policy(pb::SetPolicyRequest { policy: Some(slow) })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(again.version, 2);
    let first = c
        .start_retrain(pb::StartRetrainRequest {
            model: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .retrain
        .unwrap();
    let e = c
        .start_retrain(pb::StartRetrainRequest {
            model: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("cooldown"), "{}", e.message());
    let e = c
        .start_retrain(pb::StartRetrainRequest {
            model: "m".into(),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("max_concurrent"), "{}", e.message());
    let r = finished(&mut c, "m", &first.id).await;
    assert_eq!(r.state, "FAILED", "{:#?}", r.transitions);
    assert!(
        r.reason
            .starts_with("training: the trainer ran longer than its timeout (1 s)"),
        "{}",
        r.reason
    );
    let e = c
        .get_retrain(pb::GetRetrainRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .delete_policy(pb::DeletePolicyRequest {
            model: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    rt.stop().await;
    sb.stop().await.unwrap();
}

crate::on_both_backends!(
    a_drift_delivered_three_times_with_the_service_restarted_midway_retrains_once,
    bad_policies_and_requests_are_refused_with_what_to_fix,
);
