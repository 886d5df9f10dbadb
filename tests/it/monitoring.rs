//! The monitoring service over gRPC: monitors, references uploaded as Parquet or Arrow
//! IPC in chunks, windows tested with Evidently's methods (the numbers the library
//! computes, which its parity test checks against Evidently), reports over time,
//! `DriftDetected` events with a cooldown, and the bad inputs, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use mlops_monitoring::drift::{self, ColumnType, Method, Sample};
use mlops_monitoring::Monitoring;
use mlops_proto::events::v1 as ev;
use mlops_proto::monitoring::v1 as pb;
use mlops_proto::monitoring::v1::monitoring_service_client::MonitoringServiceClient;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

pub(crate) type Client = MonitoringServiceClient<Channel>;

async fn start(db: Database) -> (Sandbox, Client) {
    let url = mlops_tests::database_url(db).await;
    let sb = Sandbox::builder()
        .service::<Monitoring>(move |c| {
            if let Some(url) = url {
                c.db.database_url = url;
            }
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

/// A deterministic column: `n` values of a smooth function, shifted by `shift`.
fn wave(n: usize, seed: f64, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 * 0.618_034 + seed).sin() * 2.0 + shift)
        .collect()
}

fn categories(n: usize, shares: &[usize]) -> Vec<String> {
    let total: usize = shares.iter().sum();
    (0..n)
        .map(|i| {
            let mut k = i % total;
            let mut c = 0;
            while k >= shares[c] {
                k -= shares[c];
                c += 1;
            }
            format!("c{c}")
        })
        .collect()
}

/// Columns `x` (numerical), `color` (categorical strings), `level` (integers with 4
/// values: categorical by Evidently's rule).
pub(crate) fn table(n: usize, shift: f64, shares: &[usize]) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "x",
            Arc::new(Float64Array::from(wave(n, 0.3, shift))) as ArrayRef,
        ),
        (
            "color",
            Arc::new(StringArray::from(categories(n, shares))) as ArrayRef,
        ),
        (
            "level",
            Arc::new(Int64Array::from(
                (0..n as i64).map(|i| i % 4).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

pub(crate) fn parquet(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

pub(crate) fn ipc(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    buf
}

/// Sends `bytes` in 1 KB chunks (many messages).
pub(crate) async fn upload(
    c: &mut Client,
    monitor: &str,
    format: pb::TableFormat,
    bytes: &[u8],
) -> Result<pb::Reference, tonic::Status> {
    let msgs: Vec<pb::UploadReferenceRequest> = bytes
        .chunks(1024)
        .enumerate()
        .map(|(i, d)| pb::UploadReferenceRequest {
            monitor: if i == 0 {
                monitor.into()
            } else {
                String::new()
            },
            format: format as i32,
            data: Bytes::copy_from_slice(d),
        })
        .collect();
    c.upload_reference(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn push(
    c: &mut Client,
    monitor: &str,
    format: pb::TableFormat,
    bytes: &[u8],
) -> Result<pb::DriftReport, tonic::Status> {
    let mut msgs: Vec<pb::PushWindowRequest> = bytes
        .chunks(1024)
        .map(|d| pb::PushWindowRequest {
            data: Bytes::copy_from_slice(d),
            ..Default::default()
        })
        .collect();
    if msgs.is_empty() {
        msgs.push(pb::PushWindowRequest::default());
    }
    msgs[0].monitor = monitor.into();
    msgs[0].format = format as i32;
    msgs[0].model_version = "3".into();
    c.push_window(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn create(c: &mut Client, name: &str, options: pb::DriftOptions, cooldown: i64) {
    c.create_monitor(pb::CreateMonitorRequest {
        name: name.into(),
        model: "churn".into(),
        columns: vec![],
        options: Some(options),
        cooldown_seconds: cooldown,
        ..Default::default()
    })
    .await
    .expect("created");
}

fn column<'a>(r: &'a pb::DriftReport, name: &str) -> &'a pb::ColumnDrift {
    r.columns
        .iter()
        .find(|c| c.column == name)
        .unwrap_or_else(|| panic!("no column {name} in {r:?}"))
}

async fn windows_are_tested_as_the_library_tests_them(db: Database) {
    let (sb, mut c) = start(db).await;
    let mut sub = sb
        .bus
        .subscribe(
            "monitoring-test",
            &[mlops_proto::events::topics::MONITORING],
        )
        .await
        .unwrap();
    // metrics are per process, shared by the tests: a name of its own
    let name = format!("churn-{}", uuid::Uuid::new_v4().simple());
    create(&mut c, &name, pb::DriftOptions::default(), 3600).await;
    let reference = table(600, 0.0, &[5, 3, 2]);
    let r = upload(
        &mut c,
        &name,
        pb::TableFormat::Parquet,
        &parquet(&reference),
    )
    .await
    .expect("the reference is stored");
    assert_eq!((r.version, r.rows, r.columns.len()), (1, 600, 3));
    let types: Vec<(String, i32)> = r
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.r#type))
        .collect();
    assert_eq!(
        types,
        [
            ("x".to_owned(), pb::ColumnType::Numerical as i32),
            ("color".to_owned(), pb::ColumnType::Categorical as i32),
            ("level".to_owned(), pb::ColumnType::Categorical as i32),
        ],
        "integers with at most 10 values are categorical, as in Evidently"
    );

    // A window like the reference: no drift, and the scores are the library's.
    let same = table(400, 0.0, &[5, 3, 2]);
    let report = push(&mut c, &name, pb::TableFormat::ArrowIpc, &ipc(&same))
        .await
        .expect("a report");
    assert!(!report.dataset_drift, "{report:?}");
    assert!(!report.event_published);
    assert_eq!((report.rows, report.model_version.as_str()), (400, "3"));
    let x = column(&report, "x");
    let expected = drift::column_drift(
        "x",
        ColumnType::Numerical,
        &Sample::numerical(wave(600, 0.3, 0.0)),
        &Sample::numerical(wave(400, 0.3, 0.0)),
        None,
        None,
    )
    .unwrap();
    assert_eq!(x.method, "ks", "600 reference rows: ks");
    assert_eq!(x.score, expected.score);
    assert_eq!(column(&report, "color").method, "chisquare");

    // A shifted window: every column drifts; the event is published once per cooldown.
    let shifted = table(400, 1.5, &[1, 3, 6]);
    let drifted = push(&mut c, &name, pb::TableFormat::Parquet, &parquet(&shifted))
        .await
        .expect("a report");
    assert!(
        drifted.dataset_drift && drifted.event_published,
        "{drifted:?}"
    );
    assert!(column(&drifted, "x").drifted && column(&drifted, "color").drifted);
    let again = push(&mut c, &name, pb::TableFormat::Parquet, &parquet(&shifted))
        .await
        .expect("a report");
    assert!(
        again.dataset_drift && !again.event_published,
        "within the cooldown"
    );
    let events = crate::events::take(&mut sub, 1, Duration::from_secs(10)).await;
    let e: ev::DriftDetected = events[0].decode().unwrap();
    assert_eq!(
        (e.monitor.as_str(), e.model.as_str(), e.report_id.as_str()),
        (name.as_str(), "churn", drifted.id.as_str())
    );
    assert!(e
        .columns
        .iter()
        .any(|c| c.column == "x" && c.method == "ks"));

    // Reports over time, newest first; one by id; the newest.
    let listed = c
        .list_reports(pb::ListReportsRequest {
            monitor: name.clone(),
            limit: 0,
            since_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].id, report.id);
    let got = c
        .get_report(pb::GetReportRequest {
            monitor: name.clone(),
            id: drifted.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, drifted);
    let newest = c
        .get_report(pb::GetReportRequest {
            monitor: name.clone(),
            id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(newest.id, again.id);

    // The metrics carry the newest figures.
    let (status, metrics) = mlops_tests::http_get(sb.addresses("monitoring").admin, "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!(
            "mlops_monitoring_dataset_drift{{model=\"churn\",model_version=\"3\",monitor=\"{name}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "mlops_monitoring_drift_events_total{{monitor=\"{name}\"}} 1"
    )));

    // Options: a method for every column, a threshold, a second reference version.
    c.update_monitor(pb::UpdateMonitorRequest {
        name: name.clone(),
        model: "churn".into(),
        columns: vec![pb::ColumnSpec {
            name: "x".into(),
            r#type: 0,
        }],
        options: Some(pb::DriftOptions {
            num_method: "psi".into(),
            num_threshold: Some(0.5),
            ..Default::default()
        }),
        cooldown_seconds: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let v2 = upload(
        &mut c,
        &name,
        pb::TableFormat::Parquet,
        &parquet(&reference),
    )
    .await
    .unwrap();
    assert_eq!((v2.version, v2.columns.len()), (2, 1));
    let psi = push(&mut c, &name, pb::TableFormat::Parquet, &parquet(&shifted))
        .await
        .unwrap();
    assert_eq!(psi.reference_version, 2);
    assert_eq!(psi.columns.len(), 1);
    let x = column(&psi, "x");
    assert_eq!((x.method.as_str(), x.threshold), ("psi", 0.5));
    let expected = drift::column_drift(
        "x",
        ColumnType::Numerical,
        &Sample::numerical(wave(600, 0.3, 0.0)),
        &Sample::numerical(wave(400, 0.3, 1.5)),
        Some(Method::Psi),
        Some(0.5),
    )
    .unwrap();
    assert_eq!(x.score, expected.score);

    // Delete: gone, with its reports.
    let d = c
        .delete_monitor(pb::DeleteMonitorRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(d.deleted);
    let gone = c
        .get_report(pb::GetReportRequest {
            monitor: name.clone(),
            id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    sb.stop().await.unwrap();
}

async fn bad_inputs_get_clear_statuses(db: Database) {
    let (sb, mut c) = start(db).await;
    let bad = |options: pb::DriftOptions, columns: Vec<pb::ColumnSpec>| pb::CreateMonitorRequest {
        name: "m".into(),
        columns,
        options: Some(options),
        ..Default::default()
    };
    // Unknown method, a method that does not fit, bad thresholds and shares.
    let e = c
        .create_monitor(bad(
            pb::DriftOptions {
                method: "kolmogorov".into(),
                ..Default::default()
            },
            vec![],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("unknown drift method \"kolmogorov\""),
        "{}",
        e.message()
    );
    let e = c
        .create_monitor(bad(
            pb::DriftOptions {
                per_column_method: [("color".to_owned(), "ks".to_owned())].into(),
                ..Default::default()
            },
            vec![pb::ColumnSpec {
                name: "color".into(),
                r#type: pb::ColumnType::Categorical as i32,
            }],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e
        .message()
        .contains("method ks does not apply to a categorical column"));
    for options in [
        pb::DriftOptions {
            threshold: Some(-0.1),
            ..Default::default()
        },
        pb::DriftOptions {
            drift_share: Some(1.5),
            ..Default::default()
        },
    ] {
        let e = c.create_monitor(bad(options, vec![])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    for name in ["a/b", "..", "", "a\\b"] {
        let e = c
            .create_monitor(pb::CreateMonitorRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}");
    }

    // A monitor twice; a window before any reference; unknown monitors.
    create(&mut c, "m", pb::DriftOptions::default(), 0).await;
    let e = c
        .create_monitor(pb::CreateMonitorRequest {
            name: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let window = parquet(&table(100, 0.0, &[1, 1]));
    let e = push(&mut c, "m", pb::TableFormat::Parquet, &window)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("upload one first"), "{}", e.message());
    let e = push(&mut c, "nobody", pb::TableFormat::Parquet, &window)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = upload(&mut c, "nobody", pb::TableFormat::Parquet, &window)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Unreadable tables, a missing format, a reference without a monitored column.
    let e = upload(&mut c, "m", pb::TableFormat::Parquet, b"not parquet")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("Parquet"), "{}", e.message());
    let e = upload(&mut c, "m", pb::TableFormat::Unspecified, &window)
        .await
        .unwrap_err();
    assert!(
        e.message().contains("TABLE_FORMAT_PARQUET"),
        "{}",
        e.message()
    );
    c.update_monitor(pb::UpdateMonitorRequest {
        name: "m".into(),
        columns: vec![pb::ColumnSpec {
            name: "age".into(),
            r#type: 0,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let e = upload(&mut c, "m", pb::TableFormat::Parquet, &window)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "column \"age\" is not in the reference");
    c.update_monitor(pb::UpdateMonitorRequest {
        name: "m".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    upload(
        &mut c,
        "m",
        pb::TableFormat::Parquet,
        &parquet(&table(300, 0.0, &[1, 1])),
    )
    .await
    .unwrap();

    // Windows that do not match the reference: a missing column, a type that does not
    // fit, no rows. Nothing is stored for them.
    let missing = RecordBatch::try_from_iter([(
        "x",
        Arc::new(Float64Array::from(wave(50, 0.1, 0.0))) as ArrayRef,
    )])
    .unwrap();
    let e = push(&mut c, "m", pb::TableFormat::Parquet, &parquet(&missing))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("column \"color\" is in the reference but not in the current window"),
        "{}",
        e.message()
    );
    let wrong_type = RecordBatch::try_from_iter([
        ("x", Arc::new(StringArray::from(vec!["a"; 50])) as ArrayRef),
        (
            "color",
            Arc::new(StringArray::from(vec!["c0"; 50])) as ArrayRef,
        ),
        ("level", Arc::new(Int64Array::from(vec![1; 50])) as ArrayRef),
    ])
    .unwrap();
    let e = push(&mut c, "m", pb::TableFormat::Parquet, &parquet(&wrong_type))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains(
            "column \"x\" is numerical in the reference, but the window's column has type Utf8"
        ),
        "{}",
        e.message()
    );
    let empty = table(0, 0.0, &[1]);
    let e = push(&mut c, "m", pb::TableFormat::ArrowIpc, &ipc(&empty))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no rows"), "{}", e.message());
    let e = push(&mut c, "m", pb::TableFormat::Parquet, &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let none = c
        .list_reports(pb::ListReportsRequest {
            monitor: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.reports.is_empty(), "no report for a refused window");
    let e = c
        .list_reports(pb::ListReportsRequest {
            monitor: "m".into(),
            limit: 5000,
            since_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A column whose window values are all missing gets no score and says why, and the
    // service answers the next window as before.
    let all_missing = RecordBatch::try_from_iter([
        (
            "x",
            Arc::new(Float64Array::from(vec![f64::NAN; 40])) as ArrayRef,
        ),
        (
            "color",
            Arc::new(StringArray::from(vec!["c0"; 40])) as ArrayRef,
        ),
        ("level", Arc::new(Int64Array::from(vec![1; 40])) as ArrayRef),
    ])
    .unwrap();
    let r = push(
        &mut c,
        "m",
        pb::TableFormat::Parquet,
        &parquet(&all_missing),
    )
    .await
    .unwrap();
    let x = column(&r, "x");
    assert_eq!((x.score, x.drifted, x.current_missing), (None, false, 40));
    assert!(x.note.contains("no values"), "{}", x.note);
    sb.stop().await.unwrap();
}

crate::on_both_backends!(
    windows_are_tested_as_the_library_tests_them,
    bad_inputs_get_clear_statuses
);
