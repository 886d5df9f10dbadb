//! `make bench`: data drift on `../shared/bench/peers/evidently_drift.py`'s workload
//! (100,000 rows x 20 numerical + 5 categorical columns, reference and current) and on a
//! wide one (100,000 x 500). Prints a table and writes a JSON line
//! (`MLOPS_BENCH_DIR/ours-monitoring.jsonl`) shaped like `evidently_drift.py`'s, so
//! `summarize.py` sets Evidently's figures beside ours.
//!
//! When `$PEERS_ROOT/drift/` (default `/tmp/peers/drift`) holds the files
//! `evidently_drift.py` wrote (run it first), they are the workload, and every column's
//! method, score and verdict is compared with Evidently's from that run
//! (`columns.json`). Otherwise the same distributions are generated here (another
//! generator, so other numbers).
//!
//! Time: from Parquet bytes in memory to the report (Evidently's figure starts from
//! pandas frames already in memory). Peak RSS: the kernel's high-water mark of this
//! process, reset before each run.
//!
//! Sizes: `MLOPS_BENCH_DRIFT_ROWS`, `MLOPS_BENCH_DRIFT_WIDE_COLS`; the wide table is read
//! from `MLOPS_BENCH_DRIFT_WIDE_DIR` when it holds `evidently_drift.py --num-cols 495`'s
//! files (run with another `PEERS_ROOT`), so Evidently's figure is on the same data.
//!
//! Then the streaming path (`monitoring/streaming.rs`, in a fresh process of this bench):
//! the same current table as the prediction log delivers it, into a window kept as
//! sketches; one more JSON line per window size (bench `drift_streaming`).

#![allow(clippy::print_stdout)]

#[path = "monitoring/streaming.rs"]
mod streaming;

/// The system allocator, counting the bytes it holds and their peak: the streaming
/// section's heap per column, which RSS shows only with the allocator's free chunks added
/// (and coarsely: 25 columns' sketches are a couple of MB).
#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use bytes::Bytes;
use mlops_monitoring::drift::{DatasetDrift, DriftOptions};
use mlops_monitoring::report::drift_report;
use mlops_monitoring::table::ParquetTable;
use mlops_tests::bench::{env_usize, out_dir};
use serde_json::{json, Value};

/// Uniform and normal draws (Box-Muller) from the monitoring crate's seeded generator.
struct Rng(mlops_monitoring::stats::rng::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(mlops_monitoring::stats::rng::Rng::new(seed))
    }
    fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// `evidently_drift.py`'s column families: normal, lognormal, uniform, exponential; the
/// first half of the numerical columns drifted by 0.25–0.75 of a standard deviation;
/// categorical columns with 3, 5, 8, 12 and 20 categories, the first two reversed.
fn generate(rows: usize, num_cols: usize, cat_cols: usize, seed: u64) -> (Bytes, Bytes) {
    let mut rng = Rng::new(seed);
    let mut reference: Vec<(String, ArrayRef)> = Vec::new();
    let mut current: Vec<(String, ArrayRef)> = Vec::new();
    for i in 0..num_cols {
        let fi = i as f64;
        let draw = |rng: &mut Rng| -> Vec<f64> {
            (0..rows)
                .map(|_| match i % 4 {
                    0 => fi + (1.0 + 0.1 * fi) * rng.normal(),
                    1 => ((0.5 + 0.05 * fi) * rng.normal()).exp(),
                    2 => rng.uniform() * (1.0 + fi),
                    _ => -(1.0 + 0.1 * fi) * rng.uniform().ln(),
                })
                .collect()
        };
        let r = draw(&mut rng);
        let mut c = draw(&mut rng);
        if i < num_cols / 2 {
            let mean = c.iter().sum::<f64>() / rows as f64;
            let std = mlops_monitoring::stats::std_population(&r);
            let shift = 0.25 * (1 + i % 3) as f64 * std;
            let scale = if i % 4 == 3 { 1.5 } else { 1.0 };
            c.iter_mut()
                .for_each(|x| *x = (*x - mean) * scale + mean + shift);
        }
        reference.push((format!("num_{i}"), Arc::new(Float64Array::from(r))));
        current.push((format!("num_{i}"), Arc::new(Float64Array::from(c))));
    }
    for j in 0..cat_cols {
        let k = [3usize, 5, 8, 12, 20][j % 5];
        let weights: Vec<f64> = (0..k).map(|_| -rng.uniform().ln()).collect();
        let total: f64 = weights.iter().sum();
        let cdf: Vec<f64> = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        let draw = |rng: &mut Rng, reversed: bool| -> Vec<String> {
            (0..rows)
                .map(|_| {
                    let u = rng.uniform();
                    let idx = cdf.iter().position(|&c| u <= c).unwrap_or(k - 1);
                    format!("c{}", if reversed { k - 1 - idx } else { idx })
                })
                .collect()
        };
        let r = draw(&mut rng, false);
        let c = draw(&mut rng, j < 2);
        reference.push((format!("cat_{j}"), Arc::new(StringArray::from(r))));
        current.push((format!("cat_{j}"), Arc::new(StringArray::from(c))));
    }
    (parquet_bytes(reference), parquet_bytes(current))
}

