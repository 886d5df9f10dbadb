//! Ingestion from a Kafka topic that the user's own producer writes (plain JSON values, no
//! CloudEvents headers) into the online store: rows arrive, an older row changes nothing,
//! malformed messages are counted and skipped without stopping the consumer. Avro values
//! too, written by fastavro (`scripts/make-avro-fixtures.py`). On the in-process bus here,
//! on tansu in `kafka.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlops_events::RawRecord;
use mlops_feature_store::FeatureStore;
use mlops_proto::featurestore::v1 as fpb;
use mlops_proto::featurestore::v1::feature_store_service_client::FeatureStoreServiceClient;
use mlops_tests::{Bus, Sandbox};
use tonic::transport::Channel;

fn defs(topic: &str) -> String {
    format!(
        r#"
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
sources:
  - name: driver_events
    type: kafka
    topic: {topic}
    format: json
feature_views:
  - name: driver_stream
    entities: [driver]
    ttl: 1h
    source: driver_events
    schema:
      - {{name: conv_rate, dtype: float64}}
      - {{name: city, dtype: string}}
"#
    )
}

/// `driver_stream:conv_rate` of `ids`, with its status.
async fn online(
    c: &mut FeatureStoreServiceClient<Channel>,
    ids: &[i64],
) -> Vec<(Option<f64>, i32)> {
    let ids: Vec<Option<i64>> = ids.iter().copied().map(Some).collect();
    let r = crate::feature_store_online::online(
        c,
        &["driver_stream:conv_rate"],
        vec![("driver_id", crate::feature_store_online::ints(&ids))],
    )
    .await
    .unwrap();
    crate::feature_store_online::column(&r, "conv_rate")
        .into_iter()
        .map(|(v, s)| (v, s as i32))
        .collect()
}

