//! The model's performance on prediction-log windows: estimated by CBPE (calibrated on
//! the reference) when a window closes, realised when labels are pushed (before or after
//! their predictions), a `PerformanceDegraded` event when the alert metric falls past its
//! threshold, and the bad inputs; on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use mlops_events::Envelope;
use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::monitoring::v1 as pb;
use mlops_tests::{Bus, Database};
use tonic::Code;

use crate::monitoring::{parquet, upload, Client};
use crate::monitoring_log::{reports, source, start, tensor};

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Rows of a binary classifier: x, the model's (overconfident) score, its prediction at
/// 0.5, and the true label drawn from P(y = 1 | x) = sigmoid(1.5 x); `flip` inverts the
/// truth (the world changed: the model is now wrong).
struct Rows {
    x: Vec<f64>,
    score: Vec<f64>,
    label: Vec<i64>,
    target: Vec<i64>,
}

fn rows(rng: &mut Rng, n: usize, mean: f64, flip: bool) -> Rows {
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let mut r = Rows {
        x: vec![],
        score: vec![],
        label: vec![],
        target: vec![],
    };
    for _ in 0..n {
        let x = rng.normal(mean, 1.0);
        let score = sigmoid(3.0 * x);
        let truth = rng.uniform() < sigmoid(1.5 * x);
        r.x.push(x);
        r.score.push(score);
        r.label.push(i64::from(score >= 0.5));
        r.target.push(i64::from(truth != flip));
    }
    r
}

