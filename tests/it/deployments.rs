//! Deployments over real gRPC with the registry and the bus: an alias move in the registry
//! hot swaps every replica under steady load with no failed request and no answer mixing
//! versions; a version that cannot load keeps the old one serving and says why (status,
//! event, metric); Triton's load by name follows `champion`; a deleted model is undeployed;
//! bad calls get clear statuses. The same swap test runs on tansu in `kafka`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_inference::Inference;
use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::inference::v1 as dpb;
use mlops_proto::inference::v1::deployment_service_client::DeploymentServiceClient;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::triton as pb;
use mlops_tests::{http_get, Bus, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

use crate::inference::{f32s, fixture, model_with_op, oip, request, upload, Fixture};

pub(crate) type Deployments = DeploymentServiceClient<Channel>;

pub(crate) async fn deployments(addr: std::net::SocketAddr) -> Deployments {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the inference service accepts connections");
    DeploymentServiceClient::new(channel)
}

pub(crate) async fn sandbox(bus: Bus) -> Sandbox {
    Sandbox::builder()
        .bus(bus)
        .registry()
        .service::<Inference>(|_| {})
        .start()
        .await
        .expect("sandbox starts")
}

pub(crate) async fn set_alias(sb: &Sandbox, name: &str, alias: &str, version: i64) {
    sb.registry_client()
        .await
        .set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
            name: name.into(),
            alias: alias.into(),
            version,
        })
        .await
        .expect("set alias");
}

pub(crate) fn follow(alias: &str) -> Option<dpb::Target> {
    Some(dpb::Target {
        choice: Some(dpb::target::Choice::Alias(alias.into())),
    })
}

pub(crate) async fn describe(d: &mut Deployments, name: &str) -> dpb::Deployment {
    d.get_deployment(dpb::GetDeploymentRequest { name: name.into() })
        .await
        .expect("get deployment")
        .into_inner()
        .deployment
        .unwrap()
}

/// Waits until `name` on `d` satisfies `done`, for at most 30 s; returns it.
pub(crate) async fn wait_for(
    d: &mut Deployments,
    name: &str,
    what: &str,
    done: impl Fn(&dpb::Deployment) -> bool,
) -> dpb::Deployment {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dep = describe(d, name).await;
        if done(&dep) {
            return dep;
        }
        assert!(Instant::now() < deadline, "{what}: still {dep:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Requests without pause on `c` until `stop`, checking that every answer's outputs are
/// those of the version it names (v1: `fixtures[0]`, v2: `fixtures[1]`). Counts answers
/// per version and failures.
fn steady_load(
    mut c: crate::inference::Oip,
    name: &'static str,
    fixtures: Arc<[Fixture; 2]>,
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 3]>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut failures = vec![];
        while !stop.load(Ordering::Relaxed) {
            match c.model_infer(request(name, &fixtures[0], 0..2)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let v: usize = r.model_version.parse().expect("a version number");
                    let i = r.outputs.iter().position(|o| o.name == "probabilities");
                    let got = f32s(&r.raw_output_contents[i.expect("probabilities")]);
                    let want = fixtures[v - 1].output_rows("probabilities", 0..2);
                    if got.iter().zip(&want).any(|(g, w)| (g - w).abs() > 1e-5) {
                        failures.push(format!("version {v} answered {got:?}, not {want:?}"));
                    }
                    counts[v].fetch_add(1, Ordering::Relaxed);
                }
                Err(s) => failures.push(format!("{:?}: {}", s.code(), s.message())),
            }
        }
        failures
    })
}