/// Waits until `ids` read `want`, for at most `within`.
async fn wait_for(
    c: &mut FeatureStoreServiceClient<Channel>,
    ids: &[i64],
    want: &[Option<f64>],
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got: Vec<Option<f64>> = online(c, ids).await.into_iter().map(|(v, _)| v).collect();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn json(topic: &str, value: serde_json::Value) -> RawRecord {
    // One partition, so the order of the test's messages is kept.
    let mut r = RawRecord::new(topic, None, value.to_string().into_bytes());
    r.partition = 0;
    r
}

/// A feature store on `bus`, its client, and a fresh topic named after `prefix`.
async fn start(bus: Bus, prefix: &str) -> (Sandbox, FeatureStoreServiceClient<Channel>, String) {
    let sb = Sandbox::builder()
        .bus(bus)
        .service::<FeatureStore>(|_| {})
        .start()
        .await
        .unwrap();
    let topic = crate::events::fresh_topic(sb.bus.as_ref(), prefix).await;
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("feature-store").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (sb, FeatureStoreServiceClient::new(channel), topic)
}

/// The malformed messages of `source` the feature store has counted.
/// Waits until `source` has counted at least `want` malformed messages, for at most `within`,
/// and returns the count: the consumer may count the last messages after the test has seen
/// the rows sent before them.
async fn wait_malformed(sb: &Sandbox, source: &str, want: f64, within: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = malformed(sb, source).await;
        if n >= want || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn malformed(sb: &Sandbox, source: &str) -> f64 {
    let (_, metrics) = mlops_tests::http_get(sb.addresses("feature-store").admin, "/metrics")
        .await
        .unwrap();
    let series = format!(r#"mlops_feature_store_ingest_malformed_total{{source="{source}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

pub(crate) async fn kafka_sources_are_ingested_into_the_online_store(bus: Bus, within: Duration) {
    let (sb, mut c, topic) = start(bus, "features").await;
    c.apply_definitions(fpb::ApplyDefinitionsRequest {
        yaml: defs(&topic),
        file_name: "stream.yaml".into(),
        dry_run: false,
    })
    .await
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iso = |secs_ago: u64| {
        chrono::DateTime::from_timestamp((now - secs_ago) as i64, 0)
            .unwrap()
            .to_rfc3339()
    };
    // The consumer starts within the reconcile interval; the first rows may come before it
    // joins: a group starts from the topic's beginning.
    sb.bus
        .publish_raw(&[
            json(&topic, serde_json::json!({"driver_id": 1, "event_timestamp": iso(60), "conv_rate": 0.5, "city": "a"})),
            json(&topic, serde_json::json!({"driver_id": 2, "event_timestamp": now - 30, "conv_rate": 0.7, "city": null})),
            // Malformed: not JSON, a string key, a string where a float goes, no time.
            RawRecord::new(&topic, None, b"not json".to_vec()),
            json(&topic, serde_json::json!({"driver_id": "1", "event_timestamp": now, "conv_rate": 0.9})),
            json(&topic, serde_json::json!({"driver_id": 1, "event_timestamp": now, "conv_rate": "high"})),
            json(&topic, serde_json::json!({"driver_id": 1, "conv_rate": 0.9})),
        ])
        .await
        .unwrap();
    wait_for(&mut c, &[1, 2, 3], &[Some(0.5), Some(0.7), None], within).await;
    // An older row changes nothing; a newer one replaces.
    sb.bus
        .publish_raw(&[
            json(
                &topic,
                serde_json::json!({"driver_id": 1, "event_timestamp": iso(600), "conv_rate": 0.1}),
            ),
            json(
                &topic,
                serde_json::json!({"driver_id": 2, "event_timestamp": iso(10), "conv_rate": 0.8}),
            ),
        ])
        .await
        .unwrap();
    wait_for(&mut c, &[1, 2], &[Some(0.5), Some(0.8)], within).await;
    let statuses: Vec<i32> = online(&mut c, &[1, 3])
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        statuses,
        [
            fpb::FieldStatus::Present as i32,
            fpb::FieldStatus::NotFound as i32
        ]
    );
    let malformed = wait_malformed(&sb, "driver_events", 4.0, within).await;
    assert!(
        malformed >= 4.0,
        "{malformed} malformed counted, want the 4 sent"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sources_are_ingested_in_process() {
    kafka_sources_are_ingested_into_the_online_store(Bus::InProcess, Duration::from_secs(10)).await;
}

/// fastavro's messages (`scripts/make-avro-fixtures.py`): each a 4-byte big-endian length,
/// then the message.
fn avro_messages() -> Vec<Vec<u8>> {
    let mut all: &[u8] =
        include_bytes!("../../crates/feature-store/src/online/avro/fixtures/messages.bin");
    let mut out = Vec::new();
    while all.len() >= 4 {
        let n = u32::from_be_bytes(all[..4].try_into().unwrap()) as usize;
        out.push(all[4..4 + n].to_vec());
        all = &all[4 + n..];
    }
    out
}

pub(crate) async fn avro_sources_are_ingested_into_the_online_store(bus: Bus, within: Duration) {
    let (sb, mut c, topic) = start(bus, "features-avro").await;
    let schema =
        include_str!("../../crates/feature-store/src/online/avro/fixtures/driver_event.avsc");
    let indented: String = schema.lines().map(|l| format!("      {l}\n")).collect();
    let yaml = format!(
        "entities:\n  - name: driver\n    join_keys: [driver_id]\n    value_type: int64\n\
         sources:\n  - name: driver_avro\n    type: kafka\n    topic: {topic}\n    format: avro\n\
         \x20   created_timestamp_column: created\n    avro_schema: |\n{indented}\
         feature_views:\n  - name: driver_stream\n    entities: [driver]\n    ttl: 0\n\
         \x20   source: driver_avro\n    schema:\n      - {{name: conv_rate, dtype: float64}}\n\
         \x20     - {{name: city, dtype: string}}\n"
    );
    c.apply_definitions(fpb::ApplyDefinitionsRequest {
        yaml,
        file_name: "avro.yaml".into(),
        dry_run: false,
    })
    .await
    .unwrap();
    let m = avro_messages();
    // typical (driver 1001), negatives (-1), marker_lookalike in the single-object
    // encoding (-98), then a truncated message and a JSON one: malformed
    let record = |bytes: &[u8]| {
        let mut r = RawRecord::new(&topic, None, bytes.to_vec());
        r.partition = 0;
        r
    };
    sb.bus
        .publish_raw(&[
            record(&m[0]),
            record(&m[5]),
            record(&m[7]),
            record(&m[0][..m[0].len() - 3]),
            record(br#"{"driver_id": 5}"#),
        ])
        .await
        .unwrap();
    let ids: Vec<Option<i64>> = vec![Some(1001), Some(-1), Some(-98), Some(5)];
    let deadline = tokio::time::Instant::now() + within;
    let got = loop {
        let r = crate::feature_store_online::online(
            &mut c,
            &["driver_stream:conv_rate", "driver_stream:city"],
            vec![("driver_id", crate::feature_store_online::ints(&ids))],
        )
        .await
        .unwrap();
        let rates: Vec<Option<f64>> = crate::feature_store_online::column(&r, "conv_rate")
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        if rates[..3].iter().all(Option::is_some) {
            break (rates, r);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {rates:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got.0, [Some(0.1234), Some(-2.5e-10), Some(1e300), None]);
    let malformed = wait_malformed(&sb, "driver_avro", 2.0, within).await;
    assert!(
        malformed >= 2.0,
        "{malformed} malformed counted, want the 2 sent"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_sources_are_ingested_in_process() {
    avro_sources_are_ingested_into_the_online_store(Bus::InProcess, Duration::from_secs(10)).await;
}