fn reference_table(r: &Rows) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(r.x.clone())) as ArrayRef),
        (
            "score",
            Arc::new(Float64Array::from(r.score.clone())) as ArrayRef,
        ),
        (
            "label",
            Arc::new(Int64Array::from(r.label.clone())) as ArrayRef,
        ),
        (
            "target",
            Arc::new(Int64Array::from(r.target.clone())) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// `r` as predictions of 10 rows of `deployment`, request ids `{prefix}-{i}`.
fn predictions(r: &Rows, deployment: &str, prefix: &str) -> Vec<Envelope> {
    (0..r.x.len())
        .step_by(10)
        .map(|s| {
            let range = s..(s + 10).min(r.x.len());
            let n = range.len();
            let f64s = |v: &[f64]| {
                v[range.clone()]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            };
            let msg = ev::PredictionLogged {
                request_id: format!("{prefix}-{s}"),
                deployment: deployment.into(),
                model_id: "id-churn".into(),
                version: 1,
                variant: "stable".into(),
                inputs: vec![tensor("x", "FP64", n, f64s(&r.x))],
                outputs: vec![
                    tensor(
                        "label",
                        "INT64",
                        n,
                        r.label[range.clone()]
                            .iter()
                            .flat_map(|x| x.to_le_bytes())
                            .collect(),
                    ),
                    tensor("score", "FP64", n, f64s(&r.score)),
                ],
                time_unix_nano: mlops_storage::now_millis() * 1_000_000,
                ..Default::default()
            };
            Envelope::of(
                topics::PREDICTIONS,
                "/mlops/inference",
                "id-churn",
                "churn/1",
                &msg,
            )
        })
        .collect()
}

/// `r`'s true labels for the requests of `predictions(r, prefix)`.
fn labels(r: &Rows, prefix: &str) -> Vec<pb::Label> {
    (0..r.x.len())
        .map(|i| pb::Label {
            request_id: format!("{prefix}-{}", i / 10 * 10),
            row: (i % 10) as i64,
            value: r.target[i].to_string(),
        })
        .collect()
}

fn spec() -> pb::PerformanceSpec {
    pb::PerformanceSpec {
        task: pb::performance_spec::Task::Classification as i32,
        prediction_column: "label".into(),
        score_column: "score".into(),
        target_column: "target".into(),
        alert_metric: "accuracy".into(),
        alert_threshold: 0.6,
        ..Default::default()
    }
}

async fn performance(c: &mut Client, monitor: &str, windows: usize) -> Vec<pb::WindowPerformance> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut got = c
            .list_performance(pb::ListPerformanceRequest {
                monitor: monitor.into(),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .windows;
        if got.len() >= windows {
            got.reverse();
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {windows} windows",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn estimated_then_realised(db: Database) {
    let (sb, mut c) = start(db, Bus::InProcess).await;
    let mut events = sb
        .bus
        .subscribe(
            &format!("it-{}", uuid::Uuid::new_v4().simple()),
            &[topics::MONITORING],
        )
        .await
        .unwrap();
    let name = "perf";
    let churn = &format!("churn-{}", uuid::Uuid::new_v4().simple());
    c.create_monitor(pb::CreateMonitorRequest {
        name: name.into(),
        model: "churn".into(),
        columns: ["x", "score"]
            .map(|n| pb::ColumnSpec {
                name: n.into(),
                r#type: 0,
            })
            .to_vec(),
        prediction_log: Some(pb::PredictionLogSource {
            deployment: churn.clone(),
            ..source(5000, 0)
        }),
        performance: Some(spec()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut rng = Rng(7);
    upload(
        &mut c,
        name,
        pb::TableFormat::Parquet,
        &parquet(&reference_table(&rows(&mut rng, 20_000, 0.0, false))),
    )
    .await
    .unwrap();

    // 1. a shifted window, no labels yet: CBPE's estimate
    let shifted = rows(&mut rng, 5000, 0.8, false);
    let (_, done) = sb.bus.publish(&predictions(&shifted, churn, "a")).await;
    done.unwrap();
    reports(&mut c, name, 1).await;
    let w = performance(&mut c, name, 1).await.remove(0);
    assert_eq!(
        (w.rows, w.labelled_rows, w.model_version.as_str()),
        (5000, 0, "1")
    );
    assert!(w.realised.is_empty());
    let (est_acc, est_auc) = (w.estimated["accuracy"], w.estimated["roc_auc"]);

    // 2. its labels: the realised performance, near the estimate (5,000 rows: the
    //    estimate's sampling error is about 0.01)
    let r = c
        .push_labels(pb::PushLabelsRequest {
            monitor: name.into(),
            labels: labels(&shifted, "a"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.stored, r.matched, r.windows_updated), (5000, 5000, 1));
    let w = performance(&mut c, name, 1).await.remove(0);
    assert_eq!(w.labelled_rows, 5000);
    let (acc, auc) = (w.realised["accuracy"], w.realised["roc_auc"]);
    assert!(
        (acc - est_acc).abs() < 0.03,
        "accuracy {acc} realised, {est_acc} estimated"
    );
    assert!(
        (auc - est_auc).abs() < 0.03,
        "ROC AUC {auc} realised, {est_auc} estimated"
    );
    assert!(!w.degraded);

    // 3. labels first, then the predictions, of a world the model no longer fits: the
    //    window closes realised and degraded, with its event
    let wrong = rows(&mut rng, 5000, 0.0, true);
    let r = c
        .push_labels(pb::PushLabelsRequest {
            monitor: name.into(),
            labels: labels(&wrong, "b"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.stored, r.matched), (5000, 0));
    let (_, done) = sb.bus.publish(&predictions(&wrong, churn, "b")).await;
    done.unwrap();
    let windows = performance(&mut c, name, 2).await;
    let w = &windows[1];
    assert_eq!((w.rows, w.labelled_rows), (5000, 5000));
    assert!(w.realised["accuracy"] < 0.6 && w.degraded, "{w:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("a PerformanceDegraded event within 30 s")
            .unwrap();
        events.commit(&d).await.unwrap();
        let Ok(e) = d.envelope.decode::<ev::PerformanceDegraded>() else {
            continue;
        };
        assert_eq!(
            (e.monitor.as_str(), e.kind.as_str(), e.metric.as_str()),
            (name, "realised", "accuracy")
        );
        assert_eq!(
            (e.window_id.as_str(), e.threshold),
            (w.window_id.as_str(), 0.6)
        );
        break;
    }
    let (_, metrics) = mlops_tests::http_get(sb.addresses("monitoring").admin, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("mlops_monitoring_performance{"),
        "{metrics}"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_is_estimated_then_realised_on_sqlite() {
    estimated_then_realised(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_is_estimated_then_realised_on_postgres() {
    estimated_then_realised(Database::Postgres).await;
}

/// Labels written to a Kafka topic by the user's own systems (plain JSON, no
/// CloudEvents headers) give a window its realised performance; a message that is not a
/// label is counted and skipped.
pub(crate) async fn labels_from_a_topic(bus: Bus) {
    let (sb, mut c) = start(Database::Sqlite, bus).await;
    let topic = format!("it-labels-{}", uuid::Uuid::new_v4().simple());
    sb.bus.ensure_topics(&[topic.as_str()]).await.unwrap();
    // unique: the metrics are the process's, shared with the other tests
    let name = &format!("from-topic-{}", uuid::Uuid::new_v4().simple());
    // a deployment of this test's own: a shared broker keeps the other tests' predictions
    let churn = &format!("churn-{}", uuid::Uuid::new_v4().simple());
    c.create_monitor(pb::CreateMonitorRequest {
        name: name.clone(),
        model: "churn".into(),
        prediction_log: Some(pb::PredictionLogSource {
            deployment: churn.clone(),
            ..source(1000, 0)
        }),
        performance: Some(pb::PerformanceSpec {
            labels_topic: topic.clone(),
            ..spec()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut rng = Rng(3);
    upload(
        &mut c,
        name,
        pb::TableFormat::Parquet,
        &parquet(&reference_table(&rows(&mut rng, 2000, 0.0, false))),
    )
    .await
    .unwrap();
    let window = rows(&mut rng, 1000, 0.0, false);
    let (_, done) = sb.bus.publish(&predictions(&window, churn, "k")).await;
    done.unwrap();
    let mut records: Vec<mlops_events::RawRecord> = labels(&window, "k")
        .iter()
        .map(|l| {
            let json = format!(
                r#"{{"request_id":"{}","row":{},"label":{}}}"#,
                l.request_id, l.row, l.value
            );
            mlops_events::RawRecord::new(&topic, Some(l.request_id.as_bytes()), json)
        })
        .collect();
    records.insert(
        10,
        mlops_events::RawRecord::new(&topic, None, "not a label"),
    );
    sb.bus.publish_raw(&records).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let w = loop {
        let w = performance(&mut c, name, 1).await.remove(0);
        if w.labelled_rows == 1000 {
            break w;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 1000 labels after 90 s",
            w.labelled_rows
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(w.realised.contains_key("accuracy") && w.realised.contains_key("roc_auc"));
    let (_, metrics) = mlops_tests::http_get(sb.addresses("monitoring").admin, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "mlops_monitoring_labels_malformed_total{{monitor=\"{name}\"}} 1"
        )),
        "{metrics}"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_from_a_topic_in_process() {
    labels_from_a_topic(Bus::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_performance_inputs_get_clear_statuses() {
    let (sb, mut c) = start(Database::Sqlite, Bus::InProcess).await;
    let create = |performance: pb::PerformanceSpec, log: bool| pb::CreateMonitorRequest {
        name: "p".into(),
        model: "churn".into(),
        prediction_log: log.then(|| source(100, 0)),
        performance: Some(performance),
        ..Default::default()
    };
    let cases = [
        (create(spec(), false), "set prediction_log too"),
        (
            create(pb::PerformanceSpec { task: 0, ..spec() }, true),
            "TASK_CLASSIFICATION",
        ),
        (
            create(
                pb::PerformanceSpec {
                    alert_metric: "rmse".into(),
                    ..spec()
                },
                true,
            ),
            "not a classification metric",
        ),
        (
            create(
                pb::PerformanceSpec {
                    prediction_column: String::new(),
                    ..spec()
                },
                true,
            ),
            "prediction_column",
        ),
    ];
    for (req, says) in cases {
        let e = c.create_monitor(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains(says),
            "{says:?} not in {:?}",
            e.message()
        );
    }
    // a reference without the target CBPE is calibrated on
    c.create_monitor(create(spec(), true)).await.unwrap();
    let mut rng = Rng(1);
    let mut t = reference_table(&rows(&mut rng, 100, 0.0, false));
    t.remove_column(3);
    let e = upload(&mut c, "p", pb::TableFormat::Parquet, &parquet(&t))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("\"target\""), "{e:?}");
    // labels: bad rows, an unknown monitor, a monitor that measures nothing
    let push = |monitor: &str, labels: Vec<pb::Label>| pb::PushLabelsRequest {
        monitor: monitor.into(),
        labels,
    };
    let label = |id: &str, row: i64, v: &str| pb::Label {
        request_id: id.into(),
        row,
        value: v.into(),
    };
    let e = c
        .push_labels(push("p", vec![label("", 0, "1")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .push_labels(push("p", vec![label("r", -1, "1")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .push_labels(push("nobody", vec![label("r", 0, "1")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    c.create_monitor(pb::CreateMonitorRequest {
        name: "drift-only".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .push_labels(push("drift-only", vec![label("r", 0, "1")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .list_performance(pb::ListPerformanceRequest {
            monitor: "nobody".into(),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    sb.stop().await.unwrap();
}

/// A prediction without a score (a NaN in the log) and then one with a score, as
/// the same statement on the same connection: on PostgreSQL sqlx's Any driver once
/// typed the missing score as `real`, and the cached statement refused the next score.
async fn predictions_with_and_without_scores(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    // One connection: every insert runs on the statement cached by the first.
    let conn = crate::search_limits::raw_db(db, dir.path(), 1, Duration::from_secs(30)).await;
    conn.migrate("monitoring", &mlops_monitoring::store::migrations())
        .await
        .unwrap();
    let store = mlops_monitoring::store::Store::new(conn.clone());
    let row = |id: &str, score: Option<f64>| mlops_monitoring::store::LoggedPrediction {
        request_id: id.into(),
        row: 0,
        model_version: "1".into(),
        window_id: "w".into(),
        prediction: "1".into(),
        score,
    };
    for (id, score) in [
        ("a", None),
        ("b", Some(0.75)),
        ("c", None),
        ("d", Some(0.25)),
    ] {
        let mut tx = conn.begin().await.unwrap();
        store
            .insert_predictions(&mut tx, "m", &[row(id, score)])
            .await
            .unwrap_or_else(|e| panic!("{db:?}: inserting {id}: {e}"));
        tx.commit().await.unwrap();
    }
    use mlops_storage::sqlx::Row;
    let stored: Vec<(String, Option<f64>)> = mlops_storage::sqlx::query(
        "SELECT request_id, score FROM monitoring_predictions ORDER BY request_id",
    )
    .fetch_all(conn.reader())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        stored,
        [
            ("a".to_owned(), None),
            ("b".to_owned(), Some(0.75)),
            ("c".to_owned(), None),
            ("d".to_owned(), Some(0.25)),
        ],
        "{db:?}"
    );
}

crate::on_both_backends!(predictions_with_and_without_scores);
