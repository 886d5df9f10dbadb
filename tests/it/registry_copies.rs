//! How a registration copies a run's files: small ones come with tracking's listing,
//! larger ones are downloaded, and a model may mix both; every file arrives byte for
//! byte, on SQLite and PostgreSQL.

use mlops_proto::registry::v1 as rpb;
use mlops_tests::Database;

use crate::registry::{download, model, put_artifact, register, registry_on, source_run, LINEAR};

crate::on_both_backends!(small_files_come_with_the_listing_large_ones_are_downloaded);

async fn small_files_come_with_the_listing_large_ones_are_downloaded(db: Database) {
    let (sb, mut t, mut c) = registry_on(db).await;
    let (_, r) = source_run(&mut t).await;
    // Over the 1 MiB a listing carries: downloaded, whether it is the first file or not.
    let weights: Vec<u8> = (0..(1u32 << 20) + 300_000)
        .map(|i| (i % 253) as u8)
        .collect();
    put_artifact(&mut t, &r, "big/model.onnx", LINEAR).await;
    put_artifact(&mut t, &r, "big/weights.bin", &weights).await;
    put_artifact(&mut t, &r, "first/a.bin", &weights).await;
    put_artifact(&mut t, &r, "first/model.onnx", LINEAR).await;
    // A small file beside a directory whose files are too many bytes to come along.
    put_artifact(&mut t, &r, "mixed/model.onnx", LINEAR).await;
    put_artifact(&mut t, &r, "mixed/sub/weights.bin", &weights).await;
    let name = model(&mut c, "copies").await;

    let small = register(&mut c, &name, &r, "model").await.unwrap();
    assert_eq!(small.status, rpb::ModelVersionStatus::Ready as i32);
    assert_eq!(
        download(&mut c, &name, small.version, "model.onnx")
            .await
            .unwrap(),
        LINEAR
    );
    assert_eq!(
        download(&mut c, &name, small.version, "MLmodel")
            .await
            .unwrap(),
        b"flavors:\n  onnx: {}\n"
    );
    for (path, files) in [
        ("big", ["model.onnx", "weights.bin"]),
        ("first", ["a.bin", "model.onnx"]),
        ("mixed", ["model.onnx", "sub/weights.bin"]),
    ] {
        let v = register(&mut c, &name, &r, path).await.unwrap();
        assert_eq!(v.status, rpb::ModelVersionStatus::Ready as i32, "{path}");
        assert_eq!(v.signature.unwrap().file, "model.onnx", "{path}");
        assert_eq!(
            v.size_bytes,
            (LINEAR.len() + weights.len()) as u64,
            "{path}"
        );
        for file in files {
            let want: &[u8] = if file.ends_with(".onnx") {
                LINEAR
            } else {
                &weights
            };
            assert!(
                download(&mut c, &name, v.version, file).await.unwrap() == want,
                "{path}/{file} differs"
            );
        }
    }
    sb.stop().await.unwrap();
}
