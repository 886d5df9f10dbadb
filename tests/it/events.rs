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
        .subscribe("test", &[mlops_tracking::RUNS_TOPIC])
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
        .subscribe("lease", &[mlops_tracking::RUNS_TOPIC])
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
        mlops_events::EventBus::subscribe(&bus, "after-stop", &[mlops_tracking::RUNS_TOPIC])
            .await
            .unwrap();
    assert_eq!(take(&mut sub, 20, Duration::from_secs(5)).await.len(), 20);
}
