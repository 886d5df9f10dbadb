//! `make bench`: the feature store's training data (the point-in-time join) on
//! `../shared/bench/peers/feast_online.py`'s workload, over gRPC and in process, and at
//! a million entity rows over ten views. Prints a table and writes a JSON line
//! (`MLOPS_BENCH_DIR/ours-feature-store.jsonl`) shaped like `feast_online.py`'s, so
//! `summarize.py` sets Feast's figures beside ours.
//!
//! The workload: 10,000 drivers, ten float32 features, one row per driver per hour for
//! seven days (1.68 million feature rows, `created` = the event time); an entity table
//! of 100,000 rows drawn as `feast_online.py` draws it (1% unknown drivers, times from
//! 12 h before the data to 36 h after it, every tenth on the hour). When
//! `$PEERS_ROOT/feast_pit/` holds the files `feast_online.py` wrote (run it first), they
//! are used instead, and our training table is compared, row by row, with its
//! `reference_training_df.parquet` (every entity row, left-join semantics).
//!
//! Sizes: `MLOPS_BENCH_FS_ENTITIES`, `MLOPS_BENCH_FS_ROWS`, `MLOPS_BENCH_FS_BIG_ROWS`; the
//! spilled join's memory: `MLOPS_BENCH_FS_JOIN_MEMORY` (bytes, 64 MiB by default).

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{Field, Schema, SchemaRef};
use mlops_feature_store::offline::ipc::{Decoder, Encoder};
use mlops_feature_store::offline::join::{Join, JoinKey, JoinView, KeyType};
use mlops_feature_store::FeatureStore;
use mlops_proto::featurestore::v1 as fpb;
use mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient;
use mlops_tests::bench::{env_usize, out_dir};
use mlops_tests::Sandbox;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use tonic::transport::Channel;

#[path = "feature_store/spilled.rs"]
mod spilled;

const HOUR: i64 = 3_600_000_000_000;
const SEC: i64 = 1_000_000_000;
/// 2024-01-01T00:00:00Z.
const DATA_START: i64 = 1_704_067_200 * SEC;
const FIRST_ID: i64 = 1000;
const FEATURES: usize = 10;
const DAYS: i64 = 7;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn ts(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

/// The feature table: `entities` drivers, one row per hour for `DAYS` days.
fn feature_table(entities: i64, rng: &mut Rng) -> RecordBatch {
    let hours = DAYS * 24;
    let n = (entities * hours) as usize;
    let mut ids = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for e in 0..entities {
        for h in 0..hours {
            ids.push(FIRST_ID + e);
            times.push(DATA_START + h * HOUR);
        }
    }
    let mut columns: Vec<(String, ArrayRef)> = vec![
        ("driver_id".into(), Arc::new(Int64Array::from(ids))),
        ("event_timestamp".into(), ts(times.clone())),
        ("created".into(), ts(times)),
    ];
    for f in 0..FEATURES {
        let v: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        columns.push((format!("f{f}"), Arc::new(Float32Array::from(v))));
    }
    batch(columns)
}

fn batch(columns: Vec<(String, ArrayRef)>) -> RecordBatch {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, c)| Field::new(n, c.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, c)| c).collect(),
    )
    .unwrap()
}

