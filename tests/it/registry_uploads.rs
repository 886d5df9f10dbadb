//! Versions from uploaded files, on SQLite and PostgreSQL: the signature read from an
//! ONNX upload, other formats kept without one, and bad uploads refused or failed with
//! their reason.

use mlops_proto::registry::v1 as rpb;
use mlops_tests::Database;
use tonic::Code;

use crate::registry::{get_version, model, registry_on, upload_msgs, CLASSIFIER, LINEAR};

crate::on_both_backends!(uploads);

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
    assert_eq!(
        v,
        get_version(&mut c, &name, 1).await,
        "the answer is what is stored"
    );
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
