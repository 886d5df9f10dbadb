//! The million-row join over ten views again, spilled: its views read from a Parquet file
//! a row group at a time and split into partitions on disk, with the memory the service's
//! `--join-memory-bytes` would give it, in a process of its own so that its peak memory
//! is the join's.

use std::path::Path;
use std::time::Instant;

use arrow_array::RecordBatch;
use mlops_feature_store::offline::files::OfflineStore;
use mlops_feature_store::offline::historical::partitions_for;
use mlops_feature_store::offline::join::SpillJoin;
use serde_json::json;

use super::{big_view, current_rss_mb, entity_table, peak_rss_mb, Rng, FEATURES};

/// Rows per row group of the source file (the reader holds a row group's columns).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Writes `batches` to `path` in row groups of `ROW_GROUP_ROWS`.
pub fn write_source(path: &Path, batches: &[RecordBatch]) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// The child's work: `source` (a Parquet file) as ten views, `big_rows` entity rows
/// drawn a batch at a time, the join within `budget` bytes; prints its figures as JSON.
pub async fn run(entities: i64, big_rows: usize, source: &Path, budget: u64) {
    let rss_before = current_rss_mb();
    let t0 = Instant::now();
    let store = OfflineStore::open(&source.parent().unwrap().display().to_string()).unwrap();
    let name = source.file_name().unwrap().to_str().unwrap();
    let mut views = Vec::new();
    let mut sources = Vec::new();
    for v in 0..10 {
        let feature = format!("f{}", v % FEATURES);
        let columns: Vec<String> = vec![
            "driver_id".into(),
            "event_timestamp".into(),
            "created".into(),
            feature,
        ];
        let s = store
            .open_parquet(name, Some(&columns), "source")
            .await
            .unwrap();
        views.push(big_view(v, vec![RecordBatch::new_empty(s.schema.clone())]));
        sources.push(s);
    }
    let parts: Vec<usize> = sources
        .iter()
        .map(|s| partitions_for(s.estimated_bytes(), budget))
        .collect();
    let rt = tokio::runtime::Handle::current();
    let figures = tokio::task::spawn_blocking(move || {
        let mut r = Rng(7);
        let first = entity_table(1, entities, &mut Rng(7));
        let mut join = SpillJoin::prepare(
            &first.schema(),
            "event_timestamp",
            &views,
            &parts,
            &std::env::temp_dir(),
        )
        .unwrap();
        for (i, s) in sources.iter().enumerate() {
            s.read_blocking(&rt, |b| {
                join.add_source(i, &b).unwrap();
                Ok(())
            })
            .unwrap();
        }
        let prepare_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let mut left = big_rows;
        while left > 0 {
            let n = left.min(65_536);
            join.push(&entity_table(n, entities, &mut r)).unwrap();
            left -= n;
        }
        let mut out_rows = 0;
        for b in join.finish().unwrap() {
            out_rows += b.unwrap().num_rows();
        }
        assert_eq!(out_rows, big_rows);
        (prepare_s, t0.elapsed().as_secs_f64(), parts)
    })
    .await
    .unwrap();
    let (prepare_s, join_s, parts) = figures;
    let line = json!({"prepare_s": prepare_s, "join_s": join_s, "peak_rss_mb": peak_rss_mb(),
                      "rss_before_mb": rss_before, "partitions": parts[0]});
    println!("{line}");
}
