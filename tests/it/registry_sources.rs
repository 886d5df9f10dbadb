//! Versions whose files do not come from a tracking run here, on SQLite and PostgreSQL:
//! a reference to a source the registry does not read (recorded as given, READY, no
//! files, refused where files are needed), a copy of another registered version, and a
//! run's whole artifact root; `user_id` and `run_link` recorded as given; the bad inputs
//! of each create nothing.

use mlops_proto::registry::v1 as rpb;
use mlops_tests::Database;
use tonic::Code;

use crate::registry::{
    download, get_version, model, register, registry_on, source_run, Registry, LINEAR,
};

crate::on_both_backends!(
    a_reference_is_recorded_as_given_and_holds_no_files,
    a_copy_holds_the_same_files_under_a_new_version,
    a_runs_whole_artifact_root_registers,
);

async fn create(
    c: &mut Registry,
    req: rpb::CreateModelVersionRequest,
) -> Result<rpb::ModelVersion, tonic::Status> {
    c.create_model_version(req)
        .await
        .map(|r| r.into_inner().model_version.expect("a version"))
}

async fn a_reference_is_recorded_as_given_and_holds_no_files(db: Database) {
    let (sb, _t, mut c) = registry_on(db).await;
    let name = model(&mut c, "reference").await;
    let elsewhere = "0123456789abcdef0123456789abcdef";
    let v1 = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: name.clone(),
            source: "s3://training-jobs/fraud/2026-12-05/model".into(),
            run_id: elsewhere.into(),
            run_link: "https://ci.example.com/jobs/812".into(),
            user_id: "ana".into(),
            description: "written by the nightly job".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (v1.version, v1.status, v1.reference_only),
        (1, rpb::ModelVersionStatus::Ready as i32, true)
    );
    assert_eq!(v1.source, "s3://training-jobs/fraud/2026-12-05/model");
    assert_eq!(
        (
            v1.run_id.as_str(),
            v1.user_id.as_str(),
            v1.run_link.as_str()
        ),
        (elsewhere, "ana", "https://ci.example.com/jobs/812")
    );
    assert_eq!(v1.storage_location, "");
    assert_eq!(
        v1,
        get_version(&mut c, &name, 1).await,
        "the answer is what is stored"
    );

    // Its files are refused with the reason, not as missing.
    let listed = c
        .list_model_version_files(rpb::ListModelVersionFilesRequest {
            name: name.clone(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::FailedPrecondition);
    assert!(
        listed
            .message()
            .contains("is a reference to `s3://training-jobs/fraud/2026-12-05/model`"),
        "{}",
        listed.message()
    );
    let got = download(&mut c, &name, 1, "model.onnx").await.unwrap_err();
    assert_eq!(got.code(), Code::FailedPrecondition);

    // Bad inputs create nothing: the next version is still 2.
    for (req, why) in [
        (
            rpb::CreateModelVersionRequest {
                name: name.clone(),
                source: "x".repeat(4097),
                ..Default::default()
            },
            "at most 4096",
        ),
        (
            rpb::CreateModelVersionRequest {
                name: name.clone(),
                source: "s3://b/m".into(),
                artifact_path: "model".into(),
                ..Default::default()
            },
            "give one of",
        ),
        (
            rpb::CreateModelVersionRequest {
                name: name.clone(),
                source: "s3://b/m".into(),
                user_id: "a\nb".into(),
                ..Default::default()
            },
            "control characters",
        ),
    ] {
        let err = create(&mut c, req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(err.message().contains(why), "{}", err.message());
    }
    let missing_model = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: format!("{name}-nope"),
            source: "s3://b/m".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing_model.code(), Code::NotFound);
    let v2 = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: name.clone(),
            source: "relative/path/model".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((v2.version, v2.reference_only), (2, true));
    sb.stop().await.unwrap();
}

async fn a_copy_holds_the_same_files_under_a_new_version(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (_exp, r) = source_run(&mut t).await;
    let dev = model(&mut c, "dev.fraud").await;
    let prod = model(&mut c, "prod.fraud").await;
    let v1 = register(&mut c, &dev, &r, "model").await.unwrap();

    let copy = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: prod.clone(),
            copy_from_name: dev.clone(),
            copy_from_version: 1,
            description: "promoted".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (copy.version, copy.status, copy.reference_only),
        (1, rpb::ModelVersionStatus::Ready as i32, false)
    );
    assert_eq!(copy.source, format!("models:/{dev}/1"));
    assert_eq!(copy.run_id, r);
    assert_eq!(
        copy.signature, v1.signature,
        "the same bytes, the same signature"
    );
    let lineage = copy.lineage.clone().unwrap();
    assert_eq!(lineage.copied_from, format!("models:/{dev}/1"));
    assert_eq!(lineage.run_id, r);
    assert_ne!(copy.storage_location, v1.storage_location, "its own copy");
    assert_eq!(
        download(&mut c, &prod, 1, "model.onnx").await.unwrap(),
        LINEAR
    );
    assert_eq!(copy, get_version(&mut c, &prod, 1).await);

    // Deleting the source leaves the copy whole.
    c.delete_model_version(rpb::DeleteModelVersionRequest {
        name: dev.clone(),
        version: 1,
    })
    .await
    .unwrap();
    assert_eq!(
        download(&mut c, &prod, 1, "model.onnx").await.unwrap(),
        LINEAR
    );

    // A copy of a missing version creates nothing.
    let missing = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: prod.clone(),
            copy_from_name: dev.clone(),
            copy_from_version: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
    // A copy of a reference is a reference.
    let reference = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: dev.clone(),
            source: "s3://b/m".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let copied_ref = create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: prod.clone(),
            copy_from_name: dev.clone(),
            copy_from_version: reference.version,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((copied_ref.version, copied_ref.reference_only), (2, true));
    sb.stop().await.unwrap();
}

/// An empty path is the run's whole artifact root (MLflow's `runs:/<id>`, or the run's
/// artifact URI): its files are copied; a run with no files yet is recorded, not refused.
async fn a_runs_whole_artifact_root_registers(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (exp, r) = source_run(&mut t).await;
    let name = model(&mut c, "whole-root").await;
    let whole = register(&mut c, &name, &r, "").await.unwrap();
    assert_eq!(whole.source, format!("runs:/{r}"));
    assert_eq!(whole.status, rpb::ModelVersionStatus::Ready as i32);
    assert!(!whole.reference_only);
    assert_eq!(
        download(&mut c, &name, whole.version, "model/model.onnx")
            .await
            .unwrap(),
        LINEAR
    );
    let fresh = crate::run(&mut t, &exp).await;
    let empty = register(&mut c, &name, &fresh, "").await.unwrap();
    assert_eq!(empty.source, format!("runs:/{fresh}"));
    assert!(empty.reference_only, "{empty:?}");
    sb.stop().await.unwrap();
}

/// Loading a reference for serving is refused with the reason, through Triton's
/// RepositoryModelLoad (the inference service asks the registry like any client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_cannot_be_served() {
    let (sb, mut oip) = crate::inference::sandbox(|_| {}).await;
    let mut c = sb.registry_client().await;
    let name = model(&mut c, "served-reference").await;
    create(
        &mut c,
        rpb::CreateModelVersionRequest {
            name: name.clone(),
            source: "s3://elsewhere/model".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let err = crate::inference::load(&mut oip, &name, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message()
            .contains("is a reference to `s3://elsewhere/model`"),
        "{}",
        err.message()
    );
    sb.stop().await.unwrap();
}
