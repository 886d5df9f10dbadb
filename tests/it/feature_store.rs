//! The feature store over gRPC: definitions applied as a set (idempotent, versioned,
//! events), and training data from the point-in-time join, streamed as Arrow IPC or
//! written to Parquet, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use mlops_feature_store::offline::ipc::{Decoder, Encoder};
use mlops_feature_store::FeatureStore;
use mlops_proto::events::v1 as ev;
use mlops_proto::featurestore::v1 as fpb;
use mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

type Client = FeatureStoreServiceClient<Channel>;

pub(crate) const HOUR: i64 = 3_600_000_000_000;

/// Definitions: a driver view keyed by an int, with a 2 h TTL and a created column; a
/// city view keyed by a string, unlimited, from a directory of two files; a service.
pub(crate) const DEFS: &str = r#"
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
  - name: city
    join_keys: [{name: city, value_type: string}]
sources:
  - name: driver_source
    type: parquet
    path: driver_stats.parquet
    created_timestamp_column: created
  - name: city_source
    type: parquet
    path: city
feature_views:
  - name: driver_stats
    entities: [driver]
    ttl: 2h
    source: driver_source
    schema:
      - {name: conv_rate, dtype: float64}
      - {name: trips, dtype: int64}
  - name: city_stats
    entities: [city]
    source: city_source
    schema:
      - {name: demand, dtype: float64}
      - {name: trips, dtype: int64}
feature_services:
  - name: driver_activity
    features: [driver_stats, "city_stats:demand"]
"#;

pub(crate) async fn start(db: Database) -> (Sandbox, Client) {
    start_with(db, |_| {}).await
}

/// A feature store with the tests' settings, then `tweak`'s.
async fn start_with(
    db: Database,
    tweak: impl FnOnce(&mut mlops_feature_store::FeatureStoreConfig) + Send + 'static,
) -> (Sandbox, Client) {
    let url = mlops_tests::database_url(db).await;
    let sb = Sandbox::builder()
        .service::<FeatureStore>(move |c| {
            if let Some(url) = url {
                c.db.database_url = url;
            }
            // Small chunks, so a table crosses many messages.
            c.ipc_chunk_bytes = 4096;
            tweak(c);
        })
        .start()
        .await
        .expect("sandbox starts");
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("feature-store").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (sb, FeatureStoreServiceClient::new(channel))
}

pub(crate) async fn apply(
    c: &mut Client,
    yaml: &str,
) -> Result<fpb::ApplyDefinitionsResponse, tonic::Status> {
    c.apply_definitions(fpb::ApplyDefinitionsRequest {
        yaml: yaml.into(),
        file_name: "features.yaml".into(),
        dry_run: false,
    })
    .await
    .map(|r| r.into_inner())
}

fn names(refs: &[fpb::DefinitionRef]) -> Vec<String> {
    refs.iter().map(|r| r.name.clone()).collect()
}

pub(crate) fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
    .unwrap()
}

pub(crate) fn times(v: &[Option<i64>]) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v.to_vec()).with_timezone("UTC"))
}

pub(crate) fn write_parquet(path: &std::path::Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The sources: driver 1 at 07:00 (0.1), 08:00 twice (0.2 created first, 0.3 created
/// later), 09:30 (0.4); driver 2 at 06:00 (0.5). City `a` at 05:00 (5.0, first file) and
/// 09:00 (9.0, second file).
pub(crate) fn write_sources(root: &std::path::Path) {
    let h = |x: f64| (x * HOUR as f64) as i64;
    write_parquet(
        &root.join("driver_stats.parquet"),
        &batch(vec![
            ("driver_id", Arc::new(Int64Array::from(vec![1, 1, 1, 1, 2]))),
            (
                "event_timestamp",
                times(&[
                    Some(h(7.0)),
                    Some(h(8.0)),
                    Some(h(8.0)),
                    Some(h(9.5)),
                    Some(h(6.0)),
                ]),
            ),
            (
                "created",
                times(&[Some(1), Some(1), Some(2), Some(1), Some(1)]),
            ),
            (
                "conv_rate",
                Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3, 0.4, 0.5])),
            ),
            (
                "trips",
                Arc::new(Int64Array::from(vec![10, 20, 30, 40, 50])),
            ),
        ]),
    );
    for (file, t, demand, trips) in [
        ("part-0.parquet", 5.0, 5.0, 500),
        ("part-1.parquet", 9.0, 9.0, 900),
    ] {
        write_parquet(
            &root.join("city").join(file),
            &batch(vec![
                ("city", Arc::new(StringArray::from(vec!["a"]))),
                ("event_timestamp", times(&[Some(h(t))])),
                ("demand", Arc::new(Float64Array::from(vec![demand]))),
                ("trips", Arc::new(Int64Array::from(vec![trips]))),
            ]),
        );
    }
}

