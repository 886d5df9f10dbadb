//! The streaming path: the peer workload's current table as the prediction log delivers
//! it (predictions of `MLOPS_BENCH_STREAM_BATCH` = 10 rows, columns by name) into an open
//! window kept as one sketch per column (`WindowState`), as the follower keeps it.
//!
//! For a window of the table's rows, and of `MLOPS_BENCH_STREAM_REPEATS` = 10 times as many
//! (the table repeated; 0: not run):
//! - ingestion rows/s: `add_row` over every column, with the look-up of the reference's
//!   columns by name in each prediction that the follower does;
//! - each column's encoded sketch (goal: at most 64,000 bytes, the crate's bound);
//! - encoding and decoding the whole state, which every batch transaction does;
//! - testing the window: each column's `sketch_drift` against the reference's sample and
//!   its chart, then the dataset verdict (the follower's own `window_drift`);
//! - the peak of the heap during ingestion above what was held before (counted by the
//!   bench's allocator: the sketches and their transient buffers, whatever the allocator
//!   keeps of freed chunks), and what the state holds after;
//! - the peak RSS of ingestion above what was held before (the kernel's high-water mark,
//!   reset before). It runs in a fresh process of this bench: freed memory the wide run
//!   left on the heap would take the sketches' allocations and hide them. Both windows
//!   are ingested first and kept, so neither reuses the other's memory;
//! - the same rows over 4 partitions (prediction `i` in partition `i % 4`), one window
//!   each, merged column by column as replicas' windows would be: time, size, scores.
//!
//! Scores are compared with the exact report on the table (the repeated window has the
//! same distribution, so the same exact scores).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef};
use bytes::Bytes;
use mlops_monitoring::drift::{DatasetDrift, DriftOptions, Sample};
use mlops_monitoring::follower;
use mlops_monitoring::sketch::ColumnSketch;
use mlops_monitoring::store::ColumnProfile;
use mlops_monitoring::table::{self, Columns, ParquetTable};
use mlops_monitoring::windows::{LoggedRows, Values, WindowState};
use mlops_tests::bench::env_usize;
use serde_json::{json, Value};

use crate::{measure, status_mb};

/// Set in the child process that runs this section: the directory of its input files.
const CHILD: &str = "MLOPS_BENCH_STREAM_CHILD";
/// Set in the child: where its input came from, for the output.
const SOURCE: &str = "MLOPS_BENCH_STREAM_SOURCE";

/// The most bytes of one column's encoded sketch.
const GOAL_BYTES: usize = 64_000;
/// Replicas whose windows are merged.
const PARTITIONS: usize = 4;

/// The reference as the follower holds it: its profile and one sample per column.
struct Reference {
    profile: Vec<ColumnProfile>,
    samples: Vec<Sample>,
}

/// Every column of the reference table, its type inferred as a monitor without column
/// specs infers it.
fn reference(bytes: &Bytes) -> Reference {
    let t = ParquetTable::new(bytes.clone()).expect("the reference table");
    let (mut profile, mut samples) = (Vec::new(), Vec::new());
    for name in t.names() {
        let a = t.column(&name, "reference").expect("a reference column");
        let ty = table::infer_type(&name, a.as_ref()).expect("a column type");
        let s = table::to_sample(&name, a.as_ref(), ty).expect("a sample");
        profile.push(ColumnProfile {
            name,
            column_type: ty,
            count: s.len(),
            missing: s.missing(),
            distinct: s.distinct() as u64,
        });
        samples.push(s);
    }
    Reference { profile, samples }
}

/// A column's values in row order, as `logged_rows` gives them.
fn values(name: &str, a: &dyn Array) -> Values {
    if let Some(f) = a.as_primitive_opt::<Float64Type>() {
        return Values::Numbers(f.iter().map(|v| v.unwrap_or(f64::NAN)).collect());
    }
    let owned = |v: Option<&str>| v.map(str::to_owned);
    Values::Texts(if let Some(s) = a.as_string_opt::<i32>() {
        s.iter().map(owned).collect()
    } else if let Some(s) = a.as_string_opt::<i64>() {
        s.iter().map(owned).collect()
    } else if let Some(s) = a.as_string_view_opt() {
        s.iter().map(owned).collect()
    } else {
        panic!(
            "column {name:?} is {}: not a column this bench reads",
            a.data_type()
        )
    })
}

