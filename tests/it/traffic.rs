//! Traffic splits over real gRPC: canary weights hold within a percentage point over 10,000
//! requests, the route header keeps a caller on one variant, a shadow that fails or sleeps
//! changes neither answers nor latency, rollbacks return all traffic to the last version
//! that served 100% (moving the alias back in the registry), bad splits change nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::inference::v1 as dpb;
use mlops_tests::Bus;
use tonic::Code;

use crate::deployments::{
    alias_version, assert_variant_series, deployments, describe, follow, next_event, sandbox,
    set_alias, wait_for, Deployments,
};
use crate::inference::{fixture, oip, request, upload, Oip};

fn version(v: i64) -> Option<dpb::Target> {
    Some(dpb::Target {
        choice: Some(dpb::target::Choice::Version(v)),
    })
}

fn variant(name: &str, v: i64, weight: u32) -> dpb::Variant {
    dpb::Variant {
        name: name.into(),
        target: version(v),
        weight,
        fault: None,
    }
}

/// A canary at version `v` with `weight` percent of the requests.
fn canary(v: i64, weight: u32) -> dpb::Traffic {
    dpb::Traffic {
        variants: vec![variant("canary", v, weight)],
        ..Default::default()
    }
}

async fn split(d: &mut Deployments, name: &str, traffic: dpb::Traffic) -> dpb::Deployment {
    d.set_traffic(dpb::SetTrafficRequest {
        name: name.into(),
        traffic: Some(traffic),
    })
    .await
    .expect("set traffic")
    .into_inner()
    .deployment
    .unwrap()
}

/// The version that answers one request of `name`, with `route` as its route header.
async fn answer(c: &mut Oip, name: &str, route: Option<&str>) -> i64 {
    let mut req = tonic::Request::new(request(name, &fixture_rows(), 0..1));
    if let Some(r) = route {
        req.metadata_mut().insert("mlops-route", r.parse().unwrap());
    }
    c.model_infer(req)
        .await
        .expect("infer")
        .into_inner()
        .model_version
        .parse()
        .unwrap()
}

fn fixture_rows() -> crate::inference::Fixture {
    fixture("logreg")
}