fn parquet_bytes(columns: Vec<(String, ArrayRef)>) -> Bytes {
    let batch = RecordBatch::try_from_iter(columns).expect("a batch");
    let mut buf = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).expect("a writer");
    w.write(&batch).expect("written");
    w.close().expect("closed");
    Bytes::from(buf)
}

fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 102.4).round() / 10.0)
}

/// Runs the report `runs` times; the best time, the peak RSS of the first run (the
/// high-water mark reset before it) and the report.
fn measure(reference: &Bytes, current: &Bytes, runs: usize) -> (f64, f64, f64, DatasetDrift) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = status_mb("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut best = f64::INFINITY;
    let mut peak = 0.0;
    let mut report = None;
    for run in 0..runs {
        let t = Instant::now();
        let r = ParquetTable::new(reference.clone()).expect("reference");
        let c = ParquetTable::new(current.clone()).expect("current");
        let d = drift_report(&r, &c, &[], &DriftOptions::default(), workers).expect("a report");
        best = best.min(t.elapsed().as_secs_f64());
        if run == 0 {
            peak = status_mb("VmHWM:");
        }
        report = Some(d);
    }
    (best, before, peak, report.expect("one run"))
}

/// Compares our columns with Evidently's from `columns.json`: methods, scores (relative
/// difference), verdicts.
fn compare(ours: &DatasetDrift, theirs: &Value) -> (usize, f64, bool) {
    let mut max_rel = 0.0f64;
    let mut all_agree = true;
    let mut compared = 0;
    for (name, col) in theirs["columns"].as_object().into_iter().flatten() {
        let e = &col["evidently"];
        let Some(o) = ours.columns.get(name) else {
            all_agree = false;
            continue;
        };
        compared += 1;
        let score = e["drift_score"].as_f64().unwrap_or(f64::NAN);
        if let Some(s) = o.score {
            max_rel = max_rel.max((s - score).abs() / score.abs().max(1e-300));
        }
        all_agree &= e["method"].as_str() == Some(o.method.display_name())
            && e["drifted"].as_bool() == Some(o.drifted);
    }
    (compared, max_rel, all_agree)
}

/// The peer workload: `evidently_drift.py`'s files from `peers` when `from_peers`, else
/// generated here; reference, current and where they came from.
fn workload(rows: usize, peers: &Path, from_peers: bool) -> (Bytes, Bytes, String) {
    if from_peers {
        let read = |f: &str| Bytes::from(std::fs::read(peers.join(f)).expect("peer file"));
        (
            read("reference.parquet"),
            read("current.parquet"),
            format!("{}", peers.display()),
        )
    } else {
        let (r, c) = generate(rows, 20, 5, 42);
        (
            r,
            c,
            "generated here (run evidently_drift.py for its files)".into(),
        )
    }
}