/// Two replicas follow `champion`; `moves` alias moves between version 1 (logreg) and 2
/// (a linear SVM) under steady load on both: every move reaches both, no request fails,
/// and every answer is its version's. Prints the time from a move to both serving it.
pub(crate) async fn alias_moves_swap_every_replica_under_load(bus: Bus, moves: usize) {
    let sb = sandbox(bus).await;
    let name = "swapped";
    let fixtures = Arc::new([fixture("logreg"), fixture("linear_svm")]);
    assert_eq!(upload(&sb, name, &fixtures[0].onnx).await, 1);
    assert_eq!(upload(&sb, name, &fixtures[1].onnx).await, 2);
    set_alias(&sb, name, "champion", 1).await;
    let state = tempfile::tempdir().unwrap();
    let replica = sb
        .inference_replica(state.path(), None, |_| {})
        .await
        .unwrap();
    let addr_b = replica.api;
    let addr_a = sb.addresses("inference").api;
    let (mut a, mut b) = (deployments(addr_a).await, deployments(addr_b).await);
    for d in [&mut a, &mut b] {
        let dep = d
            .deploy(dpb::DeployRequest {
                name: name.into(),
                target: follow("champion"),
                ..Default::default()
            })
            .await
            .expect("deploy")
            .into_inner()
            .deployment
            .unwrap();
        assert_eq!((dep.state.as_str(), dep.version), ("READY", 1));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut load = vec![];
    for addr in [addr_a, addr_a, addr_b, addr_b] {
        let c = oip(addr).await;
        load.push(steady_load(
            c,
            name,
            fixtures.clone(),
            stop.clone(),
            counts.clone(),
        ));
    }
    let mut took = vec![];
    for i in 0..moves {
        let v = if i % 2 == 0 { 2 } else { 1 };
        let moved = Instant::now();
        set_alias(&sb, name, "champion", v).await;
        for d in [&mut a, &mut b] {
            wait_for(d, name, "the alias move reaches the replica", |dep| {
                dep.version == v
            })
            .await;
        }
        took.push(moved.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = vec![];
    for l in load {
        failures.extend(l.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let (v1, v2) = (
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
    );
    assert!(v1 > 0 && v2 > 0, "answers by version: {v1} and {v2}");
    took.sort();
    eprintln!(
        "{bus:?}: {moves} alias moves under load, {} answers ({v1} v1, {v2} v2), none failed; \
         move to both replicas serving: p50 {:?}, max {:?}",
        v1 + v2,
        took[took.len() / 2],
        took[took.len() - 1]
    );
    // Both replicas said so in events, each with its own replica name.
    for d in [&mut a, &mut b] {
        let dep = describe(d, name).await;
        assert_eq!(dep.state, "READY");
        assert!(
            dep.reason.is_empty() && dep.recent_errors.is_empty(),
            "{dep:?}"
        );
    }
    replica.stop().await.unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_moves_swap_every_replica_under_load_with_no_failed_request() {
    alias_moves_swap_every_replica_under_load(Bus::InProcess, 100).await;
}

/// The version `alias` of `name` points at in the registry.
pub(crate) async fn alias_version(sb: &Sandbox, name: &str, alias: &str) -> i64 {
    sb.registry_client()
        .await
        .get_model_version_by_alias(rpb::GetModelVersionByAliasRequest {
            name: name.into(),
            alias: alias.into(),
        })
        .await
        .expect("the alias resolves")
        .into_inner()
        .model_version
        .unwrap()
        .version
}

/// Asserts that the admin port shows `name`'s series of `variant` with `outcome`.
pub(crate) async fn assert_variant_series(sb: &Sandbox, name: &str, variant: &str, outcome: &str) {
    let (_, metrics) = http_get(sb.addresses("inference").admin, "/metrics")
        .await
        .unwrap();
    let series = format!(
        "mlops_inference_variant_requests_total{{model=\"{name}\",outcome=\"{outcome}\",variant=\"{variant}\"}}"
    );
    assert!(metrics.contains(&series), "missing {series}");
}

/// Waits for the next event of type `M` on `sub` whose `pick` is true, for at most 30 s.
pub(crate) async fn next_event<M: prost::Name + prost::Message + Default>(
    sub: &mut Box<dyn mlops_events::Subscription>,
    pick: impl Fn(&M) -> bool,
) -> M {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no {} event", M::full_name()))
            .expect("the bus delivers");
        if let Ok(m) = d.envelope.decode::<M>() {
            if pick(&m) {
                return m;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_cannot_load_keeps_the_old_one_serving_and_says_why() {
    let sb = sandbox(Bus::InProcess).await;
    let name = "guarded";
    let good = fixture("logreg");
    assert_eq!(upload(&sb, name, &good.onnx).await, 1);
    set_alias(&sb, name, "champion", 1).await;
    let addr = sb.addresses("inference");
    let mut c = oip(addr.api).await;
    let mut d = deployments(addr.api).await;
    let mut events = sb
        .bus
        .subscribe_broadcast("it-deployments", &[topics::DEPLOYMENTS])
        .await
        .unwrap();
    // Triton's load by name alone is a deployment that follows champion.
    c.repository_model_load(pb::RepositoryModelLoadRequest {
        model_name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dep = describe(&mut d, name).await;
    assert_eq!((dep.state.as_str(), dep.version), ("READY", 1));
    assert_eq!(
        dep.target.unwrap().choice,
        None,
        "champion, else the latest"
    );
    let swapped: ev::DeploymentSwapped = next_event(&mut events, |_| true).await;
    assert_eq!((swapped.version, swapped.previous_version), (1, 0));
    assert_eq!(swapped.cause, "deploy");

    // Version 2 registers (its signature reads) but has an operator we do not run.
    assert_eq!(
        upload(&sb, name, &model_with_op("TfIdfVectorizer")).await,
        2
    );
    set_alias(&sb, name, "champion", 2).await;
    let failed: ev::DeploymentSwapFailed = next_event(&mut events, |_| true).await;
    assert_eq!((failed.version, failed.serving_version), (2, 1));
    assert_eq!(failed.cause, "alias_set");
    assert!(
        failed.reason.contains("TfIdfVectorizer"),
        "{}",
        failed.reason
    );
    let dep = describe(&mut d, name).await;
    assert_eq!((dep.state.as_str(), dep.version), ("READY", 1));
    assert!(
        dep.reason.contains("version 1 keeps serving") && dep.reason.contains("TfIdfVectorizer"),
        "{}",
        dep.reason
    );
    assert_eq!(dep.recent_errors.len(), 1);
    assert_eq!(dep.recent_errors[0].version, 2);
    let r = c
        .model_infer(request(name, &good, 0..2))
        .await
        .expect("version 1 still answers")
        .into_inner();
    assert_eq!(r.model_version, "1");
    let (_, metrics) = http_get(addr.admin, "/metrics").await.unwrap();
    let line =
        format!("mlops_inference_deployment_swaps_total{{model=\"{name}\",outcome=\"failed\"}} 1");
    assert!(metrics.contains(&line), "missing {line} in\n{metrics}");

    // A good version 3 swaps in; the failure is no longer the reason.
    let better = fixture("linear_svm");
    assert_eq!(upload(&sb, name, &better.onnx).await, 3);
    set_alias(&sb, name, "champion", 3).await;
    let swapped: ev::DeploymentSwapped = next_event(&mut events, |_| true).await;
    assert_eq!((swapped.version, swapped.previous_version), (3, 1));
    let dep = wait_for(&mut d, name, "version 3 serves", |dep| dep.version == 3).await;
    assert!(dep.reason.is_empty(), "{}", dep.reason);
    // Moving the alias to the version already served changes nothing.
    set_alias(&sb, name, "champion", 3).await;

    // Deleting the model in the registry undeploys it.
    sb.registry_client()
        .await
        .delete_registered_model(rpb::DeleteRegisteredModelRequest { name: name.into() })
        .await
        .unwrap();
    let removed: ev::DeploymentRemoved = next_event(&mut events, |_| true).await;
    assert_eq!(
        (removed.version, removed.cause.as_str()),
        (3, "model_deleted")
    );
    let err = d
        .get_deployment(dpb::GetDeploymentRequest { name: name.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c.model_infer(request(name, &good, 0..1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deployment_calls_get_clear_statuses() {
    let sb = sandbox(Bus::InProcess).await;
    let f = fixture("logreg");
    upload(&sb, "known", &f.onnx).await;
    let mut d = deployments(sb.addresses("inference").api).await;
    let deploy =
        |name: &str, target: Option<dpb::Target>, params: &[(&str, &str)]| dpb::DeployRequest {
            name: name.into(),
            target,
            parameters: params
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        };
    let version = |v| {
        Some(dpb::Target {
            choice: Some(dpb::target::Choice::Version(v)),
        })
    };
    let cases = [
        (
            deploy("", None, &[]),
            Code::InvalidArgument,
            "name is required",
        ),
        (
            deploy("known", version(0), &[]),
            Code::InvalidArgument,
            "at least 1",
        ),
        (
            deploy("known", follow(""), &[]),
            Code::InvalidArgument,
            "alias is empty",
        ),
        (
            deploy("known", None, &[("version", "1")]),
            Code::InvalidArgument,
            "target",
        ),
        (
            deploy("known", None, &[("colour", "red")]),
            Code::InvalidArgument,
            "unknown load parameter",
        ),
        (
            deploy("known", None, &[("max_batch_size", "many")]),
            Code::InvalidArgument,
            "max_batch_size",
        ),
        (deploy("nobody", None, &[]), Code::NotFound, "nobody"),
        (deploy("known", version(9), &[]), Code::NotFound, "9"),
        (
            deploy("known", follow("missing"), &[]),
            Code::NotFound,
            "missing",
        ),
    ];
    for (req, code, needle) in cases {
        let err = d.deploy(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert!(err.message().contains(needle), "{req:?}: {}", err.message());
    }
    let listed = d
        .list_deployments(dpb::ListDeploymentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.deployments.is_empty(),
        "nothing half-made: {listed:?}"
    );
    let err = d
        .undeploy(dpb::UndeployRequest {
            name: "known".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A pinned version ignores alias moves.
    d.deploy(deploy("known", version(1), &[("max_batch_size", "8")]))
        .await
        .unwrap();
    upload(&sb, "known", &fixture("linear_svm").onnx).await;
    set_alias(&sb, "known", "champion", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = d
        .list_deployments(dpb::ListDeploymentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.deployments.len(), 1);
    let dep = &listed.deployments[0];
    assert_eq!((dep.name.as_str(), dep.version), ("known", 1));
    assert_eq!(dep.parameters["max_batch_size"], "8");
    d.undeploy(dpb::UndeployRequest {
        name: "known".into(),
    })
    .await
    .unwrap();
    sb.stop().await.unwrap();
}

/// Replicas sharing a PostgreSQL database converge: a replica started later rebuilds the
/// deployments from the shared tables and the registry (the alias moved while it was not
/// there), traffic split included, and both then follow the next alias move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_rebuild_deployments_and_converge() {
    let url = mlops_tests::fresh_postgres_database()
        .await
        .expect("a fresh database");
    let first_url = url.clone();
    let sb = Sandbox::builder()
        .registry()
        .service::<Inference>(move |c| c.db.database_url = first_url)
        .start()
        .await
        .expect("sandbox starts");
    let name = "shared";
    upload(&sb, name, &fixture("logreg").onnx).await;
    upload(&sb, name, &fixture("linear_svm").onnx).await;
    upload(&sb, name, &fixture("logreg").onnx).await;
    set_alias(&sb, name, "champion", 1).await;
    let mut a = deployments(sb.addresses("inference").api).await;
    a.deploy(dpb::DeployRequest {
        name: name.into(),
        target: follow("champion"),
        ..Default::default()
    })
    .await
    .unwrap();
    a.set_traffic(dpb::SetTrafficRequest {
        name: name.into(),
        traffic: Some(dpb::Traffic {
            variants: vec![dpb::Variant {
                name: "canary".into(),
                target: Some(dpb::Target {
                    choice: Some(dpb::target::Choice::Version(2)),
                }),
                weight: 10,
                fault: None,
            }],
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    // The alias moves before the second replica exists.
    set_alias(&sb, name, "champion", 3).await;
    wait_for(&mut a, name, "the first replica swaps", |d| d.version == 3).await;

    let state = tempfile::tempdir().unwrap();
    let replica = sb
        .inference_replica(state.path(), Some(url), |_| {})
        .await
        .unwrap();
    let addr_b = replica.api;
    let mut b = deployments(addr_b).await;
    let dep = wait_for(&mut b, name, "the second replica rebuilds", |d| {
        d.version == 3 && d.variant_versions.get("canary") == Some(&2)
    })
    .await;
    assert_eq!(dep.target, follow("champion"));
    assert_eq!(dep.traffic.unwrap().variants[0].weight, 10);
    // Both follow the next move.
    set_alias(&sb, name, "champion", 1).await;
    for d in [&mut a, &mut b] {
        wait_for(d, name, "both replicas swap", |d| d.version == 1).await;
    }
    replica.stop().await.unwrap();
    sb.stop().await.unwrap();
}

/// A rename in the registry does not orphan a deployment: it is keyed by the model's id, so
/// the next alias move (under the new name) still reaches it, and it serves under the new
/// name from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_model_keeps_its_deployment() {
    let sb = sandbox(Bus::InProcess).await;
    upload(&sb, "before", &fixture("logreg").onnx).await;
    upload(&sb, "before", &fixture("linear_svm").onnx).await;
    set_alias(&sb, "before", "champion", 1).await;
    let addr = sb.addresses("inference").api;
    let mut d = deployments(addr).await;
    d.deploy(dpb::DeployRequest {
        name: "before".into(),
        target: follow("champion"),
        ..Default::default()
    })
    .await
    .unwrap();
    sb.registry_client()
        .await
        .rename_registered_model(rpb::RenameRegisteredModelRequest {
            name: "before".into(),
            new_name: "after".into(),
        })
        .await
        .unwrap();
    set_alias(&sb, "after", "champion", 2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let dep = loop {
        let found = d
            .get_deployment(dpb::GetDeploymentRequest {
                name: "after".into(),
            })
            .await;
        match found.map(|r| r.into_inner().deployment.unwrap()) {
            Ok(dep) if dep.version == 2 => break dep,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(dep.name, "after");
    let listed = d
        .list_deployments(dpb::ListDeploymentsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["after"], "no deployment is left under the old name");
    let mut c = oip(addr).await;
    let r = c
        .model_infer(request("after", &fixture("logreg"), 0..1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.model_name.as_str(), r.model_version.as_str()),
        ("after", "2")
    );
    sb.stop().await.unwrap();
}
