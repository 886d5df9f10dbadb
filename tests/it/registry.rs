//! The model registry over gRPC, on SQLite and PostgreSQL: models, versions from a
//! run's artifact and from uploads, lineage, ONNX signatures, aliases, stages, the
//! evaluation gate, and the bad inputs of each.

use std::collections::HashMap;

use mlops_proto::registry::v1 as rpb;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::tracking::v1 as pb;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

use crate::{experiment, metric, param, run, Client};

pub type Registry = RegistryServiceClient<Channel>;

pub const LINEAR: &[u8] = include_bytes!("../fixtures/onnx/linear.onnx");
pub const CLASSIFIER: &[u8] = include_bytes!("../fixtures/onnx/classifier.onnx");

/// A sandbox with tracking and the registry on `db`.
pub async fn registry_on(db: Database) -> (Sandbox, Client, Registry) {
    let sb = Sandbox::builder()
        .database(db)
        .registry()
        .start()
        .await
        .expect("sandbox starts");
    let t = sb.tracking_client().await;
    let r = sb.registry_client().await;
    (sb, t, r)
}

/// Uploads `bytes` as `path` in run `run_id`.
pub async fn put_artifact(t: &mut Client, run_id: &str, path: &str, bytes: &[u8]) {
    let mut msgs = vec![pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Header(
            pb::ArtifactHeader {
                run_id: run_id.into(),
                path: path.into(),
                ..Default::default()
            },
        )),
    }];
    for c in bytes.chunks(64 * 1024) {
        msgs.push(pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Chunk(c.to_vec())),
        });
    }
    t.upload_artifact(futures::stream::iter(msgs))
        .await
        .expect("upload artifact");
}

/// A finished run with metrics, params, a dataset and `model/` holding the linear
/// ONNX model and an MLmodel file.
pub async fn source_run(t: &mut Client) -> (String, String) {
    let exp = experiment(t, "registry").await;
    let r = run(t, &exp).await;
    t.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![metric("auc", 0.91, 1), metric("loss", 0.3, 1)],
        params: vec![param("lr", "0.01")],
        tags: vec![],
    })
    .await
    .unwrap();
    t.log_inputs(pb::LogInputsRequest {
        run_id: r.clone(),
        datasets: vec![pb::DatasetInput {
            dataset: Some(pb::Dataset {
                name: "transactions".into(),
                digest: "abc123".into(),
                source_type: "local".into(),
                source: "{\"uri\": \"data/tx.parquet\"}".into(),
                ..Default::default()
            }),
            context: "training".into(),
            tags: vec![],
        }],
    })
    .await
    .unwrap();
    put_artifact(t, &r, "model/model.onnx", LINEAR).await;
    put_artifact(t, &r, "model/MLmodel", b"flavors:\n  onnx: {}\n").await;
    (exp, r)
}

/// Creates a model with a unique name.
pub async fn model(c: &mut Registry, prefix: &str) -> String {
    let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    c.create_registered_model(rpb::CreateRegisteredModelRequest {
        name: name.clone(),
        ..Default::default()
    })
    .await
    .expect("create model");
    name
}