/// The entity table, drawn as `feast_online.py` draws it.
fn entity_table(rows: usize, entities: i64, rng: &mut Rng) -> RecordBatch {
    let lo = DATA_START / SEC - 12 * 3600;
    let hi = (DATA_START + DAYS * 24 * HOUR) / SEC + 36 * 3600;
    let mut seen = std::collections::HashSet::new();
    let (mut ids, mut times) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for i in 0..rows {
        let id = if rng.below(100) == 0 {
            FIRST_ID + entities + rng.below(1000) as i64
        } else {
            FIRST_ID + rng.below(entities as u64) as i64
        };
        let mut secs = lo + rng.below((hi - lo) as u64) as i64;
        if i % 10 == 0 {
            secs = secs / 3600 * 3600;
        }
        while !seen.insert((id, secs)) {
            secs += 1;
        }
        ids.push(id);
        times.push(secs * SEC);
    }
    batch(vec![
        (
            "row_id".into(),
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
        ),
        ("driver_id".into(), Arc::new(Int64Array::from(ids))),
        ("event_timestamp".into(), ts(times)),
    ])
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Peak resident memory of this process since the last reset, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn definitions(views: usize) -> String {
    let mut s = String::from(
        "entities:\n  - name: driver\n    join_keys: [driver_id]\n    value_type: int64\n\
         sources:\n  - name: driver_source\n    type: parquet\n    path: features.parquet\n    created_timestamp_column: created\n\
         feature_views:\n",
    );
    if views == 1 {
        // The second view is the first without a TTL, for online reads of 2024's data.
        for (name, ttl) in [("driver_stats", "1d"), ("driver_online", "0")] {
            s.push_str(&format!("  - name: {name}\n    entities: [driver]\n    ttl: {ttl}\n    source: driver_source\n    schema:\n"));
            for f in 0..FEATURES {
                s.push_str(&format!("      - {{name: f{f}, dtype: float32}}\n"));
            }
        }
    } else {
        for v in 0..views {
            s.push_str(&format!(
                "  - name: view{v}\n    entities: [driver]\n    ttl: 1d\n    source: driver_source\n    schema:\n      - {{name: f{}, dtype: float32}}\n",
                v % FEATURES
            ));
        }
    }
    s
}

/// One training-data query over gRPC: seconds, and the answer.
async fn over_grpc(
    c: &mut FeatureStoreServiceClient<Channel>,
    features: Vec<String>,
    entity: &[RecordBatch],
) -> (Duration, Vec<RecordBatch>) {
    use fpb::get_historical_features_request::Part;
    let started = Instant::now();
    let mut enc = Encoder::new(&entity[0].schema(), 1 << 20).unwrap();
    let mut msgs = vec![fpb::GetHistoricalFeaturesRequest {
        part: Some(Part::Query(fpb::HistoricalQuery {
            features,
            ..Default::default()
        })),
    }];
    for b in entity {
        enc.write(b).unwrap();
        msgs.extend(
            enc.take()
                .into_iter()
                .map(|c| fpb::GetHistoricalFeaturesRequest {
                    part: Some(Part::ArrowIpc(c)),
                }),
        );
    }
    enc.finish().unwrap();
    msgs.extend(
        enc.take()
            .into_iter()
            .map(|c| fpb::GetHistoricalFeaturesRequest {
                part: Some(Part::ArrowIpc(c)),
            }),
    );
    let mut answer = c
        .get_historical_features(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    while let Some(m) = answer.message().await.unwrap() {
        if let Some(fpb::get_historical_features_response::Part::ArrowIpc(c)) = m.part {
            out.extend(dec.push(c).unwrap());
        }
    }
    (started.elapsed(), out)
}

/// Compares our f0..f9 with Feast's left-join reference, row by row; returns the number
/// of rows that differ and the largest difference.
fn compare_with_reference(ours: &[RecordBatch], reference: &[RecordBatch]) -> (usize, f64) {
    let schema: SchemaRef = ours[0].schema();
    let ours = arrow_select::concat::concat_batches(&schema, ours).unwrap();
    let reference =
        arrow_select::concat::concat_batches(&reference[0].schema(), reference).unwrap();
    assert_eq!(ours.num_rows(), reference.num_rows(), "every entity row");
    let mut differing = std::collections::HashSet::new();
    let mut max_diff = 0f64;
    for f in 0..FEATURES {
        let name = format!("f{f}");
        let a = ours
            .column_by_name(&name)
            .unwrap()
            .as_primitive::<Float32Type>();
        let b = reference.column_by_name(&name).unwrap();
        // pandas writes the reference's features as float32 or float64 (NaN for none).
        let b: Vec<Option<f64>> = match b.data_type() {
            arrow_schema::DataType::Float32 => b
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.filter(|x| !x.is_nan()).map(f64::from))
                .collect(),
            _ => b
                .as_primitive::<arrow_array::types::Float64Type>()
                .iter()
                .map(|v| v.filter(|x| !x.is_nan()))
                .collect(),
        };
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            match (x, y) {
                (None, None) => {}
                (Some(x), Some(y)) => {
                    let d = (f64::from(x) - y).abs();
                    max_diff = max_diff.max(d);
                    if d > 1e-6 {
                        differing.insert(i);
                    }
                }
                _ => {
                    differing.insert(i);
                }
            }
        }
    }
    (differing.len(), max_diff)
}

