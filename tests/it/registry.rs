//! The model registry over gRPC, on SQLite and PostgreSQL: models, versions from a
//! run's artifact, lineage, ONNX signatures, and the bad inputs of each (versions from
//! uploaded files are in `registry_uploads`; aliases, stages, the gate and events in
//! `registry_gate`).

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
        models: vec![],
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

pub async fn get_version(c: &mut Registry, name: &str, version: i64) -> rpb::ModelVersion {
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

/// The bytes of file `path` of a version.
pub async fn download(
    c: &mut Registry,
    name: &str,
    version: i64,
    path: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = c
        .download_model_version_file(rpb::DownloadModelVersionFileRequest {
            name: name.into(),
            version,
            path: path.into(),
        })
        .await?
        .into_inner();
    let mut got = vec![];
    while let Some(m) = stream.message().await? {
        got.extend(m.chunk);
    }
    Ok(got)
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

pub fn upload_msgs(name: &str, file: &str, bytes: &[u8]) -> Vec<rpb::UploadModelVersionRequest> {
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

pub async fn evaluate(
    c: &mut Registry,
    name: &str,
    version: i64,
    dataset: &str,
    m: &[(&str, f64)],
) {
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

pub fn threshold(metric: &str, gib: bool) -> rpb::MetricThreshold {
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
    assert_eq!(
        v1,
        get_version(&mut c, &name, 1).await,
        "the answer is what is stored"
    );
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
    assert_eq!(
        download(&mut c, &name, 1, "model.onnx").await.unwrap(),
        LINEAR
    );

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
    for path in ["../escape", "/etc/passwd", "a//b"] {
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
