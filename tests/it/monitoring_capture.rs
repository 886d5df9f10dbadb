//! A reference taken from the prediction log: a monitor created with
//! `prediction_log.reference_rows` makes the first rows its deployment logs its reference
//! v1 (the same profile and the same verdicts as the same rows uploaded), its windows
//! start after them, and CaptureReference takes a new reference later; rows that cannot
//! be a reference stop the capture with the reason on the monitor; bad requests get clear
//! statuses. The same on tansu in `kafka`.

use std::time::Duration;

use mlops_proto::monitoring::v1 as pb;
use mlops_tests::{Bus, Database};
use tonic::Code;

use crate::monitoring::{ipc, parquet, push, table, upload, Client};
use crate::monitoring_log::{predictions, reports, source, start};

async fn monitor(c: &mut Client, name: &str) -> pb::Monitor {
    c.get_monitor(pb::GetMonitorRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until `name`'s reference is `version` and no capture runs.
async fn reference_version(c: &mut Client, name: &str, version: i64) -> pb::Monitor {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = monitor(c, name).await;
        if m.reference_version == version && m.capture.is_none() {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} not at reference v{version} after 60 s: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every column's profile, score and verdict are the same in both reports.
fn same_reports(a: &pb::DriftReport, b: &pb::DriftReport) {
    assert_eq!(a.columns.len(), b.columns.len());
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(
            (&x.column, x.r#type, &x.method, x.drifted),
            (&y.column, y.r#type, &y.method, y.drifted)
        );
        assert_eq!(
            (x.reference_count, x.reference_missing),
            (y.reference_count, y.reference_missing)
        );
        let (s, t) = (x.score.unwrap(), y.score.unwrap());
        assert!(
            (s - t).abs() <= 1e-12 * t.abs().max(1e-300),
            "{}: {s} against the captured reference, {t} against the uploaded one",
            x.column
        );
    }
    assert_eq!(a.dataset_drift, b.dataset_drift);
}

pub(crate) async fn a_reference_taken_from_the_log_is_the_uploaded_one(db: Database, bus: Bus) {
    let (sb, mut c) = start(db, bus).await;
    let churn = &format!("churn-{}", uuid::Uuid::new_v4().simple());
    let name = "captured";
    let created = c
        .create_monitor(pb::CreateMonitorRequest {
            name: name.into(),
            model: "churn".into(),
            prediction_log: Some(pb::PredictionLogSource {
                deployment: churn.clone(),
                reference_rows: 3000,
                ..source(1000, 0)
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let capture = created.capture.expect("a capture starts with the monitor");
    assert_eq!((capture.rows_wanted, capture.rows), (3000, 0));
    assert_eq!(created.reference_version, 0);

    // the same rows uploaded to a second monitor, to compare with
    c.create_monitor(pb::CreateMonitorRequest {
        name: "uploaded".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let reference = table(3000, 0.0, &[5, 3, 2]);
    let uploaded = upload(
        &mut c,
        "uploaded",
        pb::TableFormat::Parquet,
        &parquet(&reference),
    )
    .await
    .unwrap();

    let now = mlops_storage::now_millis();
    let (_, published) = sb
        .bus
        .publish(&predictions(&reference, churn, 1, now))
        .await;
    published.unwrap();
    let m = reference_version(&mut c, name, 1).await;
    assert!(m.capture.is_none());
    // x numerical, color text, level an integer of 3 values: categorical, as uploaded
    let shifted = table(1000, 1.5, &[1, 1, 8]);
    let pushed = push(&mut c, name, pb::TableFormat::ArrowIpc, &ipc(&shifted))
        .await
        .unwrap();
    let against_upload = push(
        &mut c,
        "uploaded",
        pb::TableFormat::ArrowIpc,
        &ipc(&shifted),
    )
    .await
    .unwrap();
    let mut profile: Vec<(&str, i64)> = pushed
        .columns
        .iter()
        .map(|c| (c.column.as_str(), c.reference_count))
        .collect();
    profile.sort();
    assert_eq!(profile, [("color", 3000), ("level", 3000), ("x", 3000)]);
    assert_eq!(uploaded.rows, 3000);
    same_reports(&pushed, &against_upload);
    assert!(pushed.dataset_drift);

    // windows start after the reference: the next 1,000 logged rows are one
    let same = table(1000, 0.0, &[5, 3, 2]);
    let (_, published) = sb.bus.publish(&predictions(&same, churn, 1, now)).await;
    published.unwrap();
    let logged = reports(&mut c, name, 2).await;
    let window = logged
        .iter()
        .find(|r| r.source == "prediction_log")
        .expect("a window of the log");
    assert_eq!((window.rows, window.reference_version), (1000, 1));
    assert!(!window.dataset_drift);

    // a new baseline: the next 1,000 rows (the shifted ones) become v2
    let m = c
        .capture_reference(pb::CaptureReferenceRequest {
            monitor: name.into(),
            rows: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.capture.as_ref().map(|c| c.rows_wanted), Some(1000));
    let (_, published) = sb.bus.publish(&predictions(&shifted, churn, 2, now)).await;
    published.unwrap();
    reference_version(&mut c, name, 2).await;
    let again = push(&mut c, name, pb::TableFormat::ArrowIpc, &ipc(&shifted))
        .await
        .unwrap();
    assert_eq!(again.reference_version, 2);
    assert!(
        again.columns.iter().all(|c| !c.drifted),
        "the shifted rows against themselves: {again:?}"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_taken_from_the_log_is_the_uploaded_one_on_sqlite() {
    a_reference_taken_from_the_log_is_the_uploaded_one(Database::Sqlite, Bus::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_taken_from_the_log_is_the_uploaded_one_on_postgres() {
    a_reference_taken_from_the_log_is_the_uploaded_one(Database::Postgres, Bus::InProcess).await;
}

/// A capture whose rows cannot be a reference stops with the reason on the monitor, and
/// the follower goes on; bad requests get clear statuses and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_that_cannot_be_a_reference_and_bad_requests() {
    let (sb, mut c) = start(Database::Sqlite, Bus::InProcess).await;
    let churn = &format!("churn-{}", uuid::Uuid::new_v4().simple());
    // `ks` on `color`, which the rows will show to be text (categorical)
    c.create_monitor(pb::CreateMonitorRequest {
        name: "misfit".into(),
        model: "churn".into(),
        options: Some(pb::DriftOptions {
            per_column_method: [("color".to_owned(), "ks".to_owned())].into(),
            ..Default::default()
        }),
        prediction_log: Some(pb::PredictionLogSource {
            deployment: churn.clone(),
            reference_rows: 100,
            ..source(100, 0)
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let rows = table(100, 0.0, &[5, 3, 2]);
    let now = mlops_storage::now_millis();
    let (_, published) = sb.bus.publish(&predictions(&rows, churn, 1, now)).await;
    published.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let m = monitor(&mut c, "misfit").await;
        if let Some(cap) = m.capture.filter(|c| !c.error.is_empty()) {
            break (m.reference_version, cap);
        }
        assert!(tokio::time::Instant::now() < deadline, "no failed capture");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed.0, 0, "no reference from rows that cannot be one");
    assert!(
        failed.1.error.contains("color") && failed.1.error.contains("ks"),
        "{:?}",
        failed.1.error
    );
    // the same rows again: a failed capture takes no more
    let (_, published) = sb.bus.publish(&predictions(&rows, churn, 1, now)).await;
    published.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = monitor(&mut c, "misfit").await;
    assert_eq!(m.capture.map(|c| c.rows), Some(100));

    for bad in [-1, 1_000_001] {
        let e = c
            .create_monitor(pb::CreateMonitorRequest {
                name: "bad".into(),
                model: "churn".into(),
                prediction_log: Some(pb::PredictionLogSource {
                    reference_rows: bad,
                    ..source(10, 0)
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("reference_rows"), "{e:?}");
    }
    let e = c
        .capture_reference(pb::CaptureReferenceRequest {
            monitor: "nobody".into(),
            rows: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    c.create_monitor(pb::CreateMonitorRequest {
        name: "pushed-only".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .capture_reference(pb::CaptureReferenceRequest {
            monitor: "pushed-only".into(),
            rows: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("prediction_log"), "{e:?}");
    c.create_monitor(pb::CreateMonitorRequest {
        name: "no-size".into(),
        model: "churn".into(),
        prediction_log: Some(source(10, 0)),
        ..Default::default()
    })
    .await
    .unwrap();
    for (rows, says) in [(0, "how many rows"), (-5, "rows"), (1_000_001, "1000000")] {
        let e = c
            .capture_reference(pb::CaptureReferenceRequest {
                monitor: "no-size".into(),
                rows,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(says), "{says:?} not in {e:?}");
    }
    assert!(monitor(&mut c, "no-size").await.capture.is_none());
    // a monitor that stops following the log stops its capture
    c.capture_reference(pb::CaptureReferenceRequest {
        monitor: "no-size".into(),
        rows: 10,
    })
    .await
    .unwrap();
    let m = c
        .update_monitor(pb::UpdateMonitorRequest {
            name: "no-size".into(),
            model: "churn".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(m.capture.is_none() && m.prediction_log.is_none());
    sb.stop().await.unwrap();
}