/// The million-row case alone (in a child process): the source generated in memory,
/// ten views over it, a million entity rows in batches of 64k; prints its figures as JSON.
fn big_case(entities: i64, big_rows: usize) {
    let source = vec![feature_table(entities, &mut Rng(42))];
    let big = {
        let mut r = Rng(7);
        let b = entity_table(big_rows, entities, &mut r);
        (0..b.num_rows())
            .step_by(65_536)
            .map(|at| b.slice(at, 65_536.min(b.num_rows() - at)))
            .collect::<Vec<_>>()
    };
    let rss_before = current_rss_mb();
    let t0 = Instant::now();
    let views: Vec<JoinView> = (0..10).map(|v| big_view(v, source.clone())).collect();
    let join = Join::prepare(&big[0].schema(), "event_timestamp", &views).unwrap();
    drop(views);
    let prepare_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut out_rows = 0;
    for b in &big {
        out_rows += join.apply(b).unwrap().num_rows();
    }
    let join_s = t0.elapsed().as_secs_f64();
    assert_eq!(out_rows, big_rows);
    let line = json!({"prepare_s": prepare_s, "join_s": join_s, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before});
    println!("{line}");
}

/// A view of the drivers' source (`batches`): a day's TTL, `features` (column, output name).
fn driver_view(name: &str, features: Vec<(String, String)>, batches: Vec<RecordBatch>) -> JoinView {
    JoinView {
        name: name.into(),
        join_keys: vec![JoinKey {
            name: "driver_id".into(),
            kind: KeyType::Int64,
        }],
        ttl_nanos: Some(24 * HOUR),
        timestamp_field: "event_timestamp".into(),
        created_field: Some("created".into()),
        filter_by_created: false,
        features,
        batches,
    }
}

/// View `v` of the ten of the million-row case: one feature over `batches`.
fn big_view(v: usize, batches: Vec<RecordBatch>) -> JoinView {
    let f = format!("f{}", v % FEATURES);
    let out = format!("view{v}__{f}");
    driver_view(&format!("view{v}"), vec![(f, out)], batches)
}

/// Runs this bench again as the child `kind` (with `envs`) and returns its JSON figures:
/// prepare_s, join_s, peak_rss_mb, rss_before_mb, and the rest.
fn child(kind: &str, envs: &[(&str, &Path)]) -> (serde_json::Value, [f64; 4]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MLOPS_BENCH_FS_CHILD", kind)
        .envs(envs.iter().copied())
        .output()
        .expect("the bench starts itself again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the child's JSON");
    let f = |k: &str| v[k].as_f64().unwrap();
    let figures = [
        f("prepare_s"),
        f("join_s"),
        f("peak_rss_mb"),
        f("rss_before_mb"),
    ];
    (v, figures)
}

