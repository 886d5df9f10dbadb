//! The registry's aliases, stages, evaluation gate and events, on SQLite and PostgreSQL.

use mlops_proto::registry::v1 as rpb;
use mlops_tests::Database;
use tonic::Code;

use crate::registry::{
    evaluate, get_version, model, register, registry_on, source_run, threshold, upload_msgs,
};

crate::on_both_backends!(aliases_and_stages, evaluation_gate_and_alias_policy);

async fn aliases_and_stages(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (_, r) = source_run(&mut t).await;
    let name = model(&mut c, "alias").await;
    for _ in 0..3 {
        register(&mut c, &name, &r, "model").await.unwrap();
    }
    let set = |alias: &str, version: i64| rpb::SetRegisteredModelAliasRequest {
        name: name.clone(),
        alias: alias.into(),
        version,
    };
    let prev = c
        .set_registered_model_alias(set("champion", 1))
        .await
        .unwrap();
    assert_eq!(prev.into_inner().previous_version, 0);
    let resolve = |alias: &str| rpb::GetModelVersionByAliasRequest {
        name: name.clone(),
        alias: alias.into(),
    };
    let v = c
        .get_model_version_by_alias(resolve("champion"))
        .await
        .unwrap()
        .into_inner()
        .model_version
        .unwrap();
    assert_eq!(v.version, 1);
    assert_eq!(v.aliases, ["champion"]);
    let moved = c
        .set_registered_model_alias(set("champion", 2))
        .await
        .unwrap();
    assert_eq!(moved.into_inner().previous_version, 1);
    c.set_registered_model_alias(set("challenger", 3))
        .await
        .unwrap();
    let v = c
        .get_model_version_by_alias(resolve("champion"))
        .await
        .unwrap()
        .into_inner()
        .model_version
        .unwrap();
    assert_eq!(v.version, 2);
    assert!(get_version(&mut c, &name, 1).await.aliases.is_empty());
    let m = c
        .get_registered_model(rpb::GetRegisteredModelRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner()
        .registered_model
        .unwrap();
    let aliases: Vec<(&str, i64)> = m
        .aliases
        .iter()
        .map(|a| (a.alias.as_str(), a.version))
        .collect();
    assert_eq!(aliases, [("challenger", 3), ("champion", 2)]);

    for reserved in ["latest", "v1", "V7", "bad alias"] {
        let e = c
            .set_registered_model_alias(set(reserved, 1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{reserved}");
    }
    let e = c
        .set_registered_model_alias(set("x", 99))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .get_model_version_by_alias(resolve("nobody"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    c.delete_registered_model_alias(rpb::DeleteRegisteredModelAliasRequest {
        name: name.clone(),
        alias: "challenger".into(),
    })
    .await
    .unwrap();
    let e = c
        .get_model_version_by_alias(resolve("challenger"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // stages, with "archive existing versions"
    let to =
        |version: i64, stage: rpb::Stage, archive: bool| rpb::TransitionModelVersionStageRequest {
            name: name.clone(),
            version,
            stage: stage as i32,
            archive_existing_versions: archive,
        };
    c.transition_model_version_stage(to(1, rpb::Stage::Production, false))
        .await
        .unwrap();
    c.transition_model_version_stage(to(2, rpb::Stage::Production, false))
        .await
        .unwrap();
    let v3 = c
        .transition_model_version_stage(to(3, rpb::Stage::Production, true))
        .await
        .unwrap()
        .into_inner()
        .model_version
        .unwrap();
    assert_eq!(v3.current_stage, rpb::Stage::Production as i32);
    for v in [1, 2] {
        assert_eq!(
            get_version(&mut c, &name, v).await.current_stage,
            rpb::Stage::Archived as i32
        );
    }
    let latest = c
        .get_latest_versions(rpb::GetLatestVersionsRequest {
            name: name.clone(),
            stages: vec![rpb::Stage::Production as i32],
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions;
    assert_eq!(latest.iter().map(|v| v.version).collect::<Vec<_>>(), [3]);
    let e = c
        .transition_model_version_stage(to(1, rpb::Stage::Archived, true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .transition_model_version_stage(rpb::TransitionModelVersionStageRequest {
            name: name.clone(),
            version: 1,
            stage: 42,
            archive_existing_versions: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // deleting a version takes its aliases with it
    c.delete_model_version(rpb::DeleteModelVersionRequest {
        name: name.clone(),
        version: 2,
    })
    .await
    .unwrap();
    let e = c
        .get_model_version_by_alias(resolve("champion"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    sb.stop().await.unwrap();
}

async fn evaluation_gate_and_alias_policy(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (_, r) = source_run(&mut t).await;
    let name = model(&mut c, "gate").await;
    for _ in 0..3 {
        register(&mut c, &name, &r, "model").await.unwrap();
    }
    c.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
        name: name.clone(),
        alias: "champion".into(),
        version: 1,
    })
    .await
    .unwrap();
    // From now on, champion moves only after a passed gate.
    c.update_registered_model(rpb::UpdateRegisteredModelRequest {
        name: name.clone(),
        description: None,
        gate_policy: Some(rpb::GatePolicy {
            require_passed_gate: true,
            aliases: vec!["champion".into()],
        }),
    })
    .await
    .unwrap();
    evaluate(
        &mut c,
        &name,
        1,
        "holdout",
        &[("auc", 0.90), ("loss", 0.30)],
    )
    .await;
    evaluate(
        &mut c,
        &name,
        2,
        "holdout",
        &[("auc", 0.93), ("loss", 0.35)],
    )
    .await;

    let no_gate = c
        .set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
            name: name.clone(),
            alias: "champion".into(),
            version: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(no_gate.code(), Code::FailedPrecondition);
    assert!(no_gate.message().contains("gate"), "{}", no_gate.message());
    // aliases the policy does not cover move freely
    c.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
        name: name.clone(),
        alias: "shadow".into(),
        version: 2,
    })
    .await
    .unwrap();

    let validate = |thresholds: Vec<rpb::MetricThreshold>| rpb::ValidateCandidateRequest {
        name: name.clone(),
        candidate_version: 2,
        baseline: Some(rpb::validate_candidate_request::Baseline::BaselineAlias(
            "champion".into(),
        )),
        thresholds,
        dataset: String::new(),
    };
    let mut auc = threshold("auc", true);
    auc.min_absolute_change = Some(0.02);
    let mut loss = threshold("loss", false);
    loss.threshold = Some(0.32);
    let failed = c
        .validate_candidate(validate(vec![auc.clone(), loss.clone()]))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(!failed.passed);
    assert_eq!(failed.baseline_version, 1);
    assert_eq!(failed.baseline_alias, "champion");
    assert!(failed.metrics[0].passed, "{}", failed.metrics[0].reason);
    assert_eq!(failed.metrics[0].candidate_value, 0.93);
    assert_eq!(failed.metrics[0].baseline_value, Some(0.90));
    assert_eq!(failed.metrics[0].candidate_source, "evaluation:holdout");
    assert!(!failed.metrics[1].passed);
    assert!(
        failed.metrics[1]
            .reason
            .contains("above the threshold 0.32"),
        "{}",
        failed.metrics[1].reason
    );
    assert!(failed.summary.starts_with("failed"), "{}", failed.summary);
    let still = c
        .set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
            name: name.clone(),
            alias: "champion".into(),
            version: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(still.code(), Code::FailedPrecondition);
    assert!(still.message().contains("failed"), "{}", still.message());

    loss.threshold = Some(0.4);
    let passed = c
        .validate_candidate(validate(vec![auc.clone(), loss.clone()]))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(passed.passed, "{:?}", passed.metrics);
    let v2 = get_version(&mut c, &name, 2).await;
    assert_eq!(v2.last_gate.unwrap().id, passed.id);
    c.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
        name: name.clone(),
        alias: "champion".into(),
        version: 2,
    })
    .await
    .unwrap();
    let results = c
        .list_gate_results(rpb::ListGateResultsRequest {
            name: name.clone(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 2);
    assert!(results[0].passed && !results[1].passed, "newest first");

    // Without evaluations, the run's metrics at registration are used.
    let mut abs = threshold("auc", true);
    abs.threshold = Some(0.9);
    let from_run = c
        .validate_candidate(rpb::ValidateCandidateRequest {
            name: name.clone(),
            candidate_version: 3,
            baseline: None,
            thresholds: vec![abs],
            dataset: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(from_run.passed);
    assert_eq!(from_run.metrics[0].candidate_source, "run");
    assert_eq!(from_run.metrics[0].candidate_value, 0.91);

    // bad gates: a metric the version lacks, a comparison without a baseline,
    // an unknown baseline alias, an empty threshold list
    // (champion is now version 2, so version 3 is the candidate here)
    let v3 = |thresholds: Vec<rpb::MetricThreshold>| {
        let mut r = validate(thresholds);
        r.candidate_version = 3;
        r
    };
    let mut f1 = threshold("f1", true);
    f1.threshold = Some(0.5);
    let e = c.validate_candidate(v3(vec![f1])).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("no metric `f1`"), "{}", e.message());
    let mut no_base = v3(vec![auc.clone()]);
    no_base.baseline = None;
    let e = c.validate_candidate(no_base).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no baseline"), "{}", e.message());
    let mut unknown = v3(vec![auc.clone()]);
    unknown.baseline = Some(rpb::validate_candidate_request::Baseline::BaselineAlias(
        "nobody".into(),
    ));
    let e = c.validate_candidate(unknown).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.validate_candidate(v3(vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .validate_candidate(validate(vec![auc.clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "candidate = baseline");
    let e = c
        .log_evaluation(rpb::LogEvaluationRequest {
            name: name.clone(),
            version: 2,
            dataset: "holdout".into(),
            dataset_digest: String::new(),
            metrics: [("auc".to_string(), f64::NAN)].into_iter().collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let evals = c
        .list_evaluations(rpb::ListEvaluationsRequest {
            name: name.clone(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .evaluations;
    assert_eq!(evals.len(), 1);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_publishes_its_event_keyed_by_model_in_order() {
    use mlops_proto::events::v1 as ev;
    let (sb, mut t, mut c) = registry_on(Database::Sqlite).await;
    let mut sub = sb
        .bus
        .subscribe("registry-test", &[mlops_proto::events::topics::MODELS])
        .await
        .unwrap();
    let (_, r) = source_run(&mut t).await;
    let name = model(&mut c, "events").await;
    register(&mut c, &name, &r, "model").await.unwrap();
    c.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
        name: name.clone(),
        alias: "champion".into(),
        version: 1,
    })
    .await
    .unwrap();
    c.transition_model_version_stage(rpb::TransitionModelVersionStageRequest {
        name: name.clone(),
        version: 1,
        stage: rpb::Stage::Staging as i32,
        archive_existing_versions: false,
    })
    .await
    .unwrap();
    evaluate(&mut c, &name, 1, "holdout", &[("auc", 0.95)]).await;
    let mut th = threshold("auc", true);
    th.threshold = Some(0.99);
    c.validate_candidate(rpb::ValidateCandidateRequest {
        name: name.clone(),
        candidate_version: 1,
        baseline: None,
        thresholds: vec![th.clone()],
        dataset: "holdout".into(),
    })
    .await
    .unwrap();
    th.threshold = Some(0.9);
    c.validate_candidate(rpb::ValidateCandidateRequest {
        name: name.clone(),
        candidate_version: 1,
        baseline: None,
        thresholds: vec![th],
        dataset: "holdout".into(),
    })
    .await
    .unwrap();
    c.upload_model_version(futures::stream::iter(upload_msgs(&name, "m.onnx", b"junk")))
        .await
        .unwrap_err();
    c.delete_model_version(rpb::DeleteModelVersionRequest {
        name: name.clone(),
        version: 1,
    })
    .await
    .unwrap();

    let events = crate::events::take(&mut sub, 10, std::time::Duration::from_secs(10)).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.ce_type.trim_start_matches("mlops.events.v1."))
        .collect();
    assert_eq!(
        types,
        [
            "ModelVersionCreated",
            "ModelVersionReady",
            "AliasSet",
            "StageChanged",
            "GateFailed",
            "GatePassed",
            "ModelVersionCreated",
            "ModelVersionFailed",
            "AliasDeleted",
            "ModelVersionDeleted",
        ]
    );
    let model_id = events[0].key.clone();
    assert!(
        events.iter().all(|e| e.key == model_id),
        "keyed by model id"
    );
    let ready: ev::ModelVersionReady = events[1].decode().unwrap();
    assert_eq!(ready.version, 1);
    assert_eq!(ready.format, "onnx");
    assert_eq!(ready.model_file, "model.onnx");
    assert!(ready.storage_location.ends_with(&format!("/{model_id}/1")));
    let alias: ev::AliasSet = events[2].decode().unwrap();
    assert_eq!(
        (alias.alias.as_str(), alias.version, alias.previous_version),
        ("champion", 1, 0)
    );
    let stage: ev::StageChanged = events[3].decode().unwrap();
    assert_eq!(
        (stage.from_stage.as_str(), stage.to_stage.as_str()),
        ("None", "Staging")
    );
    let failed: ev::GateFailed = events[4].decode().unwrap();
    assert_eq!(failed.failed_metrics, ["auc"]);
    let reg_failed: ev::ModelVersionFailed = events[7].decode().unwrap();
    assert_eq!(reg_failed.version, 2);
    assert!(reg_failed.reason.contains("not a valid ONNX model"));
    assert_eq!(events[1].subject, format!("{name}/1"));
    sb.stop().await.unwrap();
}
