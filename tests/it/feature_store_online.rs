//! The online store over gRPC: materialization (monotonic, atomic, incremental, with its
//! event), online reads with Feast's statuses and TTL against now, parity with the
//! offline join at t = now, bad input, and a second replica kept consistent by events.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use mlops_feature_store::{FeatureStore, FeatureStoreConfig};
use mlops_proto::events::v1 as ev;
use mlops_proto::featurestore::v1 as fpb;
use mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

use crate::feature_store::DEFS;

type Client = FeatureStoreServiceClient<Channel>;

const MIN: i64 = 60_000_000_000;

pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn ts(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

fn times(v: &[i64]) -> ArrayRef {
    Arc::new(arrow_array::TimestampNanosecondArray::from(v.to_vec()).with_timezone("UTC"))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<arrow_schema::Field> = columns
        .iter()
        .map(|(n, c)| arrow_schema::Field::new(*n, c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(arrow_schema::Schema::new(fields)),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
    .unwrap()
}

fn write_parquet(path: &std::path::Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The driver view (TTL 2 h): driver 1 at -3 h (0.1), at -1 h twice (0.2 created first,
/// 0.3 created later); driver 2 at -3 h (0.5), outside the TTL. The city view (no TTL):
/// `a` at -5 h (5.0) and -4 h (9.0), in two files.
pub(crate) fn write_sources(root: &std::path::Path, now: i64) {
    let h = 60 * MIN;
    write_parquet(
        &root.join("driver_stats.parquet"),
        &batch(vec![
            ("driver_id", Arc::new(Int64Array::from(vec![1, 1, 1, 2]))),
            (
                "event_timestamp",
                times(&[now - 3 * h, now - h, now - h, now - 3 * h]),
            ),
            ("created", times(&[1, 1, 2, 1])),
            (
                "conv_rate",
                Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3, 0.5])),
            ),
            (
                "trips",
                Arc::new(Int64Array::from(vec![Some(10), Some(20), None, Some(50)])),
            ),
        ]),
    );
    for (file, t, demand) in [
        ("part-0.parquet", now - 5 * h, 5.0),
        ("part-1.parquet", now - 4 * h, 9.0),
    ] {
        write_parquet(
            &root.join("city").join(file),
            &batch(vec![
                ("city", Arc::new(StringArray::from(vec!["a"]))),
                ("event_timestamp", times(&[t])),
                ("demand", Arc::new(Float64Array::from(vec![demand]))),
                ("trips", Arc::new(Int64Array::from(vec![7]))),
            ]),
        );
    }
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FeatureStoreServiceClient::new(channel)
}

pub(crate) async fn start(db: Database) -> (Sandbox, Client, Option<String>) {
    let url = mlops_tests::database_url(db).await;
    let u = url.clone();
    let sb = Sandbox::builder()
        .service::<FeatureStore>(move |c| {
            if let Some(u) = u {
                c.db.database_url = u;
            }
        })
        .start()
        .await
        .expect("sandbox starts");
    let mut c = connect(sb.addresses("feature-store").api).await;
    c.apply_definitions(fpb::ApplyDefinitionsRequest {
        yaml: DEFS.into(),
        file_name: "features.yaml".into(),
        dry_run: false,
    })
    .await
    .unwrap();
    (sb, c, url)
}

pub(crate) fn ints(v: &[Option<i64>]) -> fpb::Values {
    fpb::Values {
        values: v
            .iter()
            .map(|x| fpb::Value {
                kind: x.map(fpb::value::Kind::Int64Value),
            })
            .collect(),
    }
}

fn strings(v: &[&str]) -> fpb::Values {
    fpb::Values {
        values: v
            .iter()
            .map(|x| fpb::Value {
                kind: Some(fpb::value::Kind::StringValue(x.to_string())),
            })
            .collect(),
    }
}

pub(crate) async fn materialize(
    c: &mut Client,
    views: &[&str],
    start: Option<i64>,
    end: i64,
    incremental: bool,
) -> Result<Vec<fpb::MaterializedView>, tonic::Status> {
    c.materialize(fpb::MaterializeRequest {
        feature_views: views.iter().map(|s| s.to_string()).collect(),
        start: start.map(ts),
        end: Some(ts(end)),
        incremental,
    })
    .await
    .map(|r| r.into_inner().views)
}

pub(crate) async fn online(
    c: &mut Client,
    features: &[&str],
    entities: Vec<(&str, fpb::Values)>,
) -> Result<fpb::GetOnlineFeaturesResponse, tonic::Status> {
    c.get_online_features(fpb::GetOnlineFeaturesRequest {
        features: features.iter().map(|s| s.to_string()).collect(),
        entities: entities
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

/// The column `name` of an answer: (value as f64 or None, status).
pub(crate) fn column(
    r: &fpb::GetOnlineFeaturesResponse,
    name: &str,
) -> Vec<(Option<f64>, fpb::FieldStatus)> {
    let i = r
        .feature_names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.feature_names));
    let v = &r.results[i];
    v.values
        .iter()
        .zip(&v.statuses)
        .map(|(x, s)| {
            let x = match &x.kind {
                Some(fpb::value::Kind::DoubleValue(d)) => Some(*d),
                Some(fpb::value::Kind::Int64Value(i)) => Some(*i as f64),
                None => None,
                other => panic!("unexpected {other:?}"),
            };
            (x, fpb::FieldStatus::try_from(*s).unwrap())
        })
        .collect()
}

use fpb::FieldStatus::{NotFound, NullValue, OutsideMaxAge, Present};

async fn materialized_values_serve_with_feasts_statuses(db: Database) {
    let (sb, mut c, _) = start(db).await;
    let now = now_nanos();
    write_sources(&sb.dir().join("features"), now);
    let mut sub = sb
        .bus
        .subscribe("fs-online-test", &[mlops_proto::events::topics::FEATURES])
        .await
        .unwrap();
    // Up to -2 h first: driver 1's value is its -3 h one.
    let runs = materialize(&mut c, &["driver_stats"], None, now - 120 * MIN, false)
        .await
        .unwrap();
    assert_eq!((runs[0].rows, runs[0].keys_written), (2, 2));
    let drivers = || vec![("driver_id", ints(&[Some(1), Some(2), Some(99), None]))];
    let r = online(&mut c, &["driver_stats:conv_rate"], drivers())
        .await
        .unwrap();
    assert_eq!(r.feature_names, ["driver_id", "conv_rate"]);
    assert_eq!(
        column(&r, "conv_rate"),
        [
            (None, OutsideMaxAge),
            (None, OutsideMaxAge),
            (None, NotFound),
            (None, NotFound)
        ],
        "-3 h is past the 2 h TTL"
    );
    // Up to -30 min: the -1 h tie goes to the later created time; trips is null there.
    let runs = materialize(&mut c, &[], None, now - 30 * MIN, false)
        .await
        .unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["city_stats", "driver_stats"], "every online view");
    let driver = &runs[1];
    assert_eq!(
        (driver.rows, driver.keys_written),
        (4, 1),
        "driver 2 kept its value"
    );
    assert_eq!(driver.newest_event, Some(ts(now - 60 * MIN)));
    let r = online(
        &mut c,
        &["driver_stats:conv_rate", "driver_stats:trips"],
        drivers(),
    )
    .await
    .unwrap();
    assert_eq!(
        column(&r, "conv_rate"),
        [
            (Some(0.3), Present),
            (None, OutsideMaxAge),
            (None, NotFound),
            (None, NotFound)
        ]
    );
    assert_eq!(column(&r, "trips")[0], (None, NullValue));
    let i = r
        .feature_names
        .iter()
        .position(|n| n == "conv_rate")
        .unwrap();
    assert_eq!(r.results[i].event_timestamps[0], ts(now - 60 * MIN));
    // Monotonic: the early range again changes nothing.
    let runs = materialize(&mut c, &["driver_stats"], None, now - 120 * MIN, false)
        .await
        .unwrap();
    assert_eq!(runs[0].keys_written, 0);
    let r = online(&mut c, &["driver_stats:conv_rate"], drivers())
        .await
        .unwrap();
    assert_eq!(column(&r, "conv_rate")[0], (Some(0.3), Present));
    // Incremental: a newer row arrives; the run starts where the last one ended.
    write_parquet(
        &sb.dir().join("features/driver_stats.parquet"),
        &batch(vec![
            ("driver_id", Arc::new(Int64Array::from(vec![1, 1]))),
            ("event_timestamp", times(&[now - 60 * MIN, now - 10 * MIN])),
            ("created", times(&[2, 1])),
            ("conv_rate", Arc::new(Float64Array::from(vec![0.3, 0.9]))),
            ("trips", Arc::new(Int64Array::from(vec![30, 90]))),
        ]),
    );
    let later = now_nanos();
    let runs = materialize(&mut c, &["driver_stats"], None, later, true)
        .await
        .unwrap();
    assert_eq!(
        runs[0].start,
        Some(ts(now - 30 * MIN)),
        "from the latest end of a run"
    );
    assert_eq!(runs[0].keys_written, 1);
    let r = online(&mut c, &["driver_stats:conv_rate"], drivers())
        .await
        .unwrap();
    assert_eq!(column(&r, "conv_rate")[0], (Some(0.9), Present));
    // A string-keyed view with no TTL, through a feature service with full names.
    let r = c
        .get_online_features(fpb::GetOnlineFeaturesRequest {
            feature_service: "driver_activity".into(),
            full_feature_names: true,
            entities: [
                ("driver_id".to_owned(), ints(&[Some(1), Some(2)])),
                ("city".to_owned(), strings(&["a", "b"])),
            ]
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.feature_names,
        [
            "driver_id",
            "city",
            "driver_stats__conv_rate",
            "driver_stats__trips",
            "city_stats__demand"
        ]
    );
    assert_eq!(
        column(&r, "city_stats__demand"),
        [(Some(9.0), Present), (None, NotFound)]
    );
    // Each run published its event.
    // (The apply's FeatureViewUpdated events may come first: the relay publishes after
    // the subscription began.)
    let mut m: Vec<(String, i64)> = Vec::new();
    while m.len() < 5 {
        for e in crate::events::take(&mut sub, 1, Duration::from_secs(10)).await {
            if let Ok(x) = e.decode::<ev::Materialized>() {
                m.push((x.name, x.keys_written));
            }
        }
    }
    assert_eq!(
        m,
        [
            ("driver_stats".to_owned(), 2),
            ("city_stats".to_owned(), 1),
            ("driver_stats".to_owned(), 1),
            ("driver_stats".to_owned(), 0),
            ("driver_stats".to_owned(), 1)
        ]
    );
    sb.stop().await.unwrap();
}

/// Online at now equals the offline join at t = now, for every key, around the TTL's
/// boundary: one key per age of its newest row (the same as three values of now against one
/// row), 3 s either side of the 2 h TTL, well inside, well outside, and a key not there.
async fn online_equals_the_offline_join_at_now(db: Database) {
    let (sb, mut c, _) = start(db).await;
    let now = now_nanos();
    let root = sb.dir().join("features");
    write_sources(&root, now);
    let sec = 1_000_000_000;
    let ttl = 120 * MIN;
    // (driver, age of its newest row); each also has an older row an hour before.
    let ages = [
        (10, 60 * MIN),
        (11, ttl - 3 * sec),
        (12, ttl + 3 * sec),
        (13, 5 * ttl),
    ];
    let mut ids = Vec::new();
    let mut ts_ = Vec::new();
    let mut conv = Vec::new();
    for (i, (id, age)) in ages.iter().enumerate() {
        for (j, extra) in [0, 60 * MIN].into_iter().enumerate() {
            ids.push(*id);
            ts_.push(now - age - extra);
            conv.push(i as f64 + j as f64 / 10.0);
        }
    }
    let n = ids.len();
    write_parquet(
        &root.join("driver_stats.parquet"),
        &batch(vec![
            ("driver_id", Arc::new(Int64Array::from(ids))),
            ("event_timestamp", times(&ts_)),
            ("created", times(&vec![1; n])),
            ("conv_rate", Arc::new(Float64Array::from(conv))),
            ("trips", Arc::new(Int64Array::from(vec![1; n]))),
        ]),
    );
    materialize(&mut c, &[], None, now, false).await.unwrap();
    let keys = [Some(10), Some(11), Some(12), Some(13), Some(99)];
    let cities = ["a", "a", "b", "a", "a"];
    let r = online(
        &mut c,
        &["driver_stats:conv_rate", "city_stats:demand"],
        vec![("driver_id", ints(&keys)), ("city", strings(&cities))],
    )
    .await
    .unwrap();
    let statuses: Vec<_> = column(&r, "conv_rate")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        statuses,
        [Present, Present, OutsideMaxAge, OutsideMaxAge, NotFound]
    );
    let entity = batch(vec![
        ("driver_id", Arc::new(Int64Array::from(keys.to_vec()))),
        ("city", Arc::new(StringArray::from(cities.to_vec()))),
        ("event_timestamp", times(&[now_nanos(); 5])),
    ]);
    let (_, offline, _) = crate::feature_store::historical(
        &mut c,
        fpb::HistoricalQuery {
            features: vec!["driver_stats:conv_rate".into(), "city_stats:demand".into()],
            ..Default::default()
        },
        Some(&entity),
    )
    .await
    .unwrap();
    for name in ["conv_rate", "demand"] {
        let on: Vec<Option<f64>> = column(&r, name).into_iter().map(|(v, _)| v).collect();
        assert_eq!(on, crate::feature_store::floats(&offline, name), "{name}");
    }
    assert_eq!(
        crate::feature_store::floats(&offline, "conv_rate"),
        [Some(0.0), Some(1.0), None, None, None]
    );
    sb.stop().await.unwrap();
}

async fn bad_online_requests_get_clear_statuses(db: Database) {
    let (sb, mut c, _) = start(db).await;
    let now = now_nanos();
    write_sources(&sb.dir().join("features"), now);
    materialize(&mut c, &[], None, now, false).await.unwrap();
    let expect = |r: Result<fpb::GetOnlineFeaturesResponse, tonic::Status>, says: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains(says),
            "`{}` does not say `{says}`",
            e.message()
        );
    };
    expect(
        online(
            &mut c,
            &["driver_stats:nope"],
            vec![("driver_id", ints(&[Some(1)]))],
        )
        .await,
        "has no feature `nope`",
    );
    expect(
        online(
            &mut c,
            &["driver_stats:conv_rate"],
            vec![("city", strings(&["a"]))],
        )
        .await,
        "no column `driver_id`",
    );
    expect(
        online(
            &mut c,
            &["driver_stats:conv_rate"],
            vec![("driver_id", strings(&["1"]))],
        )
        .await,
        "a string value where the entity's key type is int64",
    );
    expect(
        online(
            &mut c,
            &["driver_stats:conv_rate", "city_stats:demand"],
            vec![
                ("driver_id", ints(&[Some(1), Some(2)])),
                ("city", strings(&["a"])),
            ],
        )
        .await,
        "the same length",
    );
    expect(
        online(
            &mut c,
            &["driver_stats:trips", "city_stats:trips"],
            vec![("driver_id", ints(&[Some(1)])), ("city", strings(&["a"]))],
        )
        .await,
        "two columns named `trips`",
    );
    let e = materialize(&mut c, &["nope"], None, now, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .materialize(fpb::MaterializeRequest::default())
        .await
        .unwrap_err();
    assert!(e.message().contains("`end` is required"), "{}", e.message());
    // A source that is gone: NOT_FOUND, and the online store keeps what it had.
    let before = scrape(&sb).await;
    std::fs::remove_file(sb.dir().join("features/driver_stats.parquet")).unwrap();
    let e = materialize(&mut c, &["driver_stats"], None, now_nanos(), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    // Counted (the counters are the process's, shared with tests running beside this one:
    // compare before and after).
    let after = scrape(&sb).await;
    assert!(
        after.failed > before.failed,
        "{} failed runs before, {} after",
        before.failed,
        after.failed
    );
    assert!(after.ok >= 1 && after.rows >= 4 && after.newest > 0);
    let r = online(
        &mut c,
        &["driver_stats:conv_rate"],
        vec![("driver_id", ints(&[Some(1)]))],
    )
    .await
    .unwrap();
    assert_eq!(column(&r, "conv_rate"), [(Some(0.3), Present)]);
    sb.stop().await.unwrap();
}

/// The materialization metrics of `driver_stats`.
struct Counted {
    failed: u64,
    ok: u64,
    rows: u64,
    newest: i64,
}

async fn scrape(sb: &Sandbox) -> Counted {
    let (_, metrics) = mlops_tests::http_get(sb.addresses("feature-store").admin, "/metrics")
        .await
        .unwrap();
    let value = |prefix: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().parse::<f64>().unwrap() as i64)
            .unwrap_or(0)
    };
    Counted {
        failed: value(
            r#"mlops_feature_store_materializations_total{result="failed",view="driver_stats"}"#,
        ) as u64,
        ok: value(r#"mlops_feature_store_materializations_total{result="ok",view="driver_stats"}"#)
            as u64,
        rows: value(r#"mlops_feature_store_materialized_rows_total{view="driver_stats"}"#) as u64,
        newest: value(r#"mlops_feature_store_newest_event_timestamp_seconds{view="driver_stats"}"#),
    }
}

crate::on_both_backends!(
    materialized_values_serve_with_feasts_statuses,
    online_equals_the_offline_join_at_now,
    bad_online_requests_get_clear_statuses,
);

/// Two replicas on one PostgreSQL database: what one materializes, the other serves at
/// once, although it had cached the view (the `Materialized` event drops its cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_serves_what_the_first_materialized() {
    use mlops_kit::Service;
    use mlops_runtime::config::ServiceConfig;
    let (sb, mut a, url) = start(Database::Postgres).await;
    let now = now_nanos();
    write_sources(&sb.dir().join("features"), now);
    let mut config = FeatureStoreConfig::defaults();
    config.server.listen.set("127.0.0.1:0", "127.0.0.1:0");
    config.db.database_url = url.unwrap();
    config.offline_root = sb.dir().join("features").display().to_string();
    let replica = FeatureStore::bind(config, Some(sb.bus.clone()))
        .await
        .unwrap();
    let mut b = connect(replica.addresses().api).await;
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let running = tokio::spawn(replica.run(stop.clone()));
    let drivers = || vec![("driver_id", ints(&[Some(1)]))];
    // B reads (and caches) the view before anything is materialized.
    let r = online(&mut b, &["driver_stats:conv_rate"], drivers())
        .await
        .unwrap();
    assert_eq!(column(&r, "conv_rate"), [(None, NotFound)]);
    materialize(&mut a, &["driver_stats"], None, now, false)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = online(&mut b, &["driver_stats:conv_rate"], drivers())
            .await
            .unwrap();
        if column(&r, "conv_rate") == [(Some(0.3), Present)] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica B still serves {:?}",
            column(&r, "conv_rate")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    sb.stop().await.unwrap();
}