/// Registers `path` of `run_id` as a new version of `name`.
pub async fn register(
    c: &mut Registry,
    name: &str,
    run_id: &str,
    path: &str,
) -> Result<rpb::ModelVersion, tonic::Status> {
    c.create_model_version(rpb::CreateModelVersionRequest {
        name: name.into(),
        run_id: run_id.into(),
        artifact_path: path.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().model_version.expect("a version"))
}

async fn get_version(c: &mut Registry, name: &str, version: i64) -> rpb::ModelVersion {
    c.get_model_version(rpb::GetModelVersionRequest {
        name: name.into(),
        version,
    })
    .await
    .expect("get version")
    .into_inner()
    .model_version
    .expect("a version")
}

async fn versions_of(c: &mut Registry, name: &str) -> Vec<rpb::ModelVersion> {
    c.search_model_versions(rpb::SearchModelVersionsRequest {
        filter: format!("name = '{name}'"),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .model_versions
}

fn upload_msgs(name: &str, file: &str, bytes: &[u8]) -> Vec<rpb::UploadModelVersionRequest> {
    let mut msgs = vec![rpb::UploadModelVersionRequest {
        item: Some(rpb::upload_model_version_request::Item::Header(
            rpb::UploadHeader {
                name: name.into(),
                file_name: file.into(),
                ..Default::default()
            },
        )),
    }];
    for c in bytes.chunks(100) {
        msgs.push(rpb::UploadModelVersionRequest {
            item: Some(rpb::upload_model_version_request::Item::Chunk(c.to_vec())),
        });
    }
    msgs
}

async fn evaluate(c: &mut Registry, name: &str, version: i64, dataset: &str, m: &[(&str, f64)]) {
    c.log_evaluation(rpb::LogEvaluationRequest {
        name: name.into(),
        version,
        dataset: dataset.into(),
        dataset_digest: String::new(),
        metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    })
    .await
    .expect("log evaluation");
}

fn threshold(metric: &str, gib: bool) -> rpb::MetricThreshold {
    rpb::MetricThreshold {
        metric: metric.into(),
        greater_is_better: gib,
        ..Default::default()
    }
}

crate::on_both_backends!(
    models_lifecycle_and_search,
    register_from_a_run_with_lineage_and_signature,
    bad_registrations_create_nothing_half_done,
    uploads,
    aliases_and_stages,
    evaluation_gate_and_alias_policy,
);

async fn models_lifecycle_and_search(db: Database) {
    let (sb, _t, mut c) = registry_on(db).await;
    let prefix = format!("m{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let name = format!("{prefix}-fraud");
    let created = c
        .create_registered_model(rpb::CreateRegisteredModelRequest {
            name: name.clone(),
            description: "fraud detector".into(),
            tags: vec![rpb::Tag {
                key: "team".into(),
                value: "risk".into(),
            }],
            gate_policy: None,
        })
        .await
        .unwrap()
        .into_inner()
        .registered_model
        .unwrap();
    assert_eq!(created.name, name);
    assert_eq!(created.id.len(), 32);
    assert_eq!(created.tags.len(), 1);
    let dup = c
        .create_registered_model(rpb::CreateRegisteredModelRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert!(
        dup.message().contains("already exists"),
        "{}",
        dup.message()
    );
    for bad in ["", "a/b"] {
        let e = c
            .create_registered_model(rpb::CreateRegisteredModelRequest {
                name: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
    }

    // rename keeps the id; the old name is gone
    let other = format!("{prefix}-churn");
    c.create_registered_model(rpb::CreateRegisteredModelRequest {
        name: other.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let taken = c
        .rename_registered_model(rpb::RenameRegisteredModelRequest {
            name: name.clone(),
            new_name: other.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let renamed_name = format!("{prefix}-fraud2");
    let renamed = c
        .rename_registered_model(rpb::RenameRegisteredModelRequest {
            name: name.clone(),
            new_name: renamed_name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registered_model
        .unwrap();
    assert_eq!(renamed.id, created.id);
    let gone = c
        .get_registered_model(rpb::GetRegisteredModelRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    let updated = c
        .update_registered_model(rpb::UpdateRegisteredModelRequest {
            name: renamed_name.clone(),
            description: Some("v2 detector".into()),
            gate_policy: None,
        })
        .await
        .unwrap()
        .into_inner()
        .registered_model
        .unwrap();
    assert_eq!(updated.description, "v2 detector");
    c.set_registered_model_tag(rpb::SetRegisteredModelTagRequest {
        name: renamed_name.clone(),
        key: "tier".into(),
        value: "gold".into(),
    })
    .await
    .unwrap();
    let no_tag = c
        .delete_registered_model_tag(rpb::DeleteRegisteredModelTagRequest {
            name: renamed_name.clone(),
            key: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_tag.code(), Code::NotFound);

    // search: LIKE on name, tags, paging, bad filters
    for i in 0..5 {
        c.create_registered_model(rpb::CreateRegisteredModelRequest {
            name: format!("{prefix}-bulk-{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let search = |filter: String, max: i32, token: String| rpb::SearchRegisteredModelsRequest {
        filter,
        max_results: max,
        order_by: vec![],
        page_token: token,
    };
    let all = c
        .search_registered_models(search(format!("name LIKE '{prefix}-%'"), 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.registered_models.len(), 7);
    let tagged = c
        .search_registered_models(search(
            format!("name LIKE '{prefix}-%' AND tags.tier = 'gold'"),
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.registered_models.len(), 1);
    assert_eq!(tagged.registered_models[0].name, renamed_name);
    let mut names = vec![];
    let mut token = String::new();
    loop {
        let page = c
            .search_registered_models(search(format!("name LIKE '{prefix}-bulk%'"), 2, token))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.registered_models.into_iter().map(|m| m.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names.len(), 5);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ordered by name");
    let bad = c
        .search_registered_models(search("metrics.auc > 1".into(), 0, String::new()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("attributes and tags only"),
        "{}",
        bad.message()
    );

    c.delete_registered_model(rpb::DeleteRegisteredModelRequest {
        name: renamed_name.clone(),
    })
    .await
    .unwrap();
    let gone = c
        .get_registered_model(rpb::GetRegisteredModelRequest { name: renamed_name })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    sb.stop().await.unwrap();
}

async fn register_from_a_run_with_lineage_and_signature(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (exp, r) = source_run(&mut t).await;
    let name = model(&mut c, "lineage").await;

    let v1 = register(&mut c, &name, &r, "model").await.unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.status, rpb::ModelVersionStatus::Ready as i32);
    assert_eq!(v1.source, format!("runs:/{r}/model"));
    assert_eq!(v1.run_id, r);
    let lineage = v1.lineage.clone().unwrap();
    assert_eq!(lineage.experiment_id, exp);
    assert_eq!(lineage.artifact_path, "model");
    assert_eq!(lineage.datasets.len(), 1);
    assert_eq!(lineage.datasets[0].name, "transactions");
    assert_eq!(lineage.datasets[0].context, "training");
    let metrics: HashMap<String, f64> = lineage
        .metrics
        .iter()
        .map(|m| (m.key.clone(), m.value))
        .collect();
    assert_eq!(metrics["auc"], 0.91);
    assert_eq!(lineage.params[0].key, "lr");
    let sig = v1.signature.clone().unwrap();
    assert_eq!(sig.format, "onnx");
    assert_eq!(sig.file, "model.onnx");
    assert_eq!(sig.inputs.len(), 1);
    assert_eq!(sig.inputs[0].name, "x");
    assert_eq!(sig.inputs[0].elem_type, "float");
    let dims = &sig.inputs[0].shape.as_ref().unwrap().dims;
    assert_eq!(dims[0].value, Some(rpb::dim::Value::Symbol("N".into())));
    assert_eq!(dims[1].value, Some(rpb::dim::Value::Size(4)));
    assert_eq!(sig.outputs[0].name, "y");
    assert_eq!(v1.size_bytes, LINEAR.len() as u64 + 20);

    // the registry keeps its own copy of the files
    let files = c
        .list_model_version_files(rpb::ListModelVersionFilesRequest {
            name: name.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let paths: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["MLmodel", "model.onnx"]);
    assert!(files.storage_location.starts_with("file://"));
    let mut stream = c
        .download_model_version_file(rpb::DownloadModelVersionFileRequest {
            name: name.clone(),
            version: 1,
            path: "model.onnx".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = vec![];
    while let Some(m) = stream.message().await.unwrap() {
        got.extend(m.chunk);
    }
    assert_eq!(got, LINEAR);

    // a single file works too; numbers grow and are never reused
    let v2 = register(&mut c, &name, &r, "model/model.onnx")
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.signature.unwrap().file, "model.onnx");
    c.delete_model_version(rpb::DeleteModelVersionRequest {
        name: name.clone(),
        version: 2,
    })
    .await
    .unwrap();
    let v3 = register(&mut c, &name, &r, "model").await.unwrap();
    assert_eq!(v3.version, 3);
    let e = c
        .get_model_version(rpb::GetModelVersionRequest {
            name: name.clone(),
            version: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // search by run id, tags and version number
    c.set_model_version_tag(rpb::SetModelVersionTagRequest {
        name: name.clone(),
        version: 3,
        key: "validated".into(),
        value: "yes".into(),
    })
    .await
    .unwrap();
    let by_run = c
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: format!("run_id = '{r}'"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions;
    assert_eq!(
        by_run.iter().map(|v| v.version).collect::<Vec<_>>(),
        [3, 1],
        "newest first"
    );
    let tagged = c
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: format!("name = '{name}' AND tags.validated = 'yes'"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions;
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].tags[0].key, "validated");
    let newer = c
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: format!("name = '{name}' AND version_number > 1"),
            order_by: vec!["version_number ASC".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions;
    assert_eq!(newer.iter().map(|v| v.version).collect::<Vec<_>>(), [3]);
    sb.stop().await.unwrap();
}

async fn bad_registrations_create_nothing_half_done(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (exp, r) = source_run(&mut t).await;
    let name = model(&mut c, "bad").await;

    let unknown_model = register(&mut c, "no-such-model", &r, "model")
        .await
        .unwrap_err();
    assert_eq!(unknown_model.code(), Code::NotFound);
    assert!(unknown_model.message().contains("no-such-model"));
    let unknown_run = register(&mut c, &name, &"0".repeat(32), "model")
        .await
        .unwrap_err();
    assert_eq!(unknown_run.code(), Code::NotFound);
    assert!(
        unknown_run.message().contains("not found"),
        "{}",
        unknown_run.message()
    );
    let bad_run = register(&mut c, &name, "not-a-run", "model")
        .await
        .unwrap_err();
    assert_eq!(bad_run.code(), Code::InvalidArgument);
    let missing = register(&mut c, &name, &r, "nothing/here")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("nothing/here"),
        "{}",
        missing.message()
    );
    for path in ["../escape", "/etc/passwd", ""] {
        let e = register(&mut c, &name, &r, path).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{path:?}");
    }
    assert!(
        versions_of(&mut c, &name).await.is_empty(),
        "none of these created a version"
    );

    // a corrupt ONNX file: the version fails registration with the reason
    let r2 = run(&mut t, &exp).await;
    put_artifact(
        &mut t,
        &r2,
        "broken/model.onnx",
        b"this is not a protobuf model",
    )
    .await;
    let corrupt = register(&mut c, &name, &r2, "broken").await.unwrap_err();
    assert_eq!(corrupt.code(), Code::InvalidArgument);
    assert!(
        corrupt.message().contains("not a valid ONNX model")
            && corrupt.message().contains("FAILED_REGISTRATION"),
        "{}",
        corrupt.message()
    );
    let failed = get_version(&mut c, &name, 1).await;
    assert_eq!(
        failed.status,
        rpb::ModelVersionStatus::FailedRegistration as i32
    );
    assert!(failed.status_message.contains("not a valid ONNX model"));
    assert!(failed.signature.is_none());
    let no_files = c
        .list_model_version_files(rpb::ListModelVersionFilesRequest {
            name: name.clone(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(no_files.code(), Code::FailedPrecondition);
    let alias = c
        .set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
            name: name.clone(),
            alias: "champion".into(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(alias.code(), Code::FailedPrecondition);
    assert!(alias.message().contains("READY"), "{}", alias.message());
    // the next good registration takes the next number
    let ok = register(&mut c, &name, &r, "model").await.unwrap();
    assert_eq!(ok.version, 2);

    // a deleted run is refused
    t.delete_run(pb::DeleteRunRequest { run_id: r2.clone() })
        .await
        .unwrap();
    let deleted = register(&mut c, &name, &r2, "broken").await.unwrap_err();
    assert_eq!(deleted.code(), Code::FailedPrecondition);
    assert_eq!(versions_of(&mut c, &name).await.len(), 2);
    sb.stop().await.unwrap();
}

async fn uploads(db: Database) {
    let (sb, _t, mut c) = registry_on(db).await;
    let name = model(&mut c, "upload").await;
    let v = c
        .upload_model_version(futures::stream::iter(upload_msgs(
            &name,
            "model.onnx",
            CLASSIFIER,
        )))
        .await
        .unwrap()
        .into_inner()
        .model_version
        .unwrap();
    assert_eq!(v.version, 1);
    assert_eq!(v.source, "upload:model.onnx");
    let sig = v.signature.unwrap();
    let inputs: Vec<(&str, &str)> = sig
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.elem_type.as_str()))
        .collect();
    assert_eq!(inputs, [("features", "float"), ("bias", "float")]);
    let outputs: Vec<(&str, &str)> = sig
        .outputs
        .iter()
        .map(|i| (i.name.as_str(), i.elem_type.as_str()))
        .collect();
    assert_eq!(outputs, [("score", "float"), ("label", "int64")]);

    // a file of another format has no signature, and is still a model
    let pkl = c
        .upload_model_version(futures::stream::iter(upload_msgs(
            &name,
            "model.pkl",
            b"\x80\x04pickled",
        )))
        .await
        .unwrap()
        .into_inner()
        .model_version
        .unwrap();
    assert_eq!(pkl.status, rpb::ModelVersionStatus::Ready as i32);
    assert!(pkl.signature.is_none());

    // bad uploads
    let no_header = c
        .upload_model_version(futures::stream::iter(vec![
            rpb::UploadModelVersionRequest {
                item: Some(rpb::upload_model_version_request::Item::Chunk(vec![1, 2])),
            },
        ]))
        .await
        .unwrap_err();
    assert_eq!(no_header.code(), Code::InvalidArgument);
    let dir = c
        .upload_model_version(futures::stream::iter(upload_msgs(
            &name, "a/b.onnx", LINEAR,
        )))
        .await
        .unwrap_err();
    assert_eq!(dir.code(), Code::InvalidArgument);
    let unknown = c
        .upload_model_version(futures::stream::iter(upload_msgs("nope", "m.onnx", LINEAR)))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let truncated = c
        .upload_model_version(futures::stream::iter(upload_msgs(
            &name,
            "model.onnx",
            &CLASSIFIER[..CLASSIFIER.len() / 2],
        )))
        .await
        .unwrap_err();
    assert_eq!(truncated.code(), Code::InvalidArgument);
    assert!(
        truncated.message().contains("version 3"),
        "{}",
        truncated.message()
    );
    assert_eq!(
        get_version(&mut c, &name, 3).await.status,
        rpb::ModelVersionStatus::FailedRegistration as i32
    );
    sb.stop().await.unwrap();
}

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
        .subscribe("registry-test", &[mlops_registry::MODELS_TOPIC])
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