/// The current table's columns by name, each sliced into predictions of `per` rows.
fn predictions(columns: &[(String, ArrayRef)], rows: usize, per: usize) -> Vec<LoggedRows> {
    (0..rows)
        .step_by(per)
        .map(|start| {
            let len = per.min(rows - start);
            let columns = columns
                .iter()
                .map(|(n, a)| (n.clone(), values(n, a.slice(start, len).as_ref())))
                .collect();
            LoggedRows { rows: len, columns }
        })
        .collect()
}

/// Feeds `w`, `passes` times over, the predictions of partition `part` of `parts`
/// (prediction `i` at time `i` ms), each looked up by name as the follower does.
fn ingest(
    w: &mut WindowState,
    profile: &[ColumnProfile],
    predictions: &[LoggedRows],
    passes: usize,
    (part, parts): (usize, usize),
) {
    for pass in 0..passes {
        for (i, p) in predictions.iter().enumerate().skip(part).step_by(parts) {
            let names: HashMap<&str, usize> = p
                .columns
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (n.as_str(), i))
                .collect();
            let index: Vec<Option<usize>> = profile
                .iter()
                .map(|c| names.get(c.name.as_str()).copied())
                .collect();
            let time_ms = (pass * predictions.len() + i) as i64;
            for r in 0..p.rows {
                w.add_row(p, &index, r, time_ms);
            }
        }
    }
}

/// The follower's own test of a window.
fn test_window(
    reference: &Reference,
    columns: &[ColumnSketch],
    options: &DriftOptions,
) -> DatasetDrift {
    follower::window_drift(&reference.profile, &reference.samples, columns, options)
        .expect("a window's drift")
}

/// The largest encoded column and the mean, in bytes.
fn sizes(columns: &[ColumnSketch]) -> (usize, f64) {
    let lens: Vec<usize> = columns.iter().map(ColumnSketch::encoded_len).collect();
    let max = lens.iter().copied().max().unwrap_or(0);
    (
        max,
        lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64,
    )
}

/// The largest score difference from the exact report, and how many columns have its
/// method and verdict.
fn versus(exact: &DatasetDrift, d: &DatasetDrift) -> (f64, usize) {
    let mut max = 0.0f64;
    let mut agree = 0;
    for (name, e) in &exact.columns {
        let Some(s) = d.columns.get(name) else {
            continue;
        };
        if let (Some(a), Some(b)) = (e.score, s.score) {
            max = max.max((a - b).abs());
        }
        agree += usize::from(e.method == s.method && e.drifted == s.drifted);
    }
    (max, agree)
}

/// The best time of `runs` calls of `f`, and its last result.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("one run"))
}

/// One window ingested, with its time and the RSS it added.
struct Ingested {
    passes: usize,
    state: WindowState,
    seconds: f64,
    rss_before_mb: f64,
    rss_delta_mb: f64,
    /// The peak of the heap above what was held before, and what the state holds after.
    heap_peak_bytes: usize,
    heap_after_bytes: usize,
}

/// Runs this section in a fresh process of this bench on `reference` and `current`; it
/// prints its figures and appends its JSON lines.
pub fn spawn(reference: &Bytes, current: &Bytes, source: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("reference.parquet"), reference).expect("written");
    std::fs::write(dir.path().join("current.parquet"), current).expect("written");
    let status = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .arg("--bench")
        .env(CHILD, dir.path())
        .env(SOURCE, source)
        .status()
        .expect("the streaming bench starts");
    assert!(status.success(), "the streaming bench failed: {status}");
}

/// In the process [`spawn`] started: this section's JSON lines; `None` in any other.
pub fn child() -> Option<Vec<Value>> {
    let dir = PathBuf::from(std::env::var_os(CHILD)?);
    let source = std::env::var(SOURCE).unwrap_or_default();
    Some(run(&dir, &source))
}