/// Resident memory now, in MB.
fn current_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let entities = env_usize("MLOPS_BENCH_FS_ENTITIES", 10_000) as i64;
    let rows = env_usize("MLOPS_BENCH_FS_ROWS", 100_000);
    let big_rows = env_usize("MLOPS_BENCH_FS_BIG_ROWS", 1_000_000);
    let join_memory = env_usize("MLOPS_BENCH_FS_JOIN_MEMORY", 64 << 20) as u64;
    match std::env::var("MLOPS_BENCH_FS_CHILD").as_deref() {
        Ok("big") => return big_case(entities, big_rows),
        Ok("big-spilled") => {
            let source = std::env::var("MLOPS_BENCH_FS_SOURCE").expect("the source's path");
            return spilled::run(entities, big_rows, Path::new(&source), join_memory).await;
        }
        _ => {}
    }
    let sb = Sandbox::builder()
        .service::<FeatureStore>(|_| {})
        .start()
        .await
        .expect("sandbox starts");
    let root = sb.dir().join("features");
    let peers = std::env::var("PEERS_ROOT").unwrap_or_else(|_| "/tmp/peers".into());
    let pit = Path::new(&peers).join("feast_pit");
    let from_feast = pit.join("reference_training_df.parquet").is_file();
    let mut rng = Rng(42);
    let started = Instant::now();
    let (entity, workload) = if from_feast {
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(pit.join("features.parquet"), root.join("features.parquet")).unwrap();
        (
            read_parquet(&pit.join("entity_df.parquet")),
            format!("feast_online.py's files in {}", pit.display()),
        )
    } else {
        let features = feature_table(entities, &mut rng);
        write_parquet(&root.join("features.parquet"), &[features]);
        (
            vec![entity_table(rows, entities, &mut rng)],
            "generated here (run feast_online.py first to use its files)".into(),
        )
    };
    let rows = entity.iter().map(|b| b.num_rows()).sum::<usize>();
    println!(
        "feature store bench: {rows} entity rows; workload {workload} (ready in {:.1}s)",
        started.elapsed().as_secs_f64()
    );

    let channel = Channel::from_shared(format!("http://{}", sb.addresses("feature-store").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = FeatureStoreServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let t0 = Instant::now();
    c.apply_definitions(fpb::ApplyDefinitionsRequest {
        yaml: definitions(1),
        file_name: "bench.yaml".into(),
        dry_run: false,
    })
    .await
    .unwrap();
    let apply_s = t0.elapsed().as_secs_f64();
    let refs: Vec<String> = (0..FEATURES)
        .map(|f| format!("driver_stats:f{f}"))
        .collect();

    // gRPC, end to end: the view read from Parquet, the join, the answer streamed.
    let _warm = over_grpc(&mut c, refs.clone(), &entity).await;
    let mut grpc_times = Vec::new();
    let mut answer = Vec::new();
    for _ in 0..3 {
        let (d, a) = over_grpc(&mut c, refs.clone(), &entity).await;
        grpc_times.push(d);
        answer = a;
    }
    grpc_times.sort();
    let grpc_s = grpc_times[1].as_secs_f64();
    let answered: usize = answer.iter().map(|b| b.num_rows()).sum();
    assert_eq!(answered, rows, "every entity row comes back");
    let (identical, diff) = if from_feast {
        let (n, d) = compare_with_reference(
            &answer,
            &read_parquet(&pit.join("reference_training_df.parquet")),
        );
        (Some(n == 0), d)
    } else {
        (None, 0.0)
    };

    // Materialization into the online store (SQLite), then online reads over gRPC.
    let t0 = Instant::now();
    let runs = c
        .materialize(fpb::MaterializeRequest {
            feature_views: vec!["driver_online".into()],
            start: None,
            end: Some(prost_types::Timestamp {
                seconds: (DATA_START + (DAYS * 24 + 1) * HOUR) / SEC,
                nanos: 0,
            }),
            incremental: false,
        })
        .await
        .unwrap()
        .into_inner()
        .views;
    let materialize_s = t0.elapsed().as_secs_f64();
    let materialized_rows = runs[0].rows;
    let online_refs: Vec<String> = (0..FEATURES)
        .map(|f| format!("driver_online:f{f}"))
        .collect();
    let mut online = serde_json::Map::new();
    let mut online_table = Vec::new();
    for n in [1usize, 100] {
        let calls = env_usize("MLOPS_BENCH_FS_ONLINE_CALLS", 2000);
        let mut draw = Rng(n as u64);
        let mut samples = Vec::with_capacity(calls);
        for call in 0..=calls {
            let ids: Vec<fpb::Value> = (0..n)
                .map(|_| fpb::Value {
                    kind: Some(fpb::value::Kind::Int64Value(
                        FIRST_ID + draw.below(entities as u64) as i64,
                    )),
                })
                .collect();
            let req = fpb::GetOnlineFeaturesRequest {
                features: online_refs.clone(),
                entities: [("driver_id".to_owned(), fpb::Values { values: ids })].into(),
                ..Default::default()
            };
            let t0 = Instant::now();
            let r = c.get_online_features(req).await.unwrap().into_inner();
            let d = t0.elapsed();
            // The first call loads the view into the cache: not a sample.
            if call > 0 {
                samples.push(d);
            }
            let present = r.results[1]
                .statuses
                .iter()
                .all(|s| *s == fpb::FieldStatus::Present as i32);
            assert!(present, "every drawn driver has a value");
        }
        let l = mlops_tests::bench::lat(&samples);
        online_table.push((
            n,
            l["p50_ms"].as_f64().unwrap(),
            l["p99_ms"].as_f64().unwrap(),
        ));
        online.insert(format!("entities_{n}"), l);
    }

    // In process: the join alone (the view read and indexed, then the entity rows joined).
    let source = read_parquet(&root.join("features.parquet"));
    let view =
        |name: &str, features: Vec<(String, String)>| driver_view(name, features, source.clone());
    let all: Vec<(String, String)> = (0..FEATURES)
        .map(|f| (format!("f{f}"), format!("f{f}")))
        .collect();
    let t0 = Instant::now();
    let join = Join::prepare(
        &entity[0].schema(),
        "event_timestamp",
        &[view("driver_stats", all)],
    )
    .unwrap();
    let prepare_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for b in &entity {
        join.apply(b).unwrap();
    }
    let apply_rows_s = t0.elapsed().as_secs_f64();
    drop(join);

    let peer_peak = peak_rss_mb();
    // A million entity rows over ten views, in a process of its own so that its peak
    // memory is the join's.
    let (_, [big_prepare_s, big_apply_s, big_peak, rss_before]) = child("big", &[]);
    // The same join spilled, its views read from a Parquet file of 64k-row row groups.
    let spill_source = sb.dir().join("spilled/features.parquet");
    std::fs::create_dir_all(spill_source.parent().unwrap()).unwrap();
    spilled::write_source(&spill_source, &[feature_table(entities, &mut Rng(42))]);
    let (sp, [sp_prepare_s, sp_join_s, sp_peak, sp_before]) = child(
        "big-spilled",
        &[("MLOPS_BENCH_FS_SOURCE", spill_source.as_path())],
    );

    println!("{:<58} {:>14}", "workload", "figure");
    println!(
        "{:<58} {:>12.3} s",
        "apply (one entity, one source, one view)", apply_s
    );
    println!(
        "{:<58} {:>12.3} s",
        format!("historical over gRPC, {rows} rows (median of 3)"),
        grpc_s
    );
    println!(
        "{:<58} {:>10.0} rows/s",
        "historical over gRPC throughput",
        rows as f64 / grpc_s
    );
    println!(
        "{:<58} {:>12.3} s",
        format!("materialize {materialized_rows} rows -> online store (SQLite)"),
        materialize_s
    );
    for (n, p50, p99) in &online_table {
        println!(
            "{:<58} {:>9.3} / {:.3} ms",
            format!("online over gRPC, {n} entities x 10 features, p50 / p99"),
            p50,
            p99
        );
    }
    println!(
        "{:<58} {:>12.3} s",
        "in process: read + index the view (1.68M rows)", prepare_s
    );
    println!(
        "{:<58} {:>10.0} rows/s",
        "in process: join the entity rows",
        rows as f64 / apply_rows_s
    );
    if let Some(same) = identical {
        println!(
            "{:<58} {:>14}",
            "identical to Feast's left-join reference (every row)", same
        );
        println!(
            "{:<58} {:>14.2e}",
            "largest difference from the reference", diff
        );
    }
    println!(
        "{:<58} {:>12.3} s",
        format!("{big_rows} rows x 10 views: read + index the views"),
        big_prepare_s
    );
    println!(
        "{:<58} {:>10.0} rows/s",
        format!("{big_rows} rows x 10 views: join"),
        big_rows as f64 / big_apply_s
    );
    println!(
        "{:<58} {:>10.0} rows/s",
        format!("{big_rows} rows x 10 views: end to end"),
        big_rows as f64 / (big_prepare_s + big_apply_s)
    );
    println!(
        "{:<58} {:>11.0} MB",
        "peak RSS, the peer workload (the whole process)", peer_peak
    );
    println!(
        "{:<58} {:>11.0} MB",
        "peak RSS of that join (its own process)", big_peak
    );
    println!(
        "{:<58} {:>11.0} MB",
        "  (of which its input: the source and the entity rows)", rss_before
    );
    let mb = join_memory as f64 / (1 << 20) as f64;
    println!(
        "{:<58} {:>10.0} rows/s",
        format!("{big_rows} rows x 10 views spilled ({mb:.0} MB): end to end"),
        big_rows as f64 / (sp_prepare_s + sp_join_s)
    );
    println!(
        "{:<58} {:>12.3} s",
        "  of which reading and splitting the views", sp_prepare_s
    );
    println!(
        "{:<58} {:>11.0} MB",
        "peak RSS of the spilled join (its own process)", sp_peak
    );
    println!(
        "{:<58} {:>11.0} MB",
        "  (of which the process before the join)", sp_before
    );

    let line = json!({
        "bench": "feast_online",
        "impl": "mlops",
        "workload": {"entities": entities, "features": FEATURES, "days": DAYS, "entity_rows": rows, "from_feast_files": from_feast},
        "apply_s": apply_s,
        "materialize_s": materialize_s,
        "materialize_entities_per_s": entities as f64 / materialize_s,
        "online": online,
        "historical": {"rows": rows, "seconds": grpc_s, "rows_per_s": rows as f64 / grpc_s,
                       "rows_returned": answered, "rows_dropped": rows - answered,
                       "matches_pandas_reference": identical, "max_abs_diff_vs_reference": diff,
                       "in_process_join_rows_per_s": rows as f64 / apply_rows_s, "in_process_prepare_s": prepare_s},
        "big": {"rows": big_rows, "views": 10, "prepare_s": big_prepare_s, "join_rows_per_s": big_rows as f64 / big_apply_s,
                "end_to_end_rows_per_s": big_rows as f64 / (big_prepare_s + big_apply_s), "peak_rss_mb": big_peak},
        "big_spilled": {"rows": big_rows, "views": 10, "join_memory_bytes": join_memory, "partitions_per_view": sp["partitions"],
                        "prepare_s": sp_prepare_s, "join_s": sp_join_s,
                        "end_to_end_rows_per_s": big_rows as f64 / (sp_prepare_s + sp_join_s), "peak_rss_mb": sp_peak},
        "peak_rss_mb": peer_peak,
        "ok": identical.unwrap_or(true),
    });
    let path = format!("{}/ours-feature-store.jsonl", out_dir());
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{line}").unwrap();
    println!("JSON line: {path}");
    sb.stop().await.unwrap();
}

/// The allocator of the service binaries (their main.rs), so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