/// The entity table: (row_id, driver_id, city, event_timestamp).
pub(crate) fn entity_table() -> RecordBatch {
    let h = |x: f64| Some((x * HOUR as f64) as i64);
    batch(vec![
        ("row_id", Arc::new(Int64Array::from_iter_values(0..8))),
        (
            "driver_id",
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                Some(2),
                Some(99),
                None,
                Some(1),
            ])),
        ),
        (
            "city",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("a"),
                Some("a"),
                None,
                Some("b"),
                Some("a"),
                Some("a"),
                Some("a"),
            ])),
        ),
        (
            "event_timestamp",
            times(&[
                h(10.0),                    // conv 0.4 (09:30); city 9.0
                h(10.0),                    // the same row again: kept
                h(8.0),                     // the 08:00 tie: created decides, 0.3; city 5.0
                Some(h(11.5).unwrap()),     // 09:30 is exactly 2 h before: inclusive, 0.4
                h(9.0),                     // driver 2's 06:00 is 3 h old: null
                h(10.0),                    // unknown driver: null
                h(10.0),                    // null key: null
                Some(h(11.5).unwrap() + 1), // 1 ns past the TTL: null
            ]),
        ),
    ])
}

/// Sends `query` and `entity` (when given) and reads the answer: the training table's
/// batches and the summary.
pub(crate) async fn historical(
    c: &mut Client,
    query: fpb::HistoricalQuery,
    entity: Option<&RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>, fpb::HistoricalSummary), tonic::Status> {
    use fpb::get_historical_features_request::Part;
    let mut msgs = vec![fpb::GetHistoricalFeaturesRequest {
        part: Some(Part::Query(query)),
    }];
    if let Some(entity) = entity {
        let mut enc = Encoder::new(&entity.schema(), 1000).unwrap();
        // Two batches, to cross batch boundaries too.
        let half = entity.num_rows() / 2;
        enc.write(&entity.slice(0, half)).unwrap();
        enc.write(&entity.slice(half, entity.num_rows() - half))
            .unwrap();
        enc.finish().unwrap();
        msgs.extend(
            enc.take()
                .into_iter()
                .map(|c| fpb::GetHistoricalFeaturesRequest {
                    part: Some(Part::ArrowIpc(c)),
                }),
        );
    }
    let mut answer = c
        .get_historical_features(futures::stream::iter(msgs))
        .await?
        .into_inner();
    let mut dec = Decoder::new();
    let mut batches = Vec::new();
    let mut summary = None;
    while let Some(m) = answer.message().await? {
        match m.part {
            Some(fpb::get_historical_features_response::Part::ArrowIpc(c)) => {
                assert!(summary.is_none(), "the summary comes last");
                batches.extend(dec.push(c).unwrap());
            }
            Some(fpb::get_historical_features_response::Part::Summary(s)) => summary = Some(s),
            None => panic!("an empty message"),
        }
    }
    let schema = dec.schema().unwrap_or_else(|| Arc::new(Schema::empty()));
    Ok((schema, batches, summary.expect("a summary")))
}

pub(crate) fn query(features: &[&str]) -> fpb::HistoricalQuery {
    fpb::HistoricalQuery {
        features: features.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn column<'a>(batches: &'a [RecordBatch], name: &str) -> Vec<&'a dyn Array> {
    batches
        .iter()
        .map(|b| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name}"))
                .as_ref()
        })
        .collect()
}

pub(crate) fn floats(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    column(batches, name)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
        .collect()
}

fn ints(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    column(batches, name)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        .collect()
}

