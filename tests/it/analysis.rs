//! Automatic analysis of a canary under steady load, over real gRPC with the registry: a
//! candidate with 5% injected errors is rolled back within two intervals; a healthy one is
//! promoted by moving the alias in the registry; a promotion the registry's gate refuses is
//! blocked with its reason and the candidate keeps its weight. Each decision is an event
//! with its findings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::inference::v1 as dpb;
use mlops_proto::registry::v1 as rpb;
use mlops_tests::{Bus, Sandbox};

use crate::deployments::{
    alias_version, deployments, describe, follow, next_event, sandbox, set_alias, wait_for,
    Deployments,
};
use crate::inference::{fixture, oip, request, upload};

/// Version 1 (logreg) and 2 (a linear SVM) of `name`, champion on 1, deployed following
/// champion; a subscription to the deployment events.
async fn setup(name: &str) -> (Sandbox, Deployments, Box<dyn mlops_events::Subscription>) {
    let sb = sandbox(Bus::InProcess).await;
    upload(&sb, name, &fixture("logreg").onnx).await;
    upload(&sb, name, &fixture("linear_svm").onnx).await;
    set_alias(&sb, name, "champion", 1).await;
    let events = sb
        .bus
        .subscribe_broadcast(&format!("it-{name}"), &[topics::DEPLOYMENTS])
        .await
        .unwrap();
    let mut d = deployments(sb.addresses("inference").api).await;
    d.deploy(dpb::DeployRequest {
        name: name.into(),
        target: follow("champion"),
        ..Default::default()
    })
    .await
    .unwrap();
    (sb, d, events)
}

/// Requests to `name` without pause from two clients until the flag is set.
fn steady_load(
    sb: &Sandbox,
    name: &'static str,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = sb.addresses("inference").api;
    let tasks = (0..2)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = oip(addr).await;
                let f = fixture("logreg");
                while !stop.load(Ordering::Relaxed) {
                    // Injected faults answer errors: the analysis counts them, the load goes on.
                    let _ = c.model_infer(request(name, &f, 0..1)).await;
                }
            })
        })
        .collect();
    (stop, tasks)
}

fn canary(weight: u32, error_rate: f64, analysis: dpb::Analysis) -> dpb::Traffic {
    dpb::Traffic {
        variants: vec![dpb::Variant {
            name: "canary".into(),
            target: Some(dpb::Target {
                choice: Some(dpb::target::Choice::Version(2)),
            }),
            weight,
            fault: (error_rate > 0.0).then_some(dpb::Fault {
                error_rate,
                delay_us: 0,
            }),
        }],
        analysis: Some(analysis),
        ..Default::default()
    }
}

async fn set(d: &mut Deployments, name: &str, traffic: dpb::Traffic) {
    d.set_traffic(dpb::SetTrafficRequest {
        name: name.into(),
        traffic: Some(traffic),
    })
    .await
    .expect("set traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_with_injected_errors_is_rolled_back_within_two_intervals() {
    let name = "faulty";
    let (sb, mut d, mut events) = setup(name).await;
    let (stop, load) = steady_load(&sb, name);
    let interval = Duration::from_millis(1000);
    let started = Instant::now();
    set(
        &mut d,
        name,
        canary(
            50,
            0.05,
            dpb::Analysis {
                interval_ms: interval.as_millis() as u64,
                max_error_rate: 0.01,
                min_requests: 20,
                consecutive_error_limit: 2,
                ..Default::default()
            },
        ),
    )
    .await;
    let rolled: ev::DeploymentRolledBack = next_event(&mut events, |_| true).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(
        took <= 2 * interval + Duration::from_millis(500),
        "rolled back after {took:?}"
    );
    assert_eq!(
        (rolled.from_versions.as_slice(), rolled.to_version),
        (&[2][..], 1)
    );
    assert!(
        rolled.reason.contains("canary error_rate"),
        "{}",
        rolled.reason
    );
    let finding = rolled
        .findings
        .iter()
        .find(|f| f.metric == "error_rate")
        .expect("the error rate finding");
    assert!(
        !finding.passed && finding.limit == 0.01 && finding.value > 0.01,
        "{finding:?}"
    );
    let dep = describe(&mut d, name).await;
    assert_eq!(dep.version, 1);
    assert!(
        dep.traffic.unwrap().variants.is_empty(),
        "the canary is gone"
    );
    assert_eq!(
        alias_version(&sb, name, "champion").await,
        1,
        "the alias never moved"
    );
    eprintln!(
        "a 5%-error canary was rolled back {took:?} after it started (interval {interval:?})"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_candidate_is_promoted_through_the_registry() {
    let name = "healthy";
    let (sb, mut d, mut events) = setup(name).await;
    let (stop, load) = steady_load(&sb, name);
    set(
        &mut d,
        name,
        canary(
            50,
            0.0,
            dpb::Analysis {
                interval_ms: 500,
                max_error_rate: 0.01,
                max_p99_ms: 5_000.0,
                min_requests: 10,
                consecutive_error_limit: 2,
                successes_to_promote: 2,
                ..Default::default()
            },
        ),
    )
    .await;
    let promoted: ev::DeploymentPromoted = next_event(&mut events, |_| true).await;
    assert_eq!((promoted.version, promoted.previous_version), (2, 1));
    assert_eq!(promoted.variant, "canary");
    assert!(promoted.findings.iter().all(|f| f.passed), "{promoted:?}");
    let dep = wait_for(&mut d, name, "version 2 serves everything", |dep| {
        dep.version == 2 && dep.variant_versions.len() == 1
    })
    .await;
    assert_eq!(dep.previous_version, 1, "a rollback would go back to 1");
    assert_eq!(
        alias_version(&sb, name, "champion").await,
        2,
        "the alias moved in the registry"
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_the_gate_refuses_is_blocked_with_its_reason() {
    let name = "gated";
    let (sb, mut d, mut events) = setup(name).await;
    sb.registry_client()
        .await
        .update_registered_model(rpb::UpdateRegisteredModelRequest {
            name: name.into(),
            gate_policy: Some(rpb::GatePolicy {
                require_passed_gate: true,
                aliases: vec!["champion".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let (stop, load) = steady_load(&sb, name);
    set(
        &mut d,
        name,
        canary(
            30,
            0.0,
            dpb::Analysis {
                interval_ms: 300,
                max_error_rate: 0.01,
                min_requests: 5,
                consecutive_error_limit: 3,
                successes_to_promote: 1,
                ..Default::default()
            },
        ),
    )
    .await;
    let blocked: ev::PromotionBlocked = next_event(&mut events, |_| true).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!((blocked.version, blocked.alias.as_str()), (2, "champion"));
    assert!(blocked.reason.contains("gate"), "{}", blocked.reason);
    let dep = describe(&mut d, name).await;
    assert_eq!(dep.version, 1);
    assert_eq!(
        dep.variant_versions["canary"], 2,
        "the candidate keeps its weight"
    );
    assert_eq!(dep.traffic.unwrap().variants[0].weight, 30);
    assert!(dep.reason.contains("blocked"), "{}", dep.reason);
    assert_eq!(alias_version(&sb, name, "champion").await, 1);
    sb.stop().await.unwrap();
}
