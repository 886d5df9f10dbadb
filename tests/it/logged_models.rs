//! Logged models (MLflow 3's LoggedModel) in tracking, and registering one in the
//! registry, on SQLite and PostgreSQL.

use mlops_proto::registry::v1 as rpb;
use mlops_proto::tracking::v1 as pb;
use mlops_tests::Database;
use tonic::Code;

use crate::registry::{model, registry_on, LINEAR};
use crate::{experiment, run, Client};

async fn put(t: &mut Client, model_id: &str, path: &str, bytes: &[u8]) {
    let msgs = vec![
        pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Header(
                pb::ArtifactHeader {
                    run_id: String::new(),
                    path: path.into(),
                    logged_model_id: model_id.into(),
                },
            )),
        },
        pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Chunk(bytes.to_vec())),
        },
    ];
    t.upload_artifact(futures::stream::iter(msgs))
        .await
        .expect("upload to a logged model");
}

crate::on_both_backends!(logged_models_in_tracking_and_the_registry);

async fn logged_models_in_tracking_and_the_registry(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let exp = experiment(&mut t, "logged").await;
    let r = run(&mut t, &exp).await;
    let created = t
        .create_logged_model(pb::CreateLoggedModelRequest {
            experiment_id: exp.clone(),
            name: "clf".into(),
            model_type: "sklearn".into(),
            source_run_id: r.clone(),
            params: vec![pb::Param {
                key: "alpha".into(),
                value: "0.1".into(),
            }],
            tags: vec![pb::Tag {
                key: "team".into(),
                value: "risk".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    let id = created.model_id.clone();
    assert!(id.starts_with("m-") && id.len() == 34, "{id}");
    // A source run of another system is recorded as given, as MLflow records it; one
    // of ours must exist.
    let elsewhere = t
        .create_logged_model(pb::CreateLoggedModelRequest {
            experiment_id: exp.clone(),
            source_run_id: "123".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(elsewhere.source_run_id, "123");
    let missing = t
        .create_logged_model(pb::CreateLoggedModelRequest {
            experiment_id: exp.clone(),
            source_run_id: "0".repeat(32),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
    assert_eq!(
        created.status,
        pb::LoggedModelStatus::LoggedModelPending as i32
    );
    assert!(
        created
            .artifact_uri
            .ends_with(&format!("/{exp}/models/{id}/artifacts")),
        "{}",
        created.artifact_uri
    );
    assert_eq!(created.params[0].key, "alpha");
    assert_eq!(created.tags[0].value, "risk");

    put(&mut t, &id, "MLmodel", b"flavors: {}\n").await;
    put(&mut t, &id, "model.onnx", LINEAR).await;
    let listed = t
        .list_artifacts(pb::ListArtifactsRequest {
            run_id: String::new(),
            path: String::new(),
            logged_model_id: id.clone(),
            inline_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.files.len(), 2);
    let both = t
        .list_artifacts(pb::ListArtifactsRequest {
            run_id: r.clone(),
            path: String::new(),
            logged_model_id: id.clone(),
            inline_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);

    let ready = t
        .finalize_logged_model(pb::FinalizeLoggedModelRequest {
            model_id: id.clone(),
            status: pb::LoggedModelStatus::LoggedModelReady as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(ready.status, pb::LoggedModelStatus::LoggedModelReady as i32);
    let bad = t
        .finalize_logged_model(pb::FinalizeLoggedModelRequest {
            model_id: id.clone(),
            status: pb::LoggedModelStatus::LoggedModelPending as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    t.set_logged_model_tags(pb::SetLoggedModelTagsRequest {
        model_id: id.clone(),
        tags: vec![pb::Tag {
            key: "stage".into(),
            value: "candidate".into(),
        }],
    })
    .await
    .unwrap();
    t.log_outputs(pb::LogOutputsRequest {
        run_id: r.clone(),
        models: vec![pb::ModelOutput {
            model_id: id.clone(),
            step: 3,
        }],
    })
    .await
    .unwrap();
    let got = crate::get_run(&mut t, &r).await;
    let produced = [pb::ModelOutput {
        model_id: id.clone(),
        step: 3,
    }];
    assert_eq!(got.outputs.unwrap().model_outputs, produced);
    // A run that used the model as an input (MLflow 3's `log_inputs(models=...)`).
    t.log_inputs(pb::LogInputsRequest {
        run_id: r.clone(),
        datasets: vec![],
        models: vec![pb::ModelInput {
            model_id: id.clone(),
        }],
    })
    .await
    .unwrap();
    let used = crate::get_run(&mut t, &r)
        .await
        .inputs
        .unwrap()
        .model_inputs;
    assert_eq!(
        used,
        [pb::ModelInput {
            model_id: id.clone()
        }]
    );
    for (bad, code) in [
        (format!("m-{}", "0".repeat(32)), Code::NotFound),
        ("m-nope".to_owned(), Code::InvalidArgument),
    ] {
        let err = t
            .log_inputs(pb::LogInputsRequest {
                run_id: r.clone(),
                datasets: vec![],
                models: vec![pb::ModelInput { model_id: bad }],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
    }
    // A search answers them too, as MLflow's does.
    let searched = t
        .search_runs(pb::SearchRunsRequest {
            experiment_ids: vec![exp.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    let run = searched
        .iter()
        .find(|x| x.info.as_ref().unwrap().run_id == r)
        .unwrap();
    assert_eq!(
        run.outputs.clone().unwrap_or_default().model_outputs,
        produced
    );
    assert_eq!(
        run.inputs.clone().unwrap_or_default().model_inputs,
        [pb::ModelInput {
            model_id: id.clone()
        }]
    );
    let found = t
        .search_logged_models(pb::SearchLoggedModelsRequest {
            experiment_ids: vec![exp.clone()],
            source_run_id: r.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].tags.len(), 2);
    for bad in ["nope", "m-123"] {
        let e = t
            .get_logged_model(pb::GetLoggedModelRequest {
                model_id: bad.into(),
                allow_deleted: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
    }
    let e = t
        .get_logged_model(pb::GetLoggedModelRequest {
            model_id: format!("m-{}", "0".repeat(32)),
            allow_deleted: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = t
        .create_logged_model(pb::CreateLoggedModelRequest {
            experiment_id: "999999".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Points logged with the model's id go with the model; a point the run already
    // has is not added to its history twice (MLflow's client re-logs a run's points
    // with the model's id when it logs the model).
    let point = |value: f64, step: i64, model: &str| pb::Metric {
        key: "acc".into(),
        value,
        timestamp: 1_700_000_000_000 + step,
        step,
        model_id: model.into(),
        ..Default::default()
    };
    t.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![point(0.8, 0, ""), point(0.9, 1, "")],
        ..Default::default()
    })
    .await
    .unwrap();
    t.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![point(0.8, 0, &id), point(0.95, 2, &id)],
        ..Default::default()
    })
    .await
    .unwrap();
    let h = t
        .get_metric_history(pb::GetMetricHistoryRequest {
            run_id: r.clone(),
            metric_key: "acc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.steps, [0, 1, 2], "the re-logged point is not doubled");
    let m = t
        .get_logged_model(pb::GetLoggedModelRequest {
            model_id: id.clone(),
            allow_deleted: false,
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    let steps: Vec<i64> = m.metrics.iter().map(|p| p.step).collect();
    assert_eq!(steps, [0, 2]);
    assert!(
        m.metrics.iter().all(|p| p.run_id == r),
        "each point names the run that logged it: {:?}",
        m.metrics
    );
    let unknown = t
        .log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics: vec![point(0.5, 3, &format!("m-{}", "0".repeat(32)))],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // MLflow's `datasets` clause: models with a metric computed on one of them.
    t.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![pb::Metric {
            dataset_name: "eval".into(),
            dataset_digest: "d1".into(),
            ..point(0.7, 4, &id)
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let on = |filters: &[(&str, &str)]| pb::SearchLoggedModelsRequest {
        experiment_ids: vec![exp.clone()],
        datasets: filters
            .iter()
            .map(|(name, digest)| pb::LoggedModelDatasetFilter {
                dataset_name: (*name).into(),
                dataset_digest: (*digest).into(),
            })
            .collect(),
        ..Default::default()
    };
    for (filters, hits) in [
        (vec![("eval", "d1")], 1),
        (vec![("eval", "")], 1),
        (vec![("eval", "d2")], 0),
        (vec![("train", ""), ("eval", "d1")], 1),
        (vec![("train", "")], 0),
    ] {
        let found = t
            .search_logged_models(on(&filters))
            .await
            .unwrap()
            .into_inner()
            .models;
        assert_eq!(found.len(), hits, "{filters:?}");
        assert!(found.iter().all(|m| m.model_id == id));
    }
    let nameless = t.search_logged_models(on(&[("", "d1")])).await.unwrap_err();
    assert_eq!(nameless.code(), Code::InvalidArgument);
    assert!(
        nameless.message().contains("`dataset_name`"),
        "{}",
        nameless.message()
    );

    // The registry registers the logged model's whole root, with the run as lineage.
    let name = model(&mut c, "from-logged").await;
    let v = c
        .create_model_version(rpb::CreateModelVersionRequest {
            name: name.clone(),
            logged_model_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_version
        .unwrap();
    assert_eq!(v.status, rpb::ModelVersionStatus::Ready as i32);
    assert_eq!(v.source, format!("models:/{id}"));
    assert_eq!(v.run_id, r);
    let lineage = v.lineage.unwrap();
    assert_eq!(lineage.logged_model_id, id);
    assert_eq!(lineage.experiment_id, exp);
    assert_eq!(v.signature.unwrap().file, "model.onnx");
    assert_eq!(v.size_bytes, LINEAR.len() as u64 + 12);
    let both = c
        .create_model_version(rpb::CreateModelVersionRequest {
            name: name.clone(),
            logged_model_id: id.clone(),
            artifact_path: "model".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    let unknown = c
        .create_model_version(rpb::CreateModelVersionRequest {
            name: name.clone(),
            logged_model_id: format!("m-{}", "0".repeat(32)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    t.delete_logged_model(pb::DeleteLoggedModelRequest {
        model_id: id.clone(),
    })
    .await
    .unwrap();
    let gone = t
        .get_logged_model(pb::GetLoggedModelRequest {
            model_id: id.clone(),
            allow_deleted: false,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let still = t
        .get_logged_model(pb::GetLoggedModelRequest {
            model_id: id.clone(),
            allow_deleted: true,
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(still.lifecycle_stage, pb::LifecycleStage::Deleted as i32);
    sb.stop().await.unwrap();
}
