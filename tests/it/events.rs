//! Run events through the outbox on the in-process bus.

use std::time::Duration;

use mlops_proto::events::v1 as ev;
use mlops_proto::tracking::v1 as pb;
use mlops_tests::{Database, Sandbox};

use crate::{experiment, metric, param, run};

/// Reads `n` events from `sub` or fails after a timeout.
pub async fn take(
    sub: &mut Box<dyn mlops_events::Subscription>,
    n: usize,
    within: Duration,
) -> Vec<mlops_events::Envelope> {
    let mut out = vec![];
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < n {
        let d = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of {n} events arrived within {within:?}", out.len())
            })
            .expect("the subscription works");
        sub.commit(&d).await.unwrap();
        out.push(d.envelope);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_lifecycle_publishes_created_finished_deleted_in_order() {
    let sb = Sandbox::builder()
        .database(Database::Sqlite)
        .tracking()
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let mut sub = sb
        .bus
        .subscribe("test", &[mlops_proto::events::topics::RUNS])
        .await
        .unwrap();
    let exp = experiment(&mut c, "events").await;
    let r = run(&mut c, &exp).await;
    c.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![metric("auc", 0.91, 3)],
        params: vec![param("model", "rf")],
        tags: vec![],
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
    // A second terminal update is not a second finish.
    c.update_run(pb::UpdateRunRequest {
        run_id: r.clone(),
        status: pb::RunStatus::Failed as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    c.delete_run(pb::DeleteRunRequest { run_id: r.clone() })
        .await
        .unwrap();

    let events = take(&mut sub, 3, Duration::from_secs(10)).await;
    let types: Vec<&str> = events.iter().map(|e| e.ce_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "mlops.events.v1.RunCreated",
            "mlops.events.v1.RunFinished",
            "mlops.events.v1.RunDeleted"
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.key == r && e.subject == format!("runs/{r}") && e.source == "/mlops/tracking"));
    let created: ev::RunCreated = events[0].decode().unwrap();
    assert_eq!(
        (created.run_id.as_str(), created.experiment_id.as_str()),
        (r.as_str(), exp.as_str())
    );
    let finished: ev::RunFinished = events[1].decode().unwrap();
    assert_eq!(finished.status, "FINISHED");
    assert!(!finished.lease_expired);
    assert_eq!(finished.metrics.len(), 1);
    assert_eq!(
        (
            finished.metrics[0].key.as_str(),
            finished.metrics[0].value,
            finished.metrics[0].step
        ),
        ("auc", 0.91, 3)
    );
    assert_eq!(finished.params.get("model").map(String::as_str), Some("rf"));
    let extra = tokio::time::timeout(Duration::from_millis(700), sub.next()).await;
    assert!(
        extra.is_err(),
        "no fourth event: {:?}",
        extra.map(|d| d.map(|d| d.envelope.ce_type))
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_publishes_killed_run() {
    let sb = Sandbox::builder()
        .database(Database::Sqlite)
        .tracking()
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let mut sub = sb
        .bus
        .subscribe("lease", &[mlops_proto::events::topics::RUNS])
        .await
        .unwrap();
    let exp = experiment(&mut c, "lease-events").await;
    c.create_run(pb::CreateRunRequest {
        experiment_id: exp,
        heartbeat_timeout_seconds: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let events = take(&mut sub, 2, Duration::from_secs(10)).await;
    let finished: ev::RunFinished = events[1].decode().unwrap();
    assert_eq!(finished.status, "KILLED");
    assert!(finished.lease_expired);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flushes_the_outbox() {
    let sb = Sandbox::builder()
        .database(Database::Postgres)
        .tracking()
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let exp = experiment(&mut c, "flush").await;
    for _ in 0..20 {
        run(&mut c, &exp).await;
    }
    let bus = sb.in_process.clone().unwrap();
    let store = sb.tracking().store.clone();
    sb.stop().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tracking_outbox")
        .fetch_one(store.db().reader())
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox is empty after a clean stop");
    let mut sub =
        mlops_events::EventBus::subscribe(&bus, "after-stop", &[mlops_proto::events::topics::RUNS])
            .await
            .unwrap();
    assert_eq!(take(&mut sub, 20, Duration::from_secs(5)).await.len(), 20);
}

// ---------------------------------------------------------------------------
// The ways to consume: a group, a broadcast, an external topic; malformed messages;
// pruning applied event ids. Each scenario takes a bus, so the Kafka tests
// (kafka.rs) run the same ones on a real broker.

use std::sync::Arc;

use mlops_events::consumer::{AppliedEventsArgs, AppliedEventsPruner, IdempotentConsumer};
use mlops_events::{EventBus, RawRecord, Subscription};
use mlops_storage::{Db, DbOptions, Migration};
use prost::Name;
use sqlx::Row;

/// An event on `topic` keyed by `key` (a RunCreated whose run id is the key).
pub fn run_created(topic: &str, key: &str) -> mlops_events::Envelope {
    mlops_events::Envelope::of(
        topic,
        "/test",
        key,
        format!("runs/{key}"),
        &ev::RunCreated {
            run_id: key.to_owned(),
            ..Default::default()
        },
    )
}

/// A topic of its own for one test, created on `bus`.
pub async fn fresh_topic(bus: &dyn EventBus, prefix: &str) -> String {
    let topic = format!("it.{prefix}.{}", uuid::Uuid::new_v4().simple());
    bus.ensure_topics(&[&topic]).await.unwrap();
    topic
}

/// Reads from `sub` until nothing arrives for `idle`, committing each event.
pub async fn drain(sub: &mut Box<dyn Subscription>, idle: Duration) -> Vec<mlops_events::Envelope> {
    let mut out = vec![];
    while let Ok(d) = tokio::time::timeout(idle, sub.next()).await {
        let d = d.expect("the subscription works");
        sub.commit(&d).await.unwrap();
        out.push(d.envelope);
    }
    out
}

fn keys(events: &[mlops_events::Envelope]) -> Vec<String> {
    events.iter().map(|e| e.key.clone()).collect()
}

/// The value of `mlops_events_malformed_total{topic, consumer}` as exported.
pub fn malformed_total(topic: &str, consumer: &str) -> u64 {
    mlops_runtime::metrics::render()
        .lines()
        .filter(|l| l.starts_with("mlops_events_malformed_total{"))
        .filter(|l| {
            l.contains(&format!("topic=\"{topic}\""))
                && l.contains(&format!("consumer=\"{consumer}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Two replicas of a service, each with a group member (group `projection`) and a
/// broadcast subscription (`cache`) on one topic: the group gives each event to one
/// of them, the broadcast gives every event to both. `settle` lets a real broker's
/// group finish assigning partitions before the events are published.
pub async fn broadcast_reaches_both_replicas_and_the_group_one(
    bus: Arc<dyn EventBus>,
    settle: Duration,
    idle: Duration,
) {
    let topic = fresh_topic(bus.as_ref(), "fanout").await;
    let group = format!("projection-{}", uuid::Uuid::new_v4().simple());
    // What each group member applied, as (member, key).
    let applied = Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let mut members = vec![];
    for member in 0..2 {
        let mut sub = bus.subscribe(&group, &[&topic]).await.unwrap();
        let (applied, stop) = (applied.clone(), stop.clone());
        // Each member keeps receiving (which also lets it take part in the group).
        members.push(tokio::spawn(async move {
            loop {
                let d = tokio::select! {
                    _ = stop.cancelled() => return,
                    d = sub.next() => d.unwrap(),
                };
                sub.commit(&d).await.unwrap();
                applied.lock().unwrap().push((member, d.envelope.key));
            }
        }));
    }
    let mut replicas = vec![];
    for _ in 0..2 {
        replicas.push(bus.subscribe_broadcast("cache", &[&topic]).await.unwrap());
    }
    tokio::time::sleep(settle).await;
    let sent: Vec<String> = (0..12).map(|i| format!("run-{i:02}")).collect();
    let events: Vec<_> = sent.iter().map(|k| run_created(&topic, k)).collect();
    bus.publish(&events).await.1.unwrap();

    for (i, replica) in replicas.iter_mut().enumerate() {
        let mut got = keys(&drain(replica, idle).await);
        got.sort();
        assert_eq!(got, sent, "broadcast replica {i} sees every event once");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while applied.lock().unwrap().len() < sent.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for a second delivery of any event to show up.
    tokio::time::sleep(idle).await;
    stop.cancel();
    for m in members {
        m.await.unwrap();
    }
    let applied = applied.lock().unwrap().clone();
    let mut by_group: Vec<String> = applied.iter().map(|(_, k)| k.clone()).collect();
    by_group.sort();
    assert_eq!(
        by_group, sent,
        "the group applies each event once, on one replica: {applied:?}"
    );
}

/// A broadcast subscriber gets the events published after it subscribed, none of
/// those before, and a new subscription (a restart) replays nothing.
pub async fn broadcast_starts_after_it_subscribed(bus: Arc<dyn EventBus>, idle: Duration) {
    let topic = fresh_topic(bus.as_ref(), "start").await;
    bus.publish(&[
        run_created(&topic, "before-1"),
        run_created(&topic, "before-2"),
    ])
    .await
    .1
    .unwrap();
    let mut sub = bus
        .subscribe_broadcast("alias-watch", &[&topic])
        .await
        .unwrap();
    bus.publish(&[
        run_created(&topic, "after-1"),
        run_created(&topic, "after-2"),
    ])
    .await
    .1
    .unwrap();
    let got = drain(&mut sub, idle).await;
    assert_eq!(keys(&got), ["after-1", "after-2"]);
    assert!(got.iter().all(|e| e.is::<ev::RunCreated>()));
    drop(sub);
    let mut restarted = bus
        .subscribe_broadcast("alias-watch", &[&topic])
        .await
        .unwrap();
    bus.publish(&[run_created(&topic, "after-restart")])
        .await
        .1
        .unwrap();
    assert_eq!(keys(&drain(&mut restarted, idle).await), ["after-restart"]);
}

/// Messages of an external producer, without CloudEvents headers, reach a raw
/// subscription with their key, payload, headers and timestamp; a committed one is
/// not delivered to the group again, an uncommitted one is.
pub async fn raw_messages_are_received_and_committed(
    bus: Arc<dyn EventBus>,
    topic: &str,
    idle: Duration,
) {
    let group = format!("ingest-{}", uuid::Uuid::new_v4().simple());
    let mut sub = bus.subscribe_raw(&group, &[topic]).await.unwrap();
    let first = tokio::time::timeout(idle * 10, sub.next())
        .await
        .expect("the first message arrives")
        .unwrap();
    assert_eq!(first.topic, topic);
    assert_eq!(first.key.as_deref(), Some(&b"user-1"[..]));
    assert_eq!(first.payload, br#"{"label": 1}"#);
    assert_eq!(
        first.headers,
        [("origin".into(), b"labeling-tool".to_vec())]
    );
    assert_eq!(first.timestamp, Some(1_700_000_000_000));
    assert!(first.offset >= 0);
    sub.commit(&first).await.unwrap();
    let second = tokio::time::timeout(idle * 10, sub.next())
        .await
        .expect("the second message arrives")
        .unwrap();
    assert_eq!(second.key, None);
    assert_eq!(second.payload, b"plain");
    assert!(second.headers.is_empty());
    // Not committed: the group gets it again after a restart, and not the first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(sub);
    let mut sub = bus.subscribe_raw(&group, &[topic]).await.unwrap();
    let again = tokio::time::timeout(idle * 20, sub.next())
        .await
        .expect("the uncommitted message is redelivered")
        .unwrap();
    assert_eq!(
        (again.partition, again.offset, again.payload),
        (second.partition, second.offset, second.payload)
    );
}

/// The records an external producer would write (no CloudEvents headers).
pub fn external_records(topic: &str) -> Vec<RawRecord> {
    let mut first = RawRecord::new(topic, Some(b"user-1"), br#"{"label": 1}"#.to_vec())
        .with_header("origin", "labeling-tool");
    first.timestamp = Some(1_700_000_000_000);
    let mut second = RawRecord::new(topic, None, b"plain".to_vec());
    second.timestamp = Some(1_700_000_000_001);
    vec![first, second]
}

/// A consumer database with `<consumer>_applied_events` and a `seen` table.
pub async fn consumer_db(db: Database, dir: &std::path::Path) -> Db {
    consumer_db_with(db, dir, "").await
}

/// [`consumer_db`] whose `seen` table has `extra_columns` too (`, name TYPE`...).
pub async fn consumer_db_with(db: Database, dir: &std::path::Path, extra_columns: &str) -> Db {
    let url = match db {
        Database::Sqlite => format!("sqlite://{}/consumer.db", dir.display()),
        Database::Postgres => mlops_tests::fresh_postgres_database().await.unwrap(),
    };
    let db = Db::connect(&DbOptions {
        url,
        max_connections: 4,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    db.migrate(
        "consumer-outbox",
        &mlops_events::outbox::migrations("consumer"),
    )
    .await
    .unwrap();
    db.migrate(
        "consumer",
        &[Migration {
            version: 1,
            name: "seen".into(),
            sqlite: format!("CREATE TABLE seen (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, run_id TEXT NOT NULL{extra_columns});").into(),
            postgres: format!("CREATE TABLE seen (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, run_id TEXT NOT NULL{extra_columns});").into(),
        }],
    )
    .await
    .unwrap();
    db
}

async fn seen_runs(db: &Db) -> Vec<String> {
    sqlx::query("SELECT run_id FROM seen ORDER BY seq")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What the handler below fails with.
#[derive(Debug)]
enum Failed {
    Decode(mlops_events::DecodeError),
    Db(sqlx::Error),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Decode(e) => write!(f, "cannot decode: {e}"),
            Failed::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failed::Decode(e) => Some(e),
            Failed::Db(e) => Some(e),
        }
    }
}

/// A message without CloudEvents headers and an event whose payload does not decode
/// are counted in `mlops_events_malformed_total` and skipped; the consumer goes on
/// with the events after them.
pub async fn malformed_messages_are_counted_and_skipped(bus: Arc<dyn EventBus>, db: Db) {
    let topic = fresh_topic(bus.as_ref(), "malformed").await;
    // The group and the consumer share a name, so both kinds count under it.
    let name = format!("projection-{}", uuid::Uuid::new_v4().simple());
    let consumer = IdempotentConsumer::new(db.clone(), "consumer", &name);
    let sub = bus.subscribe(&name, &[&topic]).await.unwrap();
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            consumer
                .run(sub, stop, |e, tx| {
                    Box::pin(async move {
                        let created: ev::RunCreated = e.decode().map_err(Failed::Decode)?;
                        sqlx::query("INSERT INTO seen (event_id, run_id) VALUES ($1, $2)")
                            .bind(&e.id)
                            .bind(&created.run_id)
                            .execute(&mut **tx)
                            .await
                            .map_err(Failed::Db)?;
                        Ok::<_, Failed>(())
                    })
                })
                .await
        })
    };
    let before = malformed_total(&topic, &name);
    // All on one key, so one partition, in this order.
    bus.publish_raw(&[RawRecord::new(&topic, Some(b"k"), b"not an event".to_vec())])
        .await
        .unwrap();
    let garbage = mlops_events::Envelope {
        payload: vec![0xff, 0xff, 0xff, 0xff],
        ..run_created(&topic, "k")
    };
    assert_eq!(garbage.ce_type, ev::RunCreated::full_name());
    bus.publish(&[garbage, run_created(&topic, "k")])
        .await
        .1
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen_runs(&db).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event after the malformed ones was not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(malformed_total(&topic, &name) - before, 2);
    // Still consuming.
    bus.publish(&[run_created(&topic, "k")]).await.1.unwrap();
    while seen_runs(&db).await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    assert_eq!(seen_runs(&db).await, ["k", "k"]);
    assert_eq!(malformed_total(&topic, &name) - before, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_broadcast_reaches_both_replicas_and_the_group_one() {
    broadcast_reaches_both_replicas_and_the_group_one(
        Arc::new(mlops_events::memory::InProcessBus::new()),
        Duration::ZERO,
        Duration::from_millis(300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_broadcast_starts_after_it_subscribed() {
    broadcast_starts_after_it_subscribed(
        Arc::new(mlops_events::memory::InProcessBus::new()),
        Duration::from_millis(300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_raw_messages_are_received_and_committed() {
    let bus = Arc::new(mlops_events::memory::InProcessBus::new());
    let topic = fresh_topic(bus.as_ref(), "external").await;
    bus.publish_raw(&external_records(&topic)).await.unwrap();
    raw_messages_are_received_and_committed(bus, &topic, Duration::from_millis(300)).await;
}

/// A broadcast subscriber of the runs topic, next to a running tracking service,
/// starts with the first run created after it subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_broadcast_starts_with_the_next_event() {
    let sb = Sandbox::builder()
        .database(Database::Sqlite)
        .tracking()
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let mut group = sb
        .bus
        .subscribe("all", &[mlops_proto::events::topics::RUNS])
        .await
        .unwrap();
    let exp = experiment(&mut c, "broadcast").await;
    let old = run(&mut c, &exp).await;
    // The old run's event is out of the outbox before the broadcast subscribes.
    assert_eq!(
        take(&mut group, 1, Duration::from_secs(10)).await[0].key,
        old
    );
    let mut sub = sb
        .bus
        .subscribe_broadcast("watch", &[mlops_proto::events::topics::RUNS])
        .await
        .unwrap();
    let new = run(&mut c, &exp).await;
    let events = take(&mut sub, 1, Duration::from_secs(10)).await;
    assert_eq!(events[0].key, new);
    let created: ev::RunCreated = events[0].decode().unwrap();
    assert_eq!(created.run_id, new);
    sb.stop().await.unwrap();
}

async fn malformed_messages_are_counted_and_skipped_in_process(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    malformed_messages_are_counted_and_skipped(
        Arc::new(mlops_events::memory::InProcessBus::new()),
        consumer_db(db, dir.path()).await,
    )
    .await;
}

/// Pruning deletes the ids applied longer ago than the retention, and only those:
/// a recent event is still skipped when redelivered.
async fn pruning_removes_only_old_applied_event_ids(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = consumer_db(db, dir.path()).await;
    let consumer = IdempotentConsumer::new(db.clone(), "consumer", "projection");
    let other = IdempotentConsumer::new(db.clone(), "consumer", "other");
    let events: Vec<_> = (0..4)
        .map(|i| run_created("it.prune", &format!("r{i}")))
        .collect();
    fn noop<'t>(
        _: &'t mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> mlops_events::consumer::Effect<'t, sqlx::Error> {
        Box::pin(async { Ok(()) })
    }
    for e in &events[..3] {
        assert!(consumer.apply(e, noop).await.unwrap());
    }
    assert!(other.apply(&events[3], noop).await.unwrap());
    // r0 (projection) and r3 (other) were applied 8 days ago, r1 6 days ago.
    let day = 24 * 3600 * 1000;
    let now = mlops_storage::now_millis();
    for (e, age) in [
        (&events[0], 8 * day),
        (&events[1], 6 * day),
        (&events[3], 8 * day),
    ] {
        sqlx::query("UPDATE consumer_applied_events SET applied_at = $1 WHERE event_id = $2")
            .bind(now - age)
            .bind(&e.id)
            .execute(db.writer())
            .await
            .unwrap();
    }
    let args = AppliedEventsArgs::default();
    assert_eq!(args.applied_events_retention_hours, 7 * 24);
    let pruner = AppliedEventsPruner::new(db.clone(), "consumer", &args);
    assert_eq!(pruner.prune().await.unwrap(), 2);
    let mut left: Vec<String> = sqlx::query("SELECT event_id FROM consumer_applied_events")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    left.sort();
    let mut expected = vec![events[1].id.clone(), events[2].id.clone()];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(
        pruner.prune().await.unwrap(),
        0,
        "nothing else is old enough"
    );
    // Kept ids still make redeliveries no-ops; a pruned one would apply again.
    assert!(!consumer.apply(&events[1], noop).await.unwrap());
    assert!(!consumer.apply(&events[2], noop).await.unwrap());
    assert!(consumer.apply(&events[0], noop).await.unwrap());
    // The task prunes at once when started, then every interval.
    sqlx::query("UPDATE consumer_applied_events SET applied_at = $1")
        .bind(now - 8 * day)
        .execute(db.writer())
        .await
        .unwrap();
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let task = tokio::spawn(pruner.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consumer_applied_events")
            .fetch_one(db.reader())
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task did not prune"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap();
}

mod consumers {
    use super::*;

    crate::on_both_backends!(
        malformed_messages_are_counted_and_skipped_in_process,
        pruning_removes_only_old_applied_event_ids
    );
}