fn main() {
    if let Some(lines) = streaming::child() {
        append(&lines);
        return;
    }
    let rows = env_usize("MLOPS_BENCH_DRIFT_ROWS", 100_000);
    let wide_cols = env_usize("MLOPS_BENCH_DRIFT_WIDE_COLS", 500);
    let peers =
        PathBuf::from(std::env::var("PEERS_ROOT").unwrap_or("/tmp/peers".into())).join("drift");
    let from_peers = peers.join("reference.parquet").exists() && rows == 100_000;
    let (reference, current, source) = workload(rows, &peers, from_peers);
    let (seconds, before, peak, report) = measure(&reference, &current, 5);
    let golden: Option<Value> = from_peers
        .then(|| std::fs::read_to_string(peers.join("columns.json")).ok())
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok());
    let parity = golden.as_ref().map(|g| compare(&report, g));
    drop((reference, current));

    // `evidently_drift.py --num-cols 495` writes the same shape under another PEERS_ROOT
    let wide_dir = std::env::var("MLOPS_BENCH_DRIFT_WIDE_DIR")
        .ok()
        .map(PathBuf::from);
    let (wr, wc) = match wide_dir.filter(|d| d.join("reference.parquet").exists()) {
        Some(d) => {
            let read = |f: &str| Bytes::from(std::fs::read(d.join(f)).expect("wide file"));
            (read("reference.parquet"), read("current.parquet"))
        }
        None => generate(rows, wide_cols - wide_cols / 20, wide_cols / 20, 7),
    };
    let (wide_s, wide_before, wide_peak, wide) = measure(&wr, &wc, 1);
    let input_mb = (wr.len() + wc.len()) as f64 / 1e6;
    drop((wr, wc));

    println!("monitoring: data drift ({source})");
    println!(
        "  {rows} rows x 25 columns: {seconds:.3} s, peak RSS {peak} MB (before {before} MB), {} of 25 columns drifted, dataset drift {}",
        report.drifted_columns, report.dataset_drift
    );
    if let Some((n, max_rel, agree)) = parity {
        println!(
            "  vs Evidently's run on the same files: {n} columns, max relative score difference {max_rel:.2e}, methods and verdicts agree: {agree}"
        );
    }
    println!(
        "  {rows} rows x {wide_cols} columns: {wide_s:.3} s ({:.0} columns/s), peak RSS {wide_peak} MB, {:.1} MB above the {wide_before} MB held before the run (the Parquet input alone is {input_mb:.0} MB), {} drifted",
        wide_cols as f64 / wide_s,
        wide_peak - wide_before,
        wide.drifted_columns
    );

    let line = json!({
        "bench": "evidently_drift",
        "workload": {"rows": rows, "num_cols": 20, "cat_cols": 5, "source": source},
        "evidently": {
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "rss_before_mb": before,
            "peak_rss_during_run_mb": peak,
            "drifted_columns": report.drifted_columns,
            "dataset_level": report.drifted_columns,
        },
        "wide": {"rows": rows, "cols": wide_cols, "seconds": wide_s, "peak_rss_mb": wide_peak, "rss_before_mb": wide_before},
        "max_rel_diff_vs_evidently": parity.map(|p| p.1),
        "ok": parity.is_none_or(|p| p.2 && p.1 < 1e-9),
    });
    let path = append(&[line]);
    println!("  wrote {}", path.display());

    // read or generated again: holding the tables through the wide run would move its RSS
    let (reference, current, source) = workload(rows, &peers, from_peers);
    streaming::spawn(&reference, &current, &source);
    println!("  wrote {}", path.display());
}

/// Appends `lines` to `MLOPS_BENCH_DIR/ours-monitoring.jsonl`; its path.
fn append(lines: &[Value]) -> PathBuf {
    let path = PathBuf::from(out_dir()).join("ours-monitoring.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("the bench output file");
    for line in lines {
        writeln!(f, "{line}").expect("written");
    }
    path
}