/// Prints the streaming section and returns its JSON lines, one per window.
fn run(dir: &Path, source: &str) -> Vec<Value> {
    let per = env_usize("MLOPS_BENCH_STREAM_BATCH", 10).max(1);
    let repeats = env_usize("MLOPS_BENCH_STREAM_REPEATS", 10);
    let options = DriftOptions::default();
    let read = |f: &str| Bytes::from(std::fs::read(dir.join(f)).expect("an input file"));
    let (reference_bytes, current_bytes) = (read("reference.parquet"), read("current.parquet"));
    let reference = reference(&reference_bytes);
    let t = ParquetTable::new(current_bytes.clone()).expect("the current table");
    let arrays: Vec<(String, ArrayRef)> = t
        .names()
        .into_iter()
        .map(|n| {
            let a = t.column(&n, "current").expect("a current column");
            (n, a)
        })
        .collect();
    let table_rows = t.rows() as usize;
    let predictions = predictions(&arrays, table_rows, per);
    let columns = reference.profile.len();

    let mut windows = Vec::new();
    for passes in [1, repeats].into_iter().filter(|&p| p > 0) {
        let before = status_mb("VmRSS:");
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let heap_before = crate::HEAP.current_usage();
        crate::HEAP.reset_peak_usage();
        let t = Instant::now();
        let mut state = WindowState::new(&reference.profile);
        ingest(&mut state, &reference.profile, &predictions, passes, (0, 1));
        let seconds = t.elapsed().as_secs_f64();
        windows.push(Ingested {
            passes,
            seconds,
            rss_before_mb: before,
            rss_delta_mb: status_mb("VmHWM:") - before,
            heap_peak_bytes: crate::HEAP.peak_usage().saturating_sub(heap_before),
            heap_after_bytes: crate::HEAP.current_usage().saturating_sub(heap_before),
            state,
        });
    }
    drop(arrays);
    let (_, _, _, exact) = measure(&reference_bytes, &current_bytes, 1);

    println!(
        "monitoring: streaming windows ({source}; predictions of {per} rows into one sketch per column)"
    );
    let mut lines = Vec::new();
    for w in &windows {
        let rows = table_rows * w.passes;
        let (max, mean) = sizes(&w.state.columns);
        let (encode_s, bytes) = best(5, || w.state.encode());
        let (decode_s, back) = best(5, || {
            WindowState::decode(&bytes).expect("the state decodes")
        });
        assert!(back.encode() == bytes, "the state decodes to itself");
        let (test_s, drift) = best(3, || test_window(&reference, &w.state.columns, &options));
        let (diff, agree) = versus(&exact, &drift);

        let parts: Vec<WindowState> = (0..PARTITIONS)
            .map(|p| {
                let mut s = WindowState::new(&reference.profile);
                let at = (p, PARTITIONS);
                ingest(&mut s, &reference.profile, &predictions, w.passes, at);
                s
            })
            .collect();
        let mut merge_s = f64::INFINITY;
        let mut merged = Vec::new();
        for _ in 0..3 {
            let mut m = parts[0].columns.clone();
            let t = Instant::now();
            for (i, c) in m.iter_mut().enumerate() {
                for p in &parts[1..] {
                    c.merge(&p.columns[i]).expect("sketches of one type");
                }
            }
            merge_s = merge_s.min(t.elapsed().as_secs_f64());
            merged = m;
        }
        let merged_rows: Vec<u64> = merged.iter().map(|c| c.count() + c.missing()).collect();
        assert!(merged_rows.iter().all(|&n| n == rows as u64));
        let (merged_max, merged_mean) = sizes(&merged);
        let merged_drift = test_window(&reference, &merged, &options);
        let (merged_diff, merged_agree) = versus(&exact, &merged_drift);
        let exact_columns = merged.iter().filter(|c| c.is_exact()).count();
        drop(parts);

        let rows_per_s = rows as f64 / w.seconds;
        let per_column_kb = w.rss_delta_mb * 1024.0 / columns as f64;
        let heap_peak_kb = w.heap_peak_bytes as f64 / 1024.0 / columns as f64;
        let heap_after_kb = w.heap_after_bytes as f64 / 1024.0 / columns as f64;
        println!(
            "  {rows} rows x {columns} columns: ingest {:.3} s ({rows_per_s:.0} rows/s, {:.1} M values/s), peak RSS +{:.1} MB above {} MB ({per_column_kb:.0} KB per column)",
            w.seconds,
            rows_per_s * columns as f64 / 1e6,
            w.rss_delta_mb,
            w.rss_before_mb
        );
        println!(
            "    encoded per column: max {max} B, mean {mean:.0} B (goal at most {GOAL_BYTES} B); {exact_columns} of {columns} columns still exact"
        );
        let sketched = w
            .state
            .columns
            .iter()
            .filter(|c| !c.is_exact())
            .count()
            .max(1);
        println!(
            "    heap: peak +{:.0} KB per column ({:.0} KB per sketched column: all of it charged to the {sketched} past their exact phase), {heap_after_kb:.0} KB per column held after (goal at most 64 KB)",
            heap_peak_kb,
            w.heap_peak_bytes as f64 / 1024.0 / sketched as f64,
        );
        println!(
            "    whole state {} B: encode {:.2} ms + decode {:.2} ms = {:.2} ms",
            bytes.len(),
            encode_s * 1e3,
            decode_s * 1e3,
            (encode_s + decode_s) * 1e3
        );
        println!(
            "    test: {:.1} ms, {} of {columns} drifted, max |score - exact| {diff:.1e}, method and verdict as exact: {agree} of {}",
            test_s * 1e3,
            drift.drifted_columns,
            exact.columns.len()
        );
        println!(
            "    {PARTITIONS} partitions merged: {:.2} ms, per column max {merged_max} B, mean {merged_mean:.0} B, max |score - exact| {merged_diff:.1e}, method and verdict as exact: {merged_agree} of {}",
            merge_s * 1e3,
            exact.columns.len()
        );
        let round = |x: f64| (x * 1e6).round() / 1e6;
        let ok = max <= GOAL_BYTES
            && merged_max <= GOAL_BYTES
            && agree == exact.columns.len()
            && merged_agree == exact.columns.len();
        lines.push(json!({
            "bench": "drift_streaming",
            "workload": {"rows": rows, "columns": columns, "rows_per_prediction": per, "repeats": w.passes, "source": source},
            "rows": rows,
            "columns": columns,
            "ingest_seconds": round(w.seconds),
            "rows_per_s": rows_per_s.round(),
            "bytes_per_column_max": max,
            "bytes_per_column_mean": mean.round(),
            "state_bytes": bytes.len(),
            "encode_seconds": round(encode_s + decode_s),
            "encode_only_seconds": round(encode_s),
            "decode_only_seconds": round(decode_s),
            "test_seconds": round(test_s),
            "drifted_columns": drift.drifted_columns,
            "max_abs_score_diff_vs_exact": diff,
            "rss_before_mb": w.rss_before_mb,
            "rss_delta_mb": round(w.rss_delta_mb),
            "rss_per_column_kb": per_column_kb.round(),
            "heap_peak_per_column_kb": heap_peak_kb.round(),
            "heap_peak_per_sketched_column_kb": (w.heap_peak_bytes as f64 / 1024.0 / sketched as f64).round(),
            "heap_after_per_column_kb": heap_after_kb.round(),
            "merge": {
                "partitions": PARTITIONS,
                "bytes_per_column_max": merged_max,
                "bytes_per_column_mean": merged_mean.round(),
                "max_abs_score_diff_vs_exact": merged_diff,
                "drifted_columns": merged_drift.drifted_columns,
            },
            "merge_seconds": round(merge_s),
            "goal_bytes_per_column": GOAL_BYTES,
            "ok": ok,
        }));
    }
    lines
}
