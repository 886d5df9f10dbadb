//! Windows cut from the prediction log: predictions published on the bus as the inference
//! service publishes them become tumbling windows per model version (by rows and by
//! time), tested exactly as the same rows pushed over gRPC, with their `DriftDetected`
//! events; malformed and unmonitored events are skipped and counted; a redelivered batch
//! is applied once (the offsets are stored with the windows); the same on tansu in
//! `kafka`.

use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::RecordBatch;
use mlops_events::{Delivery, Envelope};
use mlops_monitoring::Monitoring;
use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::monitoring::v1 as pb;
use mlops_proto::monitoring::v1::monitoring_service_client::MonitoringServiceClient;
use mlops_tests::{Bus, Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

use crate::monitoring::{ipc, parquet, push, table, upload, Client};

pub(crate) async fn start(db: Database, bus: Bus) -> (Sandbox, Client) {
    let url = mlops_tests::database_url(db).await;
    let group = format!("it-monitoring-{}", uuid::Uuid::new_v4().simple());
    let sb = Sandbox::builder()
        .bus(bus)
        .service::<Monitoring>(move |c| {
            if let Some(url) = url {
                c.db.database_url = url;
            }
            c.prediction_log_group = group;
        })
        .start()
        .await
        .expect("sandbox starts");
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("monitoring").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (sb, MonitoringServiceClient::new(channel))
}

pub(crate) fn tensor(
    name: &str,
    datatype: &str,
    rows: usize,
    raw: Vec<u8>,
) -> ev::PredictionTensor {
    ev::PredictionTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![rows as i64],
        raw: raw.into(),
    }
}

/// Rows `range` of `t` (columns x, color, level) as one logged prediction of `deployment`
/// version `version` at `time_ms`: x and color the inputs, level the output.
fn prediction(
    t: &RecordBatch,
    range: std::ops::Range<usize>,
    deployment: &str,
    version: i64,
    time_ms: i64,
) -> Envelope {
    let n = range.len();
    let x = t.column(0).as_primitive::<Float64Type>();
    let color = t.column(1).as_string::<i32>();
    let level = t.column(2).as_primitive::<Int64Type>();
    let mut colors = Vec::new();
    for i in range.clone() {
        let s = color.value(i);
        colors.extend_from_slice(&(s.len() as u32).to_le_bytes());
        colors.extend_from_slice(s.as_bytes());
    }
    let msg = ev::PredictionLogged {
        request_id: uuid::Uuid::new_v4().to_string(),
        deployment: deployment.into(),
        model_id: format!("id-{deployment}"),
        version,
        variant: "stable".into(),
        inputs: vec![
            tensor(
                "x",
                "FP64",
                n,
                range
                    .clone()
                    .flat_map(|i| x.value(i).to_le_bytes())
                    .collect(),
            ),
            tensor("color", "BYTES", n, colors),
        ],
        outputs: vec![tensor(
            "level",
            "INT64",
            n,
            range.flat_map(|i| level.value(i).to_le_bytes()).collect(),
        )],
        latency_us: 100,
        time_unix_nano: time_ms * 1_000_000,
        replica: "it".into(),
    };
    Envelope::of(
        topics::PREDICTIONS,
        "/mlops/inference",
        &msg.model_id,
        format!("{deployment}/{version}"),
        &msg,
    )
}

/// `t`'s rows as predictions of 10 rows each.
pub(crate) fn predictions(
    t: &RecordBatch,
    deployment: &str,
    version: i64,
    time_ms: i64,
) -> Vec<Envelope> {
    (0..t.num_rows())
        .step_by(10)
        .map(|s| {
            prediction(
                t,
                s..(s + 10).min(t.num_rows()),
                deployment,
                version,
                time_ms,
            )
        })
        .collect()
}

pub(crate) fn source(rows: i64, seconds: i64) -> pb::PredictionLogSource {
    pb::PredictionLogSource {
        window_rows: rows,
        window_seconds: seconds,
        ..Default::default()
    }
}

