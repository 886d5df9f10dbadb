//! Events over a real Kafka-protocol broker (tansu, started by the test script):
//! a broker outage only delays events, and an idempotent consumer applies each
//! exactly once, in order per run.

use std::time::Duration;

use mlops_events::consumer::IdempotentConsumer;
use mlops_proto::tracking::v1 as pb;
use mlops_storage::Db;
use mlops_tests::{Bus, Database, Sandbox};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use sqlx::Row;

use crate::{experiment, metric, run};

fn broker_pid() -> String {
    std::env::var("MLOPS_TEST_KAFKA_PID")
        .expect("MLOPS_TEST_KAFKA_PID is not set: run the tests with `make test`, which starts tansu and exports its pid")
}

fn signal(sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(broker_pid())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} failed");
}

/// The events tests' consumer database, whose `seen` table also records `ce_type`.
async fn consumer_db(dir: &std::path::Path) -> Db {
    crate::events::consumer_db_with(Database::Sqlite, dir, ", ce_type TEXT NOT NULL").await
}

async fn one_run(c: &mut crate::Client, exp: &str) -> String {
    let r = run(c, exp).await;
    c.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![metric("auc", 0.9, 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    c.update_run(pb::UpdateRunRequest {
        run_id: r.clone(),
        status: pb::RunStatus::Finished as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    r
}

/// What a recorder writes for one event (the `ce_type` column).
type Describe = fn(&mlops_events::Envelope) -> String;

/// An idempotent consumer in its own group on `topic`, recording every event it
/// applies in `seen` (id, key, `describe(event)`); stopped with the token.
async fn record(
    sb: &Sandbox,
    db: &Db,
    consumer: &str,
    topic: &str,
    describe: Describe,
) -> (
    mlops_runtime::shutdown::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let consumer = IdempotentConsumer::new(db.clone(), "consumer", consumer);
    let group = format!("it-{}", uuid::Uuid::new_v4().simple());
    let sub = sb.bus.subscribe(&group, &[topic]).await.unwrap();
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            consumer
                .run(sub, stop, move |e, tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO seen (event_id, run_id, ce_type) VALUES ($1, $2, $3)",
                        )
                        .bind(&e.id)
                        .bind(&e.key)
                        .bind(describe(&e))
                        .execute(&mut **tx)
                        .await
                        .map(|_| ())
                    })
                })
                .await
        })
    };
    (stop, worker)
}

/// The recorded (event id, key, description) of events keyed by one of `keys`, in
/// the order they were applied (other tests' services publish on the same broker).
async fn seen(db: &Db, keys: &[String]) -> Vec<(String, String, String)> {
    sqlx::query("SELECT event_id, run_id, ce_type FROM seen ORDER BY seq")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .filter(|(_, key, _): &(String, String, String)| keys.contains(key))
        .collect()
}

