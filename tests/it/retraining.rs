//! The closed loop, end to end, through gRPC and the bus: a champion serves; the
//! monitoring service takes its reference from the prediction log, then sees traffic with
//! a shifted distribution drift; the retraining service joins fresh features, runs the example trainer
//! (`examples/rust/trainer.rs`) against a tracking run, registers and evaluates the
//! candidate beside the champion, passes the registry's gate and canaries it through the
//! deployment's automatic analysis to promotion, after which the deployment's answers are
//! the new model's; the same on tansu in `kafka`. The other cases are in
//! `retraining_cases`; the Job runner's in `retraining_k8s`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use mlops_retraining::Retraining;
use mlops_runtime::shutdown::CancellationToken;
use mlops_tests::{Bus, Sandbox};
use tonic::transport::Channel;

use crate::deployments::{deployments, follow};
pub(crate) use mlops_tests::houses::{self, features, new_world, old_world, write_world, HOUSES};

use crate::feature_store::apply;
use crate::inference::oip as oip_client;

pub(crate) type Client = RetrainingServiceClient<Channel>;

pub(crate) const TRAINER: &str = env!("CARGO_BIN_EXE_mlops-example-trainer");

/// The policies' cooldown: at most one retrain started per 2 s, whatever triggers it.
const COOLDOWN_SECONDS: i64 = 2;

pub(crate) fn policy(model: &str) -> pb::Policy {
    houses::policy(model, TRAINER, COOLDOWN_SECONDS, 300, 2)
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
    apply(&mut fs, houses::DEFS)
        .await
        .expect("definitions apply");
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
pub(crate) async fn retraining_on(
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
pub(crate) async fn first_champion(sb: &Sandbox, c: &mut Client, model: &str) {
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
pub(crate) async fn predict(
    o: &mut crate::inference::Oip,
    model: &str,
    i: i64,
) -> Result<f64, tonic::Status> {
    let (a, b) = features(i);
    infer(o, model, a, b).await
}

pub(crate) use mlops_tests::houses::infer;

/// Requests to `model` without pause until the flag is set (the canary's analysis needs them).
pub(crate) fn load(
    sb: &Sandbox,
    model: &'static str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    load_shifted(sb, model, 0.0)
}

/// Requests whose features are moved by `shift`, without pause until the flag is set.
pub(crate) fn load_shifted(
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
pub(crate) fn drift(model: &str) -> Envelope {
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

pub(crate) fn at(r: &pb::Retrain, state: &str) -> i64 {
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
    let run = crate::get_run(&mut sb.tracking_client().await, &r.run_id).await;
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
