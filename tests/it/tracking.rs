//! The tracking service's API, the same suite on SQLite and on PostgreSQL:
//! experiments, runs, params, batches and metric history.

use mlops_proto::tracking::v1 as pb;
use mlops_tests::Database;
use tonic::Code;

use crate::{experiment, metric, param, run, tag, tracking_on};

crate::on_both_backends!(
    experiments_lifecycle,
    runs_lifecycle,
    params_are_immutable_and_batches_atomic,
    batch_limits_write_nothing,
    metric_history_and_latest,
);

async fn experiments_lifecycle(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let def = c
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(def.experiment.unwrap().name, "Default");

    let name = format!("exp-{}", uuid::Uuid::new_v4().simple());
    let id = c
        .create_experiment(pb::CreateExperimentRequest {
            name: name.clone(),
            tags: vec![tag("team", "fraud")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .experiment_id;
    let dup = c
        .create_experiment(pb::CreateExperimentRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert!(dup.message().contains(&name));
    let empty = c
        .create_experiment(pb::CreateExperimentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);

    let by_name = c
        .get_experiment_by_name(pb::GetExperimentByNameRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    let e = by_name.experiment.unwrap();
    assert_eq!(e.experiment_id, id);
    assert!(
        e.artifact_location.ends_with(&format!("/{id}")),
        "{}",
        e.artifact_location
    );
    assert_eq!(e.tags, vec![tag("team", "fraud")]);

    let renamed = format!("{name}-renamed");
    c.update_experiment(pb::UpdateExperimentRequest {
        experiment_id: id.clone(),
        new_name: renamed.clone(),
    })
    .await
    .unwrap();
    let taken = c
        .update_experiment(pb::UpdateExperimentRequest {
            experiment_id: id.clone(),
            new_name: "Default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    c.set_experiment_tag(pb::SetExperimentTagRequest {
        experiment_id: id.clone(),
        key: "stage".into(),
        value: "dev".into(),
    })
    .await
    .unwrap();
    c.delete_experiment_tag(pb::DeleteExperimentTagRequest {
        experiment_id: id.clone(),
        key: "team".into(),
    })
    .await
    .unwrap();
    let missing_tag = c
        .delete_experiment_tag(pb::DeleteExperimentTagRequest {
            experiment_id: id.clone(),
            key: "team".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing_tag.code(), Code::NotFound);

    let r = run(&mut c, &id).await;
    c.delete_experiment(pb::DeleteExperimentRequest {
        experiment_id: id.clone(),
    })
    .await
    .unwrap();
    let got = crate::get_run(&mut c, &r).await;
    assert_eq!(
        got.info.unwrap().lifecycle_stage,
        pb::LifecycleStage::Deleted as i32
    );
    let in_deleted = c
        .create_run(pb::CreateRunRequest {
            experiment_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(in_deleted.code(), Code::FailedPrecondition);
    let no_default = c
        .delete_experiment(pb::DeleteExperimentRequest {
            experiment_id: "0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_default.code(), Code::FailedPrecondition);

    // Search: the view types and a filter on name and tags.
    let search = |filter: &str, view: pb::ViewType| pb::SearchExperimentsRequest {
        filter: filter.into(),
        view_type: view as i32,
        ..Default::default()
    };
    let active = c
        .search_experiments(search(
            &format!("name = '{renamed}'"),
            pb::ViewType::ActiveOnly,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(active.experiments.is_empty());
    let deleted = c
        .search_experiments(search(
            &format!("name = '{renamed}'"),
            pb::ViewType::DeletedOnly,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.experiments.len(), 1);
    c.restore_experiment(pb::RestoreExperimentRequest {
        experiment_id: id.clone(),
    })
    .await
    .unwrap();
    let got = crate::get_run(&mut c, &r).await;
    assert_eq!(
        got.info.unwrap().lifecycle_stage,
        pb::LifecycleStage::Active as i32,
        "runs come back with their experiment"
    );
    let tagged = c
        .search_experiments(search(
            "tags.stage = 'dev' and name LIKE '%-renamed'",
            pb::ViewType::ActiveOnly,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.experiments.len(), 1);
    let bad = c
        .search_experiments(search("name LIKE", pb::ViewType::ActiveOnly))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("position"), "{}", bad.message());

    // Paging visits every experiment once.
    for _ in 0..5 {
        experiment(&mut c, "page").await;
    }
    let mut seen = vec![];
    let mut token = String::new();
    loop {
        let page = c
            .search_experiments(pb::SearchExperimentsRequest {
                max_results: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.experiments.len() <= 2);
        seen.extend(page.experiments.into_iter().map(|e| e.experiment_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len());
    assert_eq!(seen.len(), 7);
    sb.stop().await.unwrap();
}

async fn runs_lifecycle(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "runs").await;
    let parent = c
        .create_run(pb::CreateRunRequest {
            experiment_id: exp.clone(),
            run_name: "parent".into(),
            user_id: "ana".into(),
            start_time: Some(1_700_000_000_000),
            tags: vec![tag("team", "x")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let info = parent.info.clone().unwrap();
    assert_eq!(info.status, pb::RunStatus::Running as i32);
    assert_eq!(info.start_time, 1_700_000_000_000);
    assert!(info
        .artifact_uri
        .ends_with(&format!("/{exp}/{}/artifacts", info.run_id)));
    let tags = parent.data.unwrap().tags;
    assert!(tags.contains(&tag("mlflow.runName", "parent")) && tags.contains(&tag("team", "x")));

    let child = c
        .create_run(pb::CreateRunRequest {
            experiment_id: exp.clone(),
            parent_run_id: info.run_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let child_info = child.info.unwrap();
    assert_eq!(child_info.parent_run_id, info.run_id);
    assert!(!child_info.run_name.is_empty(), "a name is generated");
    assert!(child
        .data
        .unwrap()
        .tags
        .contains(&tag("mlflow.parentRunId", &info.run_id)));

    // A parent in another experiment is linked too, as MLflow nests it.
    let other = experiment(&mut c, "other").await;
    let cross = c
        .create_run(pb::CreateRunRequest {
            experiment_id: other,
            parent_run_id: info.run_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(cross.info.unwrap().parent_run_id, info.run_id);
    let orphan = c
        .create_run(pb::CreateRunRequest {
            parent_run_id: "0".repeat(32),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(orphan.code(), Code::NotFound);
    let missing_exp = c
        .create_run(pb::CreateRunRequest {
            experiment_id: "999999".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing_exp.code(), Code::NotFound);

    // MLflow's run name tag in a batch names the run in the same call; an over-long
    // one writes nothing of the batch.
    c.log_batch(pb::LogBatchRequest {
        run_id: info.run_id.clone(),
        tags: vec![tag("mlflow.runName", "from-a-batch")],
        ..Default::default()
    })
    .await
    .unwrap();
    let named = crate::get_run(&mut c, &info.run_id).await.info.unwrap();
    assert_eq!(named.run_name, "from-a-batch");
    let long = c
        .log_batch(pb::LogBatchRequest {
            run_id: info.run_id.clone(),
            tags: vec![
                tag("written", "no"),
                tag("mlflow.runName", &"x".repeat(251)),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument, "{}", long.message());
    let after = crate::get_run(&mut c, &info.run_id).await;
    assert_eq!(after.info.unwrap().run_name, "from-a-batch");
    assert!(!after.data.unwrap().tags.iter().any(|t| t.key == "written"));

    let done = c
        .update_run(pb::UpdateRunRequest {
            run_id: info.run_id.clone(),
            status: pb::RunStatus::Finished as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_info
        .unwrap();
    assert_eq!(done.status, pb::RunStatus::Finished as i32);
    assert!(done.end_time.unwrap() > 0);
    let renamed = c
        .update_run(pb::UpdateRunRequest {
            run_id: info.run_id.clone(),
            run_name: "renamed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_info
        .unwrap();
    assert_eq!(
        (renamed.run_name.as_str(), renamed.status),
        ("renamed", pb::RunStatus::Finished as i32)
    );

    assert_eq!(
        c.get_run(pb::GetRunRequest {
            run_id: "nope".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );
    let unknown = c
        .get_run(pb::GetRunRequest {
            run_id: "0".repeat(32),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    c.delete_run(pb::DeleteRunRequest {
        run_id: child_info.run_id.clone(),
    })
    .await
    .unwrap();
    let write_deleted = c
        .log_metric(pb::LogMetricRequest {
            run_id: child_info.run_id.clone(),
            metric: Some(metric("m", 1.0, 0)),
        })
        .await
        .unwrap_err();
    assert_eq!(write_deleted.code(), Code::FailedPrecondition);
    c.restore_run(pb::RestoreRunRequest {
        run_id: child_info.run_id.clone(),
    })
    .await
    .unwrap();
    let again = c
        .restore_run(pb::RestoreRunRequest {
            run_id: child_info.run_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    c.log_metric(pb::LogMetricRequest {
        run_id: child_info.run_id.clone(),
        metric: Some(metric("m", 1.0, 0)),
    })
    .await
    .unwrap();
    c.set_tag(pb::SetTagRequest {
        run_id: child_info.run_id.clone(),
        tag: Some(tag("k", "v")),
    })
    .await
    .unwrap();
    c.delete_tag(pb::DeleteTagRequest {
        run_id: child_info.run_id.clone(),
        key: "k".into(),
    })
    .await
    .unwrap();
    let gone = c
        .delete_tag(pb::DeleteTagRequest {
            run_id: child_info.run_id.clone(),
            key: "k".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    sb.stop().await.unwrap();
}

async fn params_are_immutable_and_batches_atomic(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "params").await;
    let r = run(&mut c, &exp).await;
    c.log_param(pb::LogParamRequest {
        run_id: r.clone(),
        param: Some(param("lr", "0.1")),
    })
    .await
    .unwrap();
    c.log_param(pb::LogParamRequest {
        run_id: r.clone(),
        param: Some(param("lr", "0.1")),
    })
    .await
    .unwrap();
    let changed = c
        .log_param(pb::LogParamRequest {
            run_id: r.clone(),
            param: Some(param("lr", "0.2")),
        })
        .await
        .unwrap_err();
    assert_eq!(changed.code(), Code::InvalidArgument);
    assert!(
        changed.message().contains("`0.1`") && changed.message().contains("`0.2`"),
        "{}",
        changed.message()
    );

    // A batch that changes a param writes nothing: not its metrics, tags or other params.
    let rejected = c
        .log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics: vec![metric("loss", 0.5, 0)],
            params: vec![param("depth", "3"), param("lr", "0.3")],
            tags: vec![tag("note", "x")],
        })
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), Code::InvalidArgument);
    let data = crate::get_run(&mut c, &r).await.data.unwrap();
    assert_eq!(data.params, vec![param("lr", "0.1")]);
    assert!(data.metrics.is_empty());
    assert!(!data.tags.iter().any(|t| t.key == "note"));
    let history = c
        .get_metric_history(pb::GetMetricHistoryRequest {
            run_id: r.clone(),
            metric_key: "loss".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(history.values.is_empty());
    let long = c
        .log_param(pb::LogParamRequest {
            run_id: r.clone(),
            param: Some(param("big", &"x".repeat(6001))),
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(long.message().contains("6000"));
    sb.stop().await.unwrap();
}

async fn batch_limits_write_nothing(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "limits").await;
    let r = run(&mut c, &exp).await;
    let too_many = c
        .log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics: (0..1001).map(|i| metric("m", i as f64, i)).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("1000"));
    let bad_key = c
        .log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics: vec![metric("ok", 1.0, 0), metric("../etc", 1.0, 0)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_key.code(), Code::InvalidArgument);
    let data = crate::get_run(&mut c, &r).await.data.unwrap();
    assert!(data.metrics.is_empty());
    let full = c
        .log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics: (0..1000).map(|i| metric("m", i as f64, i)).collect(),
            ..Default::default()
        })
        .await;
    assert!(full.is_ok(), "exactly the limit is accepted");
    sb.stop().await.unwrap();
}

async fn metric_history_and_latest(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "history").await;
    let r = run(&mut c, &exp).await;
    for b in 0..3 {
        let metrics = (0..1000)
            .map(|i| metric("loss", (b * 1000 + i) as f64 / 10.0, b * 1000 + i))
            .collect();
        c.log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    c.log_metric(pb::LogMetricRequest {
        run_id: r.clone(),
        metric: Some(metric("loss", 1.0, 5)),
    })
    .await
    .unwrap();
    c.log_metric(pb::LogMetricRequest {
        run_id: r.clone(),
        metric: Some(metric("nan", f64::NAN, 0)),
    })
    .await
    .unwrap();

    let mut steps = vec![];
    let mut values = vec![];
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .get_metric_history(pb::GetMetricHistoryRequest {
                run_id: r.clone(),
                metric_key: "loss".into(),
                max_results: 700,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.values.len() <= 700);
        assert_eq!(page.steps.len(), page.values.len());
        assert_eq!(page.timestamps.len(), page.values.len());
        steps.extend(page.steps);
        values.extend(page.values);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 5);
    assert_eq!(steps.len(), 3001);
    assert_eq!(
        &steps[..3000],
        &(0..3000).collect::<Vec<i64>>()[..],
        "logging order"
    );
    assert_eq!(steps[3000], 5);
    assert_eq!(values[2999], 299.9);

    let data = crate::get_run(&mut c, &r).await.data.unwrap();
    let loss = data.metrics.iter().find(|m| m.key == "loss").unwrap();
    assert_eq!(
        (loss.step, loss.value),
        (2999, 299.9),
        "latest is the highest step, not the last logged"
    );
    assert!(data
        .metrics
        .iter()
        .find(|m| m.key == "nan")
        .unwrap()
        .value
        .is_nan());
    let unknown = c
        .get_metric_history(pb::GetMetricHistoryRequest {
            run_id: "f".repeat(32),
            metric_key: "loss".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_token = c
        .get_metric_history(pb::GetMetricHistoryRequest {
            run_id: r.clone(),
            metric_key: "loss".into(),
            page_token: "zz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    sb.stop().await.unwrap();
}