/// Waits (up to two minutes) until `expected` events keyed by `keys` were applied.
async fn wait_seen(db: &Db, keys: &[String], expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = seen(db, keys).await.len();
        if n >= expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {expected} events arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_delays_events_and_consumers_apply_each_once_in_order() {
    let sb = Sandbox::builder()
        .database(Database::Sqlite)
        .bus(Bus::Kafka)
        .tracking()
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let dir = tempfile::tempdir().unwrap();
    let db = consumer_db(dir.path()).await;
    let (stop, worker) = record(
        &sb,
        &db,
        "runs-projection",
        mlops_proto::events::topics::RUNS,
        |e| e.ce_type.clone(),
    )
    .await;

    let exp = experiment(&mut c, "kafka").await;
    let mut runs = vec![];
    for _ in 0..5 {
        runs.push(one_run(&mut c, &exp).await);
    }
    // The broker freezes; the service keeps taking writes, the outbox holds the events.
    signal("STOP");
    let started = std::time::Instant::now();
    for _ in 0..5 {
        runs.push(one_run(&mut c, &exp).await);
    }
    let writes_during_outage = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal("CONT");
    assert!(
        writes_during_outage < Duration::from_secs(3),
        "writes must not wait for the bus: {writes_during_outage:?}"
    );

    let expected = runs.len() * 2;
    wait_seen(&db, &runs, expected).await;
    // A redelivered event (same id) changes nothing.
    let rows = seen(&db, &runs).await;
    let first_id = rows[0].0.clone();
    let dup = mlops_events::Envelope {
        id: first_id.clone(),
        ..mlops_events::Envelope::of(
            mlops_proto::events::topics::RUNS,
            "/test",
            &rows[0].1,
            "",
            &mlops_proto::events::v1::RunCreated::default(),
        )
    };
    sb.bus.publish(&[dup]).await.1.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    worker.await.unwrap();

    let rows = seen(&db, &runs).await;
    assert_eq!(
        rows.len(),
        expected,
        "every event applied exactly once (the redelivery was skipped)"
    );
    let mut ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected);
    for r in &runs {
        let types: Vec<String> = rows
            .iter()
            .filter(|row| row.1 == *r)
            .map(|row| row.2.clone())
            .collect();
        assert_eq!(
            types,
            ["mlops.events.v1.RunCreated", "mlops.events.v1.RunFinished"],
            "run {r}"
        );
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_use_the_cloudevents_binary_binding() {
    let sb = Sandbox::builder()
        .database(Database::Postgres)
        .bus(Bus::Kafka)
        .tracking()
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let exp = experiment(&mut c, "binding").await;
    let r = run(&mut c, &exp).await;

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mlops_tests::kafka_brokers())
        .set("group.id", format!("raw-{}", uuid::Uuid::new_v4().simple()))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("broker.address.family", "v4")
        .create()
        .unwrap();
    consumer
        .subscribe(&[mlops_proto::events::topics::RUNS])
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("the run's event arrives")
            .unwrap();
        if msg.key() != Some(r.as_bytes()) {
            continue;
        }
        let headers: std::collections::HashMap<String, String> = msg
            .headers()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_type"], "mlops.events.v1.RunCreated");
        assert_eq!(headers["ce_source"], "/mlops/tracking");
        assert_eq!(headers["ce_subject"], format!("runs/{r}"));
        assert_eq!(headers["content-type"], "application/protobuf");
        assert!(!headers["ce_id"].is_empty() && headers["ce_time"].contains('T'));
        let created: mlops_proto::events::v1::RunCreated =
            prost::Message::decode(msg.payload().unwrap()).unwrap();
        assert_eq!(created.run_id, r);
        break;
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_move_reaches_a_kafka_consumer_once_in_order_with_its_versions() {
    use crate::registry::{model, register, source_run};
    use mlops_proto::events::v1 as ev;
    use mlops_proto::registry::v1 as rpb;

    let sb = Sandbox::builder()
        .database(Database::Sqlite)
        .bus(Bus::Kafka)
        .registry()
        .start()
        .await
        .unwrap();
    let mut t = sb.tracking_client().await;
    let mut c = sb.registry_client().await;
    let dir = tempfile::tempdir().unwrap();
    let db = consumer_db(dir.path()).await;
    // The alias moves' versions ride in the description for the check below.
    let (stop, worker) = record(
        &sb,
        &db,
        "models-projection",
        mlops_proto::events::topics::MODELS,
        |e| {
            if e.ce_type == "mlops.events.v1.AliasSet" {
                let a: ev::AliasSet = e.decode().expect("an AliasSet payload");
                format!("AliasSet {} {}->{}", a.alias, a.previous_version, a.version)
            } else {
                e.ce_type.trim_start_matches("mlops.events.v1.").to_owned()
            }
        },
    )
    .await;

    let (_, r) = source_run(&mut t).await;
    let name = model(&mut c, "kafka").await;
    register(&mut c, &name, &r, "model").await.unwrap();
    register(&mut c, &name, &r, "model").await.unwrap();
    let set = |version: i64| rpb::SetRegisteredModelAliasRequest {
        name: name.clone(),
        alias: "champion".into(),
        version,
    };
    c.set_registered_model_alias(set(1)).await.unwrap();
    // The broker freezes while the alias moves: the move commits, its event waits.
    signal("STOP");
    let started = std::time::Instant::now();
    c.set_registered_model_alias(set(2)).await.unwrap();
    let during_outage = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal("CONT");
    assert!(
        during_outage < Duration::from_secs(2),
        "an alias move must not wait for the bus: {during_outage:?}"
    );
    let model_id = c
        .get_registered_model(rpb::GetRegisteredModelRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner()
        .registered_model
        .unwrap()
        .id;

    let expected = [
        "ModelVersionCreated",
        "ModelVersionReady",
        "ModelVersionCreated",
        "ModelVersionReady",
        "AliasSet champion 0->1",
        "AliasSet champion 1->2",
    ];
    let keys = [model_id.clone()];
    wait_seen(&db, &keys, expected.len()).await;
    // Redeliver the alias move (same event id): the consumer skips it.
    let last = seen(&db, &keys).await.pop().expect("events arrived").0;
    let dup = mlops_events::Envelope {
        id: last,
        ..mlops_events::Envelope::of(
            mlops_proto::events::topics::MODELS,
            "/test",
            &model_id,
            "",
            &ev::AliasSet::default(),
        )
    };
    sb.bus.publish(&[dup]).await.1.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    worker.await.unwrap();

    let seen: Vec<String> = seen(&db, &keys).await.into_iter().map(|r| r.2).collect();
    assert_eq!(seen, expected, "each event once, in the model's order");
    sb.stop().await.unwrap();
}

/// The bus of the test broker.
fn kafka_bus() -> std::sync::Arc<dyn mlops_events::EventBus> {
    mlops_events::connect(&mlops_tests::bus_args(Bus::Kafka), None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_both_replicas_and_the_group_one() {
    // The group's two members settle their partitions before the events are sent,
    // so no rebalance redelivers one mid-test.
    crate::events::broadcast_reaches_both_replicas_and_the_group_one(
        kafka_bus(),
        Duration::from_secs(10),
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_starts_after_it_subscribed() {
    crate::events::broadcast_starts_after_it_subscribed(kafka_bus(), Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_messages_without_cloudevents_headers_are_received_and_committed() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let bus = kafka_bus();
    let topic = crate::events::fresh_topic(bus.as_ref(), "external").await;
    // Written by a plain Kafka producer, as an external system would.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mlops_tests::kafka_brokers())
        .set("broker.address.family", "v4")
        .create()
        .unwrap();
    for r in crate::events::external_records(&topic) {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        // One partition for both, so their order is kept.
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(0)
            .payload(&r.payload)
            .headers(headers)
            .timestamp(r.timestamp.unwrap());
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    crate::events::raw_messages_are_received_and_committed(bus, &topic, Duration::from_secs(3))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_counted_and_does_not_stop_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::events::consumer_db(Database::Sqlite, dir.path()).await;
    crate::events::malformed_messages_are_counted_and_skipped(kafka_bus(), db).await;
}

/// The hot-swap test on tansu: alias moves reach both replicas through the broker's
/// broadcast subscription, under load, with no failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_moves_swap_every_replica_on_kafka() {
    crate::deployments::alias_moves_swap_every_replica_under_load(Bus::Kafka, 20).await;
}

/// The prediction log over tansu: every request id of a run appears exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prediction_is_logged_once_on_kafka() {
    crate::prediction_log::every_prediction_is_logged_once(Bus::Kafka).await;
}

/// Windows of the prediction log on tansu, followed by the monitoring service's group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_from_the_prediction_log_on_kafka() {
    crate::monitoring_log::windows_from_the_log_are_tested_as_pushed_ones(
        mlops_tests::Database::Sqlite,
        Bus::Kafka,
    )
    .await;
}

/// A reference taken from the prediction log on tansu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_taken_from_the_prediction_log_on_kafka() {
    crate::monitoring_capture::a_reference_taken_from_the_log_is_the_uploaded_one(
        mlops_tests::Database::Sqlite,
        Bus::Kafka,
    )
    .await;
}

/// Labels from a topic the user's systems write, on tansu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_from_a_topic_on_kafka() {
    crate::monitoring_perf::labels_from_a_topic(Bus::Kafka).await;
}

/// Ingestion of a kafka source of Avro values on tansu (fastavro's messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_sources_are_ingested_on_kafka() {
    crate::feature_store_ingest::avro_sources_are_ingested_into_the_online_store(
        Bus::Kafka,
        Duration::from_secs(60),
    )
    .await;
}

/// Ingestion of a kafka source's topic on tansu, from a producer of our own (plain JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sources_are_ingested_on_kafka() {
    crate::feature_store_ingest::kafka_sources_are_ingested_into_the_online_store(
        Bus::Kafka,
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_on_kafka() {
    crate::retraining::closed_loop(Bus::Kafka).await;
}