async fn create(c: &mut Client, name: &str, log: pb::PredictionLogSource) {
    c.create_monitor(pb::CreateMonitorRequest {
        name: name.into(),
        model: "churn".into(),
        cooldown_seconds: 0,
        prediction_log: Some(log),
        ..Default::default()
    })
    .await
    .expect("created");
}

/// Waits until `monitor` has `n` reports; returns them oldest first.
pub(crate) async fn reports(c: &mut Client, monitor: &str, n: usize) -> Vec<pb::DriftReport> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = c
            .list_reports(pb::ListReportsRequest {
                monitor: monitor.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .reports;
        if list.len() >= n {
            assert_eq!(list.len(), n, "no more windows than expected: {list:?}");
            let mut full = Vec::new();
            for r in list.iter().rev() {
                let one = c
                    .get_report(pb::GetReportRequest {
                        monitor: monitor.into(),
                        id: r.id.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                full.push(one);
            }
            return full;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} reports of {monitor} after 60 s",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every column's verdict and score are those of the same rows pushed as a window.
fn same_verdicts(log: &pb::DriftReport, pushed: &pb::DriftReport) {
    assert_eq!(log.columns.len(), pushed.columns.len());
    for (a, b) in log.columns.iter().zip(&pushed.columns) {
        assert_eq!(
            (&a.column, &a.method, a.drifted),
            (&b.column, &b.method, b.drifted)
        );
        assert_eq!(
            (a.current_count, a.current_missing),
            (b.current_count, b.current_missing)
        );
        let (x, y) = (a.score.unwrap(), b.score.unwrap());
        assert!(
            (x - y).abs() <= 1e-12 * y.abs().max(1e-300),
            "{}: {x} from the log, {y} pushed",
            a.column
        );
    }
    assert_eq!(log.dataset_drift, pushed.dataset_drift);
}

pub(crate) async fn windows_from_the_log_are_tested_as_pushed_ones(db: Database, bus: Bus) {
    let (sb, mut c) = start(db, bus).await;
    let mut events = sb
        .bus
        .subscribe(
            &format!("it-{}", uuid::Uuid::new_v4().simple()),
            &[topics::MONITORING],
        )
        .await
        .unwrap();
    let name = "from-log";
    // a deployment of this test's own: a broker shared by the tests keeps the others'
    // predictions, which a new group reads from the start
    let churn = &format!("churn-{}", uuid::Uuid::new_v4().simple());
    create(
        &mut c,
        name,
        pb::PredictionLogSource {
            deployment: churn.clone(),
            ..source(1500, 0)
        },
    )
    .await;
    let reference = table(3000, 0.0, &[5, 3, 2]);
    upload(&mut c, name, pb::TableFormat::Parquet, &parquet(&reference))
        .await
        .unwrap();
    let same = table(1500, 0.0, &[5, 3, 2]);
    let shifted = table(1500, 1.5, &[1, 1, 8]);
    let now = mlops_storage::now_millis();
    let mut batch = predictions(&same, churn, 1, now);
    // skipped and counted, never stopping the follower: another deployment's, a broken
    // tensor, an event that is not a prediction
    batch.insert(20, prediction(&same, 0..10, "other", 1, now));
    let broken = ev::PredictionLogged {
        deployment: churn.clone(),
        inputs: vec![tensor("x", "FP64", 3, vec![1, 2, 3])],
        ..Default::default()
    };
    batch.insert(
        40,
        Envelope::of(
            topics::PREDICTIONS,
            "/mlops/inference",
            "id-churn",
            "churn/1",
            &broken,
        ),
    );
    let (_, published) = sb.bus.publish(&batch).await;
    published.unwrap();
    let mut second = predictions(&shifted, churn, 1, now);
    // version 2's rows go to their own window, which stays open
    second.insert(3, prediction(&shifted, 0..10, churn, 2, now));
    let (_, published) = sb.bus.publish(&second).await;
    published.unwrap();

    let got = reports(&mut c, name, 2).await;
    let pushed = [
        push(&mut c, name, pb::TableFormat::ArrowIpc, &ipc(&same))
            .await
            .unwrap(),
        push(&mut c, name, pb::TableFormat::ArrowIpc, &ipc(&shifted))
            .await
            .unwrap(),
    ];
    for (log, pushed) in got.iter().zip(&pushed) {
        assert_eq!(
            (log.source.as_str(), log.rows, log.model_version.as_str()),
            ("prediction_log", 1500, "1")
        );
        assert_eq!((log.window_start_ms, log.window_end_ms), (now, now));
        same_verdicts(log, pushed);
    }
    assert!(!got[0].dataset_drift && got[1].dataset_drift);
    assert!(got[1].event_published);

    // the drifting window's event names it
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("a DriftDetected event within 30 s")
            .unwrap();
        events.commit(&d).await.unwrap();
        let Ok(e) = d.envelope.decode::<ev::DriftDetected>() else {
            continue;
        };
        if e.monitor == name && e.report_id == got[1].id {
            assert_eq!((e.model_version.as_str(), e.window_rows), ("1", 1500));
            break;
        }
    }
    // the skipped events may sit in another partition (on Kafka their keys differ), read
    // after the windows closed: wait for them
    let lines = [
        "mlops_monitoring_prediction_log_events_total{outcome=\"malformed\"}",
        "mlops_monitoring_prediction_log_events_total{outcome=\"unmonitored\"}",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, metrics) = mlops_tests::http_get(sb.addresses("monitoring").admin, "/metrics")
            .await
            .unwrap();
        if lines.iter().all(|l| metrics.contains(l)) || tokio::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for line in lines {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    // version 2's window is open with its 10 rows
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mlops_monitoring_open_window_rows{")
                && l.contains(&format!("monitor=\"{name}\""))
                && l.contains("model_version=\"2\"")
                && l.ends_with(" 10")),
        "no open window of version 2 in\n{metrics}"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_from_the_log_are_tested_as_pushed_ones_on_sqlite() {
    windows_from_the_log_are_tested_as_pushed_ones(Database::Sqlite, Bus::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_from_the_log_are_tested_as_pushed_ones_on_postgres() {
    windows_from_the_log_are_tested_as_pushed_ones(Database::Postgres, Bus::InProcess).await;
}

/// Time windows: a prediction of a later window closes the open one; a window no later
/// prediction comes for closes a window's length after its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_windows_close_on_a_later_prediction_or_when_their_time_is_up() {
    let (sb, mut c) = start(Database::Sqlite, Bus::InProcess).await;
    let name = "by-time";
    create(&mut c, name, source(0, 2)).await;
    upload(
        &mut c,
        name,
        pb::TableFormat::Parquet,
        &parquet(&table(1000, 0.0, &[5, 3, 2])),
    )
    .await
    .unwrap();
    // two windows of 2 s, both over: the first closes when the second's predictions come,
    // the second when the sweeper sees its time (and a window's grace) is up
    let start_ms = (mlops_storage::now_millis() / 2000 - 5) * 2000;
    let mut all = predictions(&table(300, 0.0, &[5, 3, 2]), "churn", 1, start_ms + 100);
    all.extend(predictions(
        &table(200, 0.0, &[5, 3, 2]),
        "churn",
        1,
        start_ms + 2100,
    ));
    let (_, published) = sb.bus.publish(&all).await;
    published.unwrap();
    let got = reports(&mut c, name, 2).await;
    assert_eq!(
        got.iter()
            .map(|r| (r.rows, r.window_start_ms, r.window_end_ms))
            .collect::<Vec<_>>(),
        [
            (300, start_ms + 100, start_ms + 100),
            (200, start_ms + 2100, start_ms + 2100)
        ]
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_prediction_log_sources_get_clear_statuses() {
    let (sb, mut c) = start(Database::Sqlite, Bus::InProcess).await;
    let cases = [
        (source(0, 0), "window_rows or window_seconds"),
        (source(-1, 0), "window_rows"),
        (source(0, 31 * 24 * 3600), "30 days"),
        (
            pb::PredictionLogSource {
                input_columns: vec!["a".into(), "a".into()],
                ..source(10, 0)
            },
            "repeated",
        ),
    ];
    for (log, says) in cases {
        let e = c
            .create_monitor(pb::CreateMonitorRequest {
                name: "bad".into(),
                model: "churn".into(),
                prediction_log: Some(log),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains(says),
            "{says:?} not in {:?}",
            e.message()
        );
    }
    let e = c
        .create_monitor(pb::CreateMonitorRequest {
            name: "bad".into(),
            prediction_log: Some(source(10, 0)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("deployment"), "{e:?}");
    // nothing was half-created
    let list = c
        .list_monitors(pb::ListMonitorsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.monitors.is_empty());
    sb.stop().await.unwrap();
}

/// A batch delivered again (a crash before the bus commit, a rebalance) is applied once:
/// the offsets are stored with the windows, in the same transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_is_applied_once() {
    redelivered_once(1).await;
}

/// The same with the predictions ten to an event, as the inference service publishes them
/// (`PredictionsLogged`): an event's predictions share its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_of_several_predictions_is_applied_once() {
    redelivered_once(10).await;
}

/// 200 predictions of 10 rows, `per_event` to an event, applied with a redelivery of a
/// quarter of them: the 2,000-row window closes only with the last ones.
async fn redelivered_once(per_event: usize) {
    use mlops_monitoring::{follower::Follower, metrics::Metrics, references::References, store};
    let dir = tempfile::tempdir().unwrap();
    let config =
        mlops_monitoring::MonitoringConfig::local(dir.path(), "127.0.0.1:0", "127.0.0.1:0");
    let db = mlops_kit::open_database("monitoring", &config.db, &store::migrations())
        .await
        .unwrap();
    let blobs = mlops_storage::blob::open(&config.reference_root, "monitoring").unwrap();
    let store = store::Store::new(db);
    let spec = store::MonitorSpec {
        prediction_log: Some(mlops_monitoring::windows::PredictionLogSpec {
            window_rows: 2000,
            ..Default::default()
        }),
        ..Default::default()
    };
    store.create_monitor("m", "churn", &spec, 0).await.unwrap();
    let reference = table(1000, 0.0, &[5, 3, 2]);
    let key = "monitors/m/reference.parquet";
    blobs
        .store
        .put(&key.into(), parquet(&reference).into())
        .await
        .unwrap();
    let profile = [
        ("x", drift_type(true)),
        ("color", drift_type(false)),
        ("level", drift_type(false)),
    ]
    .map(|(name, column_type)| store::ColumnProfile {
        name: name.into(),
        column_type,
        count: 1000,
        missing: 0,
        distinct: 0,
    });
    store
        .add_reference("m", key, 1000, &profile, None)
        .await
        .unwrap();
    let follower = Follower::new(
        "g",
        store.clone(),
        References::new(blobs),
        Metrics::new(),
        Duration::from_secs(86_400),
    );
    let rows = table(2000, 0.0, &[5, 3, 2]);
    let singles = predictions(&rows, "churn", 1, 1_000);
    let events: Vec<Envelope> = if per_event == 1 {
        singles
    } else {
        singles
            .chunks(per_event)
            .map(|chunk| {
                let batch = ev::PredictionsLogged {
                    predictions: chunk.iter().map(|e| e.decode().unwrap()).collect(),
                };
                Envelope::of(
                    topics::PREDICTIONS,
                    "/mlops/inference",
                    "id-churn",
                    "churn/1",
                    &batch,
                )
            })
            .collect()
    };
    let deliveries: Vec<Delivery> = events
        .into_iter()
        .enumerate()
        .map(|(i, envelope)| Delivery {
            envelope,
            partition: 0,
            offset: i as i64,
        })
        .collect();
    let count = |store: store::Store| async move { store.reports("m", 0, 10).await.unwrap().len() };
    let cut = |n: usize| n / per_event;
    follower.apply(&deliveries[..cut(100)]).await.unwrap();
    // predictions 50..100 again, with 100..150: were they applied twice, the window would
    // reach 2000 rows now and close
    follower
        .apply(&deliveries[cut(50)..cut(150)])
        .await
        .unwrap();
    follower.report_closed().await;
    assert_eq!(
        count(store.clone()).await,
        0,
        "a redelivery was applied twice"
    );
    follower.apply(&deliveries[cut(150)..]).await.unwrap();
    follower.report_closed().await;
    let reports = store.reports("m", 0, 10).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rows, 2000);
    // the same offsets of another partition are other events
    let other: Vec<Delivery> = deliveries[..1]
        .iter()
        .map(|d| Delivery {
            partition: 1,
            ..d.clone()
        })
        .collect();
    follower.apply(&other).await.unwrap();
    let metrics = mlops_runtime::metrics::render();
    assert!(metrics.contains("mlops_monitoring_prediction_log_events_total{outcome=\"duplicate\"}"));
}

/// The whole path: requests served by the inference service are on its prediction log,
/// the monitoring service cuts them into a window of the deployed version, and the
/// window's report is what the same rows pushed get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_served_become_a_window_of_their_version() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array};
    use mlops_inference::Inference;
    use mlops_proto::inference::v1 as dpb;

    let group = format!("it-monitoring-{}", uuid::Uuid::new_v4().simple());
    let sb = Sandbox::builder()
        .registry()
        .service::<Inference>(|_| {})
        .service::<Monitoring>(move |c| c.prediction_log_group = group)
        .start()
        .await
        .expect("sandbox starts");
    let name = "served";
    let f = crate::inference::fixture("logreg");
    crate::inference::upload(&sb, name, &f.onnx).await;
    let addr = sb.addresses("inference").api;
    crate::deployments::deployments(addr)
        .await
        .deploy(dpb::DeployRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // the reference: the fixture's 20 rows, its 30 inputs and its labels
    let (_, inputs) = f.floats("input", 20);
    let mut columns: Vec<(String, ArrayRef)> = (0..30)
        .map(|j| {
            let v: Vec<f64> = (0..20).map(|r| f64::from(inputs[r * 30 + j])).collect();
            (
                format!("input_{j}"),
                std::sync::Arc::new(Float64Array::from(v)) as ArrayRef,
            )
        })
        .collect();
    let labels: Vec<i64> = f
        .expected("label", 20)
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    columns.push((
        "label".into(),
        std::sync::Arc::new(Int64Array::from(labels)),
    ));
    let reference = RecordBatch::try_from_iter(columns).unwrap();
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("monitoring").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = MonitoringServiceClient::new(channel);
    // the monitor's model is "churn": it names the deployment it follows
    create(
        &mut c,
        name,
        pb::PredictionLogSource {
            deployment: name.into(),
            ..source(60, 0)
        },
    )
    .await;
    upload(&mut c, name, pb::TableFormat::Parquet, &parquet(&reference))
        .await
        .unwrap();
    let mut oip = crate::inference::oip(addr).await;
    for _ in 0..3 {
        oip.model_infer(crate::inference::request(name, &f, 0..20))
            .await
            .unwrap();
    }
    let got = reports(&mut c, name, 1).await;
    let window = arrow_select::concat::concat_batches(
        &reference.schema(),
        &[reference.clone(), reference.clone(), reference.clone()],
    )
    .unwrap();
    let pushed = push(&mut c, name, pb::TableFormat::ArrowIpc, &ipc(&window))
        .await
        .unwrap();
    let log = &got[0];
    assert_eq!(
        (log.source.as_str(), log.rows, log.model_version.as_str()),
        ("prediction_log", 60, "1")
    );
    assert_eq!(log.columns.len(), 31);
    assert!(log
        .columns
        .iter()
        .all(|c| c.current_count == 60 && c.histogram.is_some()));
    assert!(!log.dataset_drift);
    same_verdicts(log, &pushed);
    sb.stop().await.unwrap();
}

fn drift_type(numerical: bool) -> mlops_monitoring::drift::ColumnType {
    if numerical {
        mlops_monitoring::drift::ColumnType::Numerical
    } else {
        mlops_monitoring::drift::ColumnType::Categorical
    }
}
