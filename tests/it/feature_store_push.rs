//! Push over gRPC: rows into the online store (monotonic, like materialization), and into
//! the push source's batch source as Parquet, which training data then reads; bad pushes
//! write nothing. On SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use mlops_feature_store::offline::ipc::Encoder;
use mlops_feature_store::FeatureStore;
use mlops_proto::featurestore::v1 as fpb;
use mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

use crate::feature_store::batch;

type Client = FeatureStoreServiceClient<Channel>;

const MIN: i64 = 60_000_000_000;

const DEFS: &str = r#"
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
sources:
  - name: driver_history
    type: parquet
    path: pushed
  - name: driver_push
    type: push
    batch_source: driver_history
feature_views:
  - name: driver_live
    entities: [driver]
    ttl: 2h
    source: driver_push
    schema:
      - {name: conv_rate, dtype: float64}
      - {name: trips, dtype: int64}
"#;

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn times(v: &[i64]) -> ArrayRef {
    Arc::new(arrow_array::TimestampNanosecondArray::from(v.to_vec()).with_timezone("UTC"))
}

fn ipc(b: &RecordBatch) -> bytes::Bytes {
    let mut enc = Encoder::new(&b.schema(), 1 << 20).unwrap();
    enc.write(b).unwrap();
    enc.finish().unwrap();
    enc.take().concat().into()
}

fn rows(ids: &[i64], at: &[i64], conv: &[f64]) -> RecordBatch {
    batch(vec![
        (
            "driver_id",
            Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
        ),
        ("event_timestamp", times(at)),
        ("conv_rate", Arc::new(Float64Array::from(conv.to_vec()))),
        ("trips", Arc::new(Int64Array::from(vec![1; ids.len()]))),
    ])
}

async fn push(
    c: &mut Client,
    source: &str,
    rows: &RecordBatch,
    to: fpb::PushMode,
) -> Result<fpb::PushResponse, tonic::Status> {
    c.push(fpb::PushRequest {
        push_source: source.into(),
        arrow_ipc: ipc(rows),
        to: to as i32,
    })
    .await
    .map(|r| r.into_inner())
}

/// `driver_live:conv_rate` of `ids`.
async fn conv_rate(c: &mut Client, ids: &[i64]) -> Vec<Option<f64>> {
    let ids: Vec<Option<i64>> = ids.iter().copied().map(Some).collect();
    let r = crate::feature_store_online::online(
        c,
        &["driver_live:conv_rate"],
        vec![("driver_id", crate::feature_store_online::ints(&ids))],
    )
    .await
    .unwrap();
    crate::feature_store_online::column(&r, "conv_rate")
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

async fn pushed_rows_serve_online_and_train_offline(db: Database) {
    let url = mlops_tests::database_url(db).await;
    let sb = Sandbox::builder()
        .service::<FeatureStore>(move |c| {
            if let Some(u) = url {
                c.db.database_url = u;
            }
        })
        .start()
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("feature-store").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = FeatureStoreServiceClient::new(channel);
    c.apply_definitions(fpb::ApplyDefinitionsRequest {
        yaml: DEFS.into(),
        file_name: "push.yaml".into(),
        dry_run: false,
    })
    .await
    .unwrap();
    let now = now_nanos();
    let online = fpb::PushMode::Unspecified;
    let r = push(
        &mut c,
        "driver_push",
        &rows(&[1, 2], &[now - 10 * MIN, now - 5 * MIN], &[0.5, 0.7]),
        online,
    )
    .await
    .unwrap();
    assert_eq!((r.views[0].rows, r.views[0].keys_written), (2, 2));
    assert!(r.offline_file.is_empty(), "online only by default");
    assert_eq!(
        conv_rate(&mut c, &[1, 2, 3]).await,
        [Some(0.5), Some(0.7), None]
    );
    // An older row changes nothing (monotonic, as materialization).
    let r = push(
        &mut c,
        "driver_push",
        &rows(&[1], &[now - 60 * MIN], &[0.1]),
        online,
    )
    .await
    .unwrap();
    assert_eq!(r.views[0].keys_written, 0);
    assert_eq!(conv_rate(&mut c, &[1]).await, [Some(0.5)]);
    // Online and offline: the training join reads the pushed file.
    let r = push(
        &mut c,
        "driver_push",
        &rows(&[1, 3], &[now - 2 * MIN, now - 3 * MIN], &[0.9, 0.3]),
        fpb::PushMode::OnlineAndOffline,
    )
    .await
    .unwrap();
    assert!(
        r.offline_file.starts_with("pushed/push-"),
        "{}",
        r.offline_file
    );
    assert!(sb.dir().join("features").join(&r.offline_file).is_file());
    assert_eq!(conv_rate(&mut c, &[1, 3]).await, [Some(0.9), Some(0.3)]);
    let entity = batch(vec![
        (
            "driver_id",
            Arc::new(Int64Array::from(vec![1, 3, 2])) as ArrayRef,
        ),
        ("event_timestamp", times(&[now, now, now])),
    ]);
    let (_, training, _) = crate::feature_store::historical(
        &mut c,
        fpb::HistoricalQuery {
            features: vec!["driver_live:conv_rate".into()],
            ..Default::default()
        },
        Some(&entity),
    )
    .await
    .unwrap();
    assert_eq!(
        crate::feature_store::floats(&training, "conv_rate"),
        [Some(0.9), Some(0.3), None],
        "driver 2 was pushed online only"
    );

    // Bad pushes: a clear status, and nothing written.
    let expect = |r: Result<fpb::PushResponse, tonic::Status>, code: Code, says: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(
            e.message().contains(says),
            "`{}` does not say `{says}`",
            e.message()
        );
    };
    let newer = rows(&[1], &[now - MIN], &[0.0]);
    expect(
        push(&mut c, "nope", &newer, online).await,
        Code::NotFound,
        "source `nope` is not defined",
    );
    expect(
        push(&mut c, "driver_history", &newer, online).await,
        Code::InvalidArgument,
        "not a push source",
    );
    let no_trips = newer.project(&[0, 1, 2]).unwrap();
    expect(
        push(&mut c, "driver_push", &no_trips, online).await,
        Code::InvalidArgument,
        "no column `trips`",
    );
    let string_keys = batch(vec![
        (
            "driver_id",
            Arc::new(StringArray::from(vec!["1"])) as ArrayRef,
        ),
        ("event_timestamp", times(&[now - MIN])),
        ("conv_rate", Arc::new(Float64Array::from(vec![0.0]))),
        ("trips", Arc::new(Int64Array::from(vec![1]))),
    ]);
    expect(
        push(&mut c, "driver_push", &string_keys, online).await,
        Code::InvalidArgument,
        "key type is int64",
    );
    let garbage = c
        .push(fpb::PushRequest {
            push_source: "driver_push".into(),
            arrow_ipc: bytes::Bytes::from_static(b"not arrow"),
            to: 0,
        })
        .await;
    expect(
        garbage.map(|r| r.into_inner()),
        Code::InvalidArgument,
        "not a valid Arrow IPC stream",
    );
    assert_eq!(
        conv_rate(&mut c, &[1]).await,
        [Some(0.9)],
        "no bad push wrote"
    );
    sb.stop().await.unwrap();
}

crate::on_both_backends!(pushed_rows_serve_online_and_train_offline);
