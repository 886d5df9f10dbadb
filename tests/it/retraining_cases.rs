//! The closed loop's other cases: a worse candidate stopped by the gate (the champion
//! stays, the reasons recorded), a faulty canary rolled back by the analysis, a drift
//! delivered three times with the service restarted while its trainer runs (one retrain,
//! resumed, one promotion), and bad policies and requests refused with what to fix.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mlops_proto::inference::v1 as dpb;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::retraining::v1 as pb;
use mlops_tests::{Bus, Database};
use tonic::Code;

use crate::deployments::deployments;
use crate::retraining::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_candidate_fails_the_gate_and_the_champion_stays() {
    let model = "worse";
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let rt = retraining(&sb, rt_dir.path()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    // the next trainer shrinks its weights: a worse model on the same world
    let mut p = policy(model);
    p.trainer
        .as_mut()
        .unwrap()
        .parameters
        .insert("shrink".into(), "0.5".into());
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    let r = c
        .start_retrain(pb::StartRetrainRequest {
            model: model.into(),
            force: true,
            reason: "try a shrunk model".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .retrain
        .unwrap();
    assert_eq!(r.trigger, "manual");
    let r = finished(&mut c, model, &r.id).await;
    assert_eq!(r.state, "GATE_FAILED", "{:#?}", r.transitions);
    // the policy's parameter is the run's param
    let run = crate::get_run(&mut sb.tracking_client().await, &r.run_id).await;
    assert!(run
        .data
        .unwrap()
        .params
        .iter()
        .any(|p| p.key == "shrink" && p.value == "0.5"));
    assert!(r.reason.contains("rmse"), "{}", r.reason);
    assert!(
        r.candidate_metrics["rmse"] > r.champion_metrics["rmse"],
        "{r:#?}"
    );
    assert_eq!(champion(&sb, model).await, 1);
    let d = deployments(sb.addresses("inference").api)
        .await
        .get_deployment(dpb::GetDeploymentRequest { name: model.into() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(d.version, 1);
    assert!(d.traffic.unwrap_or_default().variants.is_empty());
    rt.stop().await;
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_errors_in_canary_is_rolled_back() {
    let model = "faulty";
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let rt = retraining(&sb, rt_dir.path()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    write_world(&sb.dir().join("features"), new_world);
    let mut p = policy(model);
    p.rollout.as_mut().unwrap().fault = Some(dpb::Fault {
        error_rate: 0.5,
        delay_us: 0,
    });
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    let (stop, traffic) = load(&sb, model);
    let r = c
        .start_retrain(pb::StartRetrainRequest {
            model: model.into(),
            force: true,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .retrain
        .unwrap();
    let r = finished(&mut c, model, &r.id).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(r.state, "ROLLED_BACK", "{:#?}", r.transitions);
    assert!(
        r.reason.contains("rolled the deployment back"),
        "{}",
        r.reason
    );
    assert!(r.transitions.iter().any(|t| t.state == "CANARY"));
    assert_eq!(champion(&sb, model).await, 1);
    rt.stop().await;
    sb.stop().await.unwrap();
}

async fn a_drift_delivered_three_times_with_the_service_restarted_midway_retrains_once(
    db: Database,
) {
    let model = "resumed";
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let url = mlops_tests::database_url(db).await;
    let rt = retraining_on(&sb, rt_dir.path(), url.clone()).await;
    let mut c = client(rt.addr).await;
    first_champion(&sb, &mut c, model).await;
    write_world(&sb.dir().join("features"), new_world);
    // the next trainer takes a second, so the service stops while it runs
    let mut p = policy(model);
    p.trainer.as_mut().unwrap().command =
        vec!["sh".into(), "-c".into(), format!("sleep 1; exec {TRAINER}")];
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    // the same event three times (a redelivery), then a second drift inside the cooldown
    let e = drift(model);
    for _ in 0..3 {
        sb.bus.publish(std::slice::from_ref(&e)).await.1.unwrap();
    }
    sb.bus.publish(&[drift(model)]).await.1.unwrap();
    let (stop, traffic) = load(&sb, model);
    // stopped once the retrain is under way (its trainer is killed with it), started again
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let all = retrains(&mut c, model).await;
        if let Some(r) = all
            .iter()
            .find(|r| r.trigger == "drift" && r.state == "TRAINING")
        {
            break r.id.clone();
        }
        assert!(Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    rt.stop().await;
    let rt = retraining_on(&sb, rt_dir.path(), url).await;
    let mut c = client(rt.addr).await;
    let r = finished(&mut c, model, &id).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(r.state, "PROMOTED", "{:#?}", r.transitions);
    // resumed: the trainer killed with the service ran again, on the same run
    assert_eq!(r.attempts, 2, "{r:#?}");
    let drifts: Vec<_> = retrains(&mut c, model)
        .await
        .into_iter()
        .filter(|r| r.trigger == "drift")
        .collect();
    assert_eq!(drifts.len(), 1, "{drifts:#?}");
    assert_eq!(champion(&sb, model).await, 2);
    // one version registered by the retrain, one promotion
    let versions = sb
        .registry_client()
        .await
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: format!("name = '{model}'"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions;
    assert_eq!(versions.len(), 2, "{versions:#?}");
    rt.stop().await;
    sb.stop().await.unwrap();
}

async fn bad_policies_and_requests_are_refused_with_what_to_fix(db: Database) {
    let sb = platform(Bus::InProcess).await;
    let rt_dir = tempfile::tempdir().unwrap();
    let url = mlops_tests::database_url(db).await;
    let rt = retraining_on(&sb, rt_dir.path(), url).await;
    let mut c = client(rt.addr).await;
    let mut p = policy("m");
    p.data.as_mut().unwrap().features = vec!["nocolon".into()];
    let e = c
        .set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("`nocolon` is not a feature reference"),
        "{}",
        e.message()
    );
    let mut p = policy("m");
    p.rollout
        .as_mut()
        .unwrap()
        .analysis
        .as_mut()
        .unwrap()
        .successes_to_promote = 0;
    let e = c
        .set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("successes_to_promote"),
        "{}",
        e.message()
    );
    let e = c
        .start_retrain(pb::StartRetrainRequest {
            model: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("no retraining policy"),
        "{}",
        e.message()
    );
    // a policy, then the cooldown holds a second manual retrain unless forced; its
    // trainer outlives its time limit
    let mut slow = policy("m");
    let trainer = slow.trainer.as_mut().unwrap();
    trainer.command = vec!["sleep".into(), "30".into()];
    trainer.timeout_seconds = 1;
    let stored = c
        .set_policy(pb::SetPolicyRequest {
            policy: Some(slow.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(stored.version, 1);
    let again = c
        .set_policy(pb::SetPolicyRequest { policy: Some(slow) })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(again.version, 2);
    let first = mlops_tests::houses::start_retrain(&mut c, "m").await;
    let e = c
        .start_retrain(pb::StartRetrainRequest {
            model: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("cooldown"), "{}", e.message());
    let e = c
        .start_retrain(pb::StartRetrainRequest {
            model: "m".into(),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("max_concurrent"), "{}", e.message());
    let r = finished(&mut c, "m", &first.id).await;
    assert_eq!(r.state, "FAILED", "{:#?}", r.transitions);
    assert!(
        r.reason
            .starts_with("training: the trainer ran longer than its timeout (1 s)"),
        "{}",
        r.reason
    );
    let e = c
        .get_retrain(pb::GetRetrainRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .delete_policy(pb::DeletePolicyRequest {
            model: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    rt.stop().await;
    sb.stop().await.unwrap();
}

crate::on_both_backends!(
    a_drift_delivered_three_times_with_the_service_restarted_midway_retrains_once,
    bad_policies_and_requests_are_refused_with_what_to_fix,
);