async fn definitions_apply_as_a_set(db: Database) {
    let (sb, mut c) = start(db).await;
    let mut sub = sb
        .bus
        .subscribe("fs-test", &[mlops_proto::events::topics::FEATURES])
        .await
        .unwrap();
    let first = apply(&mut c, DEFS).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(
        names(&first.created),
        [
            "city",
            "driver",
            "city_source",
            "driver_source",
            "city_stats",
            "driver_stats",
            "driver_activity"
        ]
    );
    assert!(first.changed.is_empty() && first.removed.is_empty());
    // The same set again changes nothing, not even the version.
    let again = apply(&mut c, DEFS).await.unwrap();
    assert_eq!(
        (again.version, again.created.len(), again.changed.len()),
        (1, 0, 0)
    );
    // A dry run reports without applying.
    let changed_ttl = DEFS.replace("ttl: 2h", "ttl: 3h");
    let dry = c
        .apply_definitions(fpb::ApplyDefinitionsRequest {
            yaml: changed_ttl.clone(),
            file_name: "features.yaml".into(),
            dry_run: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (names(&dry.changed), dry.version),
        (vec!["driver_stats".to_owned()], 2)
    );
    let listed = c
        .list_definitions(fpb::ListDefinitionsRequest { kind: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (listed.version, listed.definitions.len()),
        (1, 7),
        "the dry run applied nothing"
    );
    // A change and a removal.
    let without_service = changed_ttl[..changed_ttl.find("feature_services:").unwrap()].to_owned();
    let second = apply(&mut c, &without_service).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(names(&second.changed), ["driver_stats"]);
    assert_eq!(names(&second.removed), ["driver_activity"]);
    assert_eq!(second.removed[0].kind, fpb::Kind::FeatureService as i32);
    let view = c
        .get_definition(fpb::GetDefinitionRequest {
            kind: fpb::Kind::FeatureView as i32,
            name: "driver_stats".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .definition
        .unwrap();
    assert_eq!(view.version, 2);
    let spec: serde_json::Value = serde_json::from_str(&view.spec_json).unwrap();
    assert_eq!(spec["ttl_nanos"], 3 * HOUR);
    // Events: two views created, then one changed.
    let events = crate::events::take(&mut sub, 3, Duration::from_secs(10)).await;
    let got: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| {
            let u: ev::FeatureViewUpdated = e.decode().unwrap();
            assert_eq!(e.subject, format!("feature_views/{}", u.name));
            (u.name, u.change, u.version)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("city_stats".to_owned(), "created".to_owned(), 1),
            ("driver_stats".to_owned(), "created".to_owned(), 1),
            ("driver_stats".to_owned(), "changed".to_owned(), 2),
        ]
    );
    let u: ev::FeatureViewUpdated = events[2].decode().unwrap();
    assert_eq!((u.ttl_nanos, u.features.len()), (3 * HOUR, 2));
    sb.stop().await.unwrap();
}

async fn a_bad_definition_set_applies_nothing(db: Database) {
    let (sb, mut c) = start(db).await;
    apply(&mut c, DEFS).await.unwrap();
    for (bad, says) in [
        ("entities: [\n", "line"),
        (&*DEFS.replace("ttl: 2h", "ttl: -2h"), "negative TTL"),
        (
            &*DEFS.replace("entities: [driver]", "entities: [drivers]"),
            "entity `drivers` is not defined",
        ),
        (
            &*DEFS.replace(
                "dtype: float64}\n      - {name: trips",
                "dtype: float128}\n      - {name: trips",
            ),
            "float128",
        ),
    ] {
        let e = apply(&mut c, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains(says), "{}", e.message());
        assert!(e.message().contains("features.yaml"), "{}", e.message());
    }
    let listed = c
        .list_definitions(fpb::ListDefinitionsRequest { kind: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.version, listed.definitions.len()), (1, 7));
    let e = c
        .get_definition(fpb::GetDefinitionRequest {
            kind: fpb::Kind::FeatureView as i32,
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    sb.stop().await.unwrap();
}

/// A feature store whose joins never fit in memory, so every one spills to disk, in the
/// directory returned (which the service creates).
pub(crate) async fn start_spilling(db: Database) -> (Sandbox, Client, std::path::PathBuf) {
    let spill = std::env::temp_dir().join(format!("mlops-spill-{}", uuid::Uuid::new_v4()));
    let dir = spill.clone();
    let (sb, c) = start_with(db, move |c| {
        c.join_memory_bytes = 1024;
        c.spill_dir = dir.display().to_string();
    })
    .await;
    (sb, c, spill)
}

async fn training_data_is_exact_point_in_time(db: Database) {
    let (sb, c) = start(db).await;
    exact_point_in_time(sb, c, None).await;
}

/// The same queries, their views' history split in partitions on disk.
async fn training_data_is_exact_point_in_time_when_spilled(db: Database) {
    let (sb, c, spill) = start_spilling(db).await;
    exact_point_in_time(sb, c, Some(&spill)).await;
    std::fs::remove_dir_all(&spill).unwrap();
}

async fn exact_point_in_time(sb: Sandbox, mut c: Client, spill: Option<&std::path::Path>) {
    apply(&mut c, DEFS).await.unwrap();
    write_sources(&sb.dir().join("features"));
    let entity = entity_table();
    let (schema, batches, summary) = historical(
        &mut c,
        fpb::HistoricalQuery {
            feature_service: "driver_activity".into(),
            ..Default::default()
        },
        Some(&entity),
    )
    .await
    .unwrap();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        columns,
        [
            "row_id",
            "driver_id",
            "city",
            "event_timestamp",
            "conv_rate",
            "trips",
            "demand"
        ]
    );
    assert_eq!(summary.rows, 8);
    assert_eq!(summary.spilled, spill.is_some(), "the streamed answer");
    assert_eq!(
        ints(&batches, "row_id"),
        (0..8).map(Some).collect::<Vec<_>>(),
        "every entity row, in order"
    );
    assert_eq!(
        floats(&batches, "conv_rate"),
        [
            Some(0.4),
            Some(0.4),
            Some(0.3),
            Some(0.4),
            None,
            None,
            None,
            None
        ]
    );
    assert_eq!(
        ints(&batches, "trips"),
        [
            Some(40),
            Some(40),
            Some(30),
            Some(40),
            None,
            None,
            None,
            None
        ]
    );
    assert_eq!(
        floats(&batches, "demand"),
        [
            Some(9.0),
            Some(9.0),
            Some(5.0),
            None,
            None,
            Some(9.0),
            Some(9.0),
            Some(9.0)
        ]
    );
    // The entity table's columns come back unchanged.
    let back = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    assert_eq!(
        back.column(3).data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    );
    assert_eq!(back.column(1).as_ref(), entity.column(1).as_ref());

    // Full feature names tell two views' `trips` apart; without them it is an error.
    let both = ["driver_stats:trips", "city_stats:trips"];
    let e = historical(&mut c, query(&both), Some(&entity))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("two columns named `trips`"),
        "{}",
        e.message()
    );
    let (_, named, _) = historical(
        &mut c,
        fpb::HistoricalQuery {
            full_feature_names: true,
            ..query(&both)
        },
        Some(&entity),
    )
    .await
    .unwrap();
    assert_eq!(ints(&named, "driver_stats__trips")[0], Some(40));
    assert_eq!(ints(&named, "city_stats__trips")[0], Some(900));

    // The same training table, from and to Parquet on the offline store.
    write_parquet(&sb.dir().join("features/entities/rows.parquet"), &entity);
    let (_, none, summary) = historical(
        &mut c,
        fpb::HistoricalQuery {
            feature_service: "driver_activity".into(),
            entity_parquet: "entities/rows.parquet".into(),
            output_parquet: "training/out.parquet".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        (summary.rows, summary.output_parquet.as_str()),
        (8, "training/out.parquet")
    );
    let file = std::fs::File::open(sb.dir().join("features/training/out.parquet")).unwrap();
    let written: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(floats(&written, "conv_rate"), floats(&batches, "conv_rate"));
    assert_eq!(floats(&written, "demand"), floats(&batches, "demand"));
    // Spilled or not as configured, and a spilled join leaves no file behind.
    assert_eq!(summary.spilled, spill.is_some());
    if let Some(dir) = spill {
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "{} holds {left:?}", dir.display());
    }
    sb.stop().await.unwrap();
}

/// `filter_by_created_timestamp`: a row backfilled after an entity row's time is not a
/// candidate for it; the next best row known then wins.
async fn training_data_only_as_known_at_the_time(db: Database) {
    let (sb, mut c) = start(db).await;
    apply(&mut c, DEFS).await.unwrap();
    let root = sb.dir().join("features");
    write_sources(&root);
    // driver 1's 09:30 row (0.4) written at 10:30, the 08:00 ones long before
    let h = |x: f64| (x * HOUR as f64) as i64;
    write_parquet(
        &root.join("driver_stats.parquet"),
        &batch(vec![
            ("driver_id", Arc::new(Int64Array::from(vec![1, 1, 1, 1]))),
            (
                "event_timestamp",
                times(&[Some(h(7.0)), Some(h(8.0)), Some(h(8.0)), Some(h(9.5))]),
            ),
            (
                "created",
                times(&[Some(1), Some(1), Some(2), Some(h(10.5))]),
            ),
            (
                "conv_rate",
                Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3, 0.4])),
            ),
            ("trips", Arc::new(Int64Array::from(vec![10, 20, 30, 40]))),
        ]),
    );
    let entity = batch(vec![
        ("driver_id", Arc::new(Int64Array::from(vec![1, 1, 1]))),
        (
            "event_timestamp",
            times(&[Some(h(10.0)), Some(h(10.5)), Some(h(11.0))]),
        ),
    ]);
    let conv = |filter: bool| {
        let mut c = c.clone();
        let entity = entity.clone();
        async move {
            let q = fpb::HistoricalQuery {
                filter_by_created_timestamp: filter,
                ..query(&["driver_stats:conv_rate"])
            };
            let (_, batches, _) = historical(&mut c, q, Some(&entity)).await.unwrap();
            floats(&batches, "conv_rate")
        }
    };
    // 10:00: the 09:30 row is not written yet, so the 08:00 one (created later of the
    // tie); from 10:30 on, the 09:30 one
    assert_eq!(conv(true).await, [Some(0.3), Some(0.4), Some(0.4)]);
    assert_eq!(conv(false).await, [Some(0.4), Some(0.4), Some(0.4)]);
    sb.stop().await.unwrap();
}

crate::on_both_backends!(
    definitions_apply_as_a_set,
    a_bad_definition_set_applies_nothing,
    training_data_is_exact_point_in_time,
    training_data_is_exact_point_in_time_when_spilled,
    training_data_only_as_known_at_the_time,
);
