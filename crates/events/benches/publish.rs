//! The bus's cost per published event, as the prediction log publishes: batches of 512
//! events of about 300 bytes handed to `publish_taking` by one task on a two-worker
//! runtime. Prints the process's CPU time per event, by thread, on the in-process bus and,
//! when `MLOPS_TEST_KAFKA_BROKERS` names a broker, on Kafka.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_events::{BusArgs, BusKind, Envelope, EventBus};

const BATCH: usize = 512;
const TOPIC: &str = "mlops.bench.publish";

/// A message standing for `PredictionLogged`.
#[derive(Clone, PartialEq, prost::Message)]
struct Logged {
    #[prost(bytes = "vec", tag = "1")]
    body: Vec<u8>,
}

impl prost::Name for Logged {
    const NAME: &'static str = "Logged";
    const PACKAGE: &'static str = "mlops.bench";
}

/// CPU time (user and system) per thread name, from `/proc/self/task`.
fn cpu_by_thread() -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        // Threads named `tokio-runtime-worker`, `rdk:broker1`... grouped by their prefix.
        let name = name.split([':', '-']).next().unwrap_or(name).to_owned();
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        *out.entry(name).or_default() += Duration::from_millis(ticks * 10);
    }
    out
}

async fn run(label: &str, bus: Arc<dyn EventBus>, n: usize) {
    let payload = vec![7u8; 300];
    let before = cpu_by_thread();
    let started = Instant::now();
    let publishing = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..n {
            batch.push(Envelope::encoded::<Logged>(
                TOPIC,
                "/mlops/bench",
                "0b6c1c0e-4a0b-4b5e-9a53-1d0c6f4e7f10",
                format!("bench/{}", i % 3),
                payload.clone(),
            ));
            if batch.len() == BATCH {
                bus.publish_taking(&mut batch).await.expect("published");
            }
        }
        bus.publish_taking(&mut batch).await.expect("published");
    });
    publishing.await.unwrap();
    let elapsed = started.elapsed();
    let after = cpu_by_thread();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let total: Duration = after.values().sum::<Duration>() - before.values().sum::<Duration>();
    let threads: Vec<String> = after
        .iter()
        .map(|(k, v)| (k, *v - before.get(k).copied().unwrap_or_default()))
        .filter(|(_, d)| !d.is_zero())
        .map(|(k, d)| format!("{k} {:.2}", per(d)))
        .collect();
    println!(
        "{label}: {n} events in {:.2} s, {:.0}/s; CPU {:.2} µs per event ({})",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        per(total),
        threads.join(", ")
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    rt.block_on(async {
        let memory: Arc<dyn EventBus> = Arc::new(mlops_events::memory::InProcessBus::new());
        run("in-process", memory, n).await;
        let Ok(brokers) = std::env::var("MLOPS_TEST_KAFKA_BROKERS") else {
            println!("kafka: skipped (MLOPS_TEST_KAFKA_BROKERS is not set)");
            return;
        };
        let args = BusArgs {
            bus: BusKind::Kafka,
            kafka_brokers: brokers,
            kafka_partitions: 3,
            kafka_session_timeout_ms: 6_000,
            kafka_message_timeout_ms: 30_000,
        };
        let bus = mlops_events::connect(&args, None).unwrap();
        bus.ensure_topics(&[TOPIC]).await.unwrap();
        // Connections and metadata first.
        run("kafka (warm-up)", bus.clone(), n / 10).await;
        for _ in 0..3 {
            run("kafka", bus.clone(), n).await;
        }
    });
}