/// A model with version 1 (logreg) and 2 (a linear SVM), deployed at version 1.
async fn two_versions(name: &str) -> (mlops_tests::Sandbox, Deployments, Oip) {
    let sb = sandbox(Bus::InProcess).await;
    upload(&sb, name, &fixture("logreg").onnx).await;
    upload(&sb, name, &fixture("linear_svm").onnx).await;
    let addr = sb.addresses("inference").api;
    let mut d = deployments(addr).await;
    d.deploy(dpb::DeployRequest {
        name: name.into(),
        target: version(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = oip(addr).await;
    (sb, d, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weights_hold_and_the_route_header_sticks() {
    let name = "split";
    let (sb, mut d, c) = two_versions(name).await;
    let dep = split(&mut d, name, canary(2, 20)).await;
    assert_eq!(dep.variant_versions["stable"], 1);
    assert_eq!(dep.variant_versions["canary"], 2);

    // 10,000 requests without a route header: 20% within a percentage point.
    let mut tasks = vec![];
    for _ in 0..4 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut canary = 0;
            for _ in 0..2_500 {
                canary += usize::from(answer(&mut c, name, None).await == 2);
            }
            canary
        }));
    }
    let mut canary = 0;
    for t in tasks {
        canary += t.await.unwrap();
    }
    let share = canary as f64 / 100.0;
    assert!((share - 20.0).abs() <= 1.0, "the canary got {share}%");

    // Sticky: each user stays on one variant; about a fifth of them on the canary.
    let mut c = c.clone();
    let mut on_canary = 0;
    for user in 0..200 {
        let key = format!("user-{user}");
        let first = answer(&mut c, name, Some(&key)).await;
        for _ in 0..4 {
            assert_eq!(answer(&mut c, name, Some(&key)).await, first, "{key} moved");
        }
        on_canary += usize::from(first == 2);
    }
    assert!(
        (20..=60).contains(&on_canary),
        "{on_canary} of 200 users on the canary"
    );
    // A variant's name routes there.
    for _ in 0..20 {
        assert_eq!(answer(&mut c, name, Some("canary")).await, 2);
        assert_eq!(answer(&mut c, name, Some("stable")).await, 1);
    }
    // Per-variant metrics.
    for v in ["stable", "canary"] {
        assert_variant_series(&sb, name, v, "ok").await;
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_fails_or_sleeps_changes_neither_answers_nor_latency() {
    let name = "mirrored";
    let (sb, mut d, mut c) = two_versions(name).await;
    let f = fixture("logreg");
    let want = f.output_rows("probabilities", 0..2);
    async fn run(c: &mut Oip, name: &str, f: &crate::inference::Fixture, want: &[f64]) -> Duration {
        let mut took = vec![];
        for _ in 0..200 {
            let started = Instant::now();
            let r = c
                .model_infer(request(name, f, 0..2))
                .await
                .unwrap()
                .into_inner();
            took.push(started.elapsed());
            assert_eq!(r.model_version, "1", "the stable version answers");
            let i = r
                .outputs
                .iter()
                .position(|o| o.name == "probabilities")
                .unwrap();
            let got = crate::inference::f32s(&r.raw_output_contents[i]);
            assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5));
        }
        took.sort();
        took[took.len() / 2]
    }
    let before = run(&mut c, name, &f, &want).await;
    split(
        &mut d,
        name,
        dpb::Traffic {
            shadow: Some(dpb::Shadow {
                target: version(2),
                share: 1.0,
                fault: Some(dpb::Fault {
                    error_rate: 0.5,
                    delay_us: 50_000,
                }),
            }),
            ..Default::default()
        },
    )
    .await;
    let with_shadow = run(&mut c, name, &f, &want).await;
    assert!(
        with_shadow < before + Duration::from_millis(10),
        "p50 {before:?} without the shadow, {with_shadow:?} with one that sleeps 50 ms"
    );
    // The shadow did run, and half its answers failed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_variant_series(&sb, name, "shadow", "failed").await;
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_all_traffic_to_the_last_full_version_and_moves_the_alias_back() {
    let sb = sandbox(Bus::InProcess).await;
    let name = "rolled";
    upload(&sb, name, &fixture("logreg").onnx).await;
    upload(&sb, name, &fixture("linear_svm").onnx).await;
    set_alias(&sb, name, "champion", 1).await;
    let addr = sb.addresses("inference").api;
    let mut d = deployments(addr).await;
    let mut c = oip(addr).await;
    let mut events = sb
        .bus
        .subscribe_broadcast("it-rollback", &[topics::DEPLOYMENTS])
        .await
        .unwrap();
    d.deploy(dpb::DeployRequest {
        name: name.into(),
        target: follow("champion"),
        ..Default::default()
    })
    .await
    .unwrap();
    // Nothing served before version 1: nothing to roll back to.
    let err = d
        .rollback(dpb::RollbackRequest { name: name.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("nothing to roll back to"),
        "{}",
        err.message()
    );

    // Version 2 takes over through the alias; a rollback brings back version 1, and the
    // alias too, within a second.
    set_alias(&sb, name, "champion", 2).await;
    let dep = wait_for(&mut d, name, "version 2 serves", |dep| dep.version == 2).await;
    assert_eq!(dep.previous_version, 1);
    // A change of settings alone is no new version: the rollback still goes to 1.
    let dep = d
        .deploy(dpb::DeployRequest {
            name: name.into(),
            target: follow("champion"),
            parameters: [("max_batch_size".to_owned(), "16".to_owned())].into(),
        })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!((dep.version, dep.previous_version), (2, 1));
    let started = Instant::now();
    let dep = d
        .rollback(dpb::RollbackRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    let took = started.elapsed();
    assert_eq!(dep.version, 1);
    assert!(took < Duration::from_secs(1), "the rollback took {took:?}");
    assert_eq!(answer(&mut c, name, None).await, 1);
    assert_eq!(
        alias_version(&sb, name, "champion").await,
        1,
        "the alias moved back in the registry"
    );
    let rolled: ev::DeploymentRolledBack = next_event(&mut events, |_| true).await;
    assert_eq!(
        (rolled.from_versions.as_slice(), rolled.to_version),
        (&[2][..], 1)
    );
    assert_eq!(rolled.reason, "requested");
    eprintln!("rollback to 100% on the previous version took {took:?}");

    // With a canary, a rollback drops it: the stable version takes everything again.
    split(&mut d, name, canary(2, 50)).await;
    let dep = d
        .rollback(dpb::RollbackRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(dep.version, 1);
    assert!(dep.traffic.unwrap().variants.is_empty());
    assert_eq!(dep.variant_versions.len(), 1);
    for _ in 0..50 {
        assert_eq!(answer(&mut c, name, None).await, 1);
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_split_is_refused_and_changes_nothing() {
    let name = "guarded-split";
    let (sb, mut d, _) = two_versions(name).await;
    split(&mut d, name, canary(2, 10)).await;
    let cases: Vec<(&str, dpb::Traffic, Code, &str)> = vec![
        (
            name,
            dpb::Traffic {
                variants: vec![variant("a", 2, 70), variant("b", 1, 40)],
                ..Default::default()
            },
            Code::InvalidArgument,
            "add up to 110",
        ),
        (
            name,
            dpb::Traffic {
                variants: vec![variant("canary", 9, 10)],
                ..Default::default()
            },
            Code::NotFound,
            "variant \"canary\"",
        ),
        (
            name,
            dpb::Traffic {
                route_header: "bad header".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "route_header",
        ),
        (
            "nobody",
            dpb::Traffic::default(),
            Code::NotFound,
            "not deployed",
        ),
    ];
    for (model, traffic, code, needle) in cases {
        let err = d
            .set_traffic(dpb::SetTrafficRequest {
                name: model.into(),
                traffic: Some(traffic.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{traffic:?}: {err:?}");
        assert!(err.message().contains(needle), "{}", err.message());
    }
    let dep = describe(&mut d, name).await;
    let variants: HashMap<_, _> = dep.variant_versions.into_iter().collect();
    assert_eq!(
        variants,
        HashMap::from([("stable".into(), 1), ("canary".into(), 2)])
    );
    sb.stop().await.unwrap();
}
