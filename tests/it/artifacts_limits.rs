//! Artifact uploads at the edges: names a filesystem cannot hold or the store
//! reserves, a size limit, staging files that never land under a run, messages
//! that never reveal where the server keeps its files, and experiment locations
//! that would escape the artifact root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlops_proto::tracking::v1 as pb;
use mlops_tests::{Database, Sandbox};
use tonic::Code;

use crate::{experiment, run, Client};

fn header(run_id: &str, path: &str) -> pb::UploadArtifactRequest {
    pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Header(
            pb::ArtifactHeader {
                run_id: run_id.into(),
                path: path.into(),
                ..Default::default()
            },
        )),
    }
}

fn chunk(bytes: Vec<u8>) -> pb::UploadArtifactRequest {
    pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Chunk(bytes)),
    }
}

async fn upload(
    c: &mut Client,
    run_id: &str,
    path: &str,
    bytes: Vec<u8>,
) -> Result<u64, tonic::Status> {
    let msgs = vec![header(run_id, path), chunk(bytes)];
    c.upload_artifact(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner().file_size)
}

async fn list(c: &mut Client, run_id: &str) -> Vec<String> {
    c.list_artifacts(pb::ListArtifactsRequest {
        run_id: run_id.into(),
        ..Default::default()
    })
    .await
    .expect("list artifacts")
    .into_inner()
    .files
    .into_iter()
    .map(|f| f.path)
    .collect()
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The tracking service's artifact directory in a sandbox (`TrackingConfig::local`).
fn artifact_dir(sb: &Sandbox) -> PathBuf {
    sb.dir().join("artifacts")
}

/// The message must not reveal where the server keeps its files.
fn assert_no_server_path(sb: &Sandbox, status: &tonic::Status) {
    let dir = sb.dir().display().to_string();
    assert!(
        !status.message().contains(&dir) && !status.message().contains("file://"),
        "the message names the server's files: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_up_to_the_filesystem_limit_upload_and_longer_ones_are_refused() {
    let sb = Sandbox::builder().tracking().start().await.unwrap();
    let mut c = sb.tracking_client().await;
    let exp = experiment(&mut c, "names").await;
    let r = run(&mut c, &exp).await;

    // 254 and 255 bytes fit a local filesystem's name; the upload must not need more.
    for n in [254, 255] {
        let name = format!("d/{}", "n".repeat(n));
        assert_eq!(
            upload(&mut c, &r, &name, b"abc".to_vec()).await.unwrap(),
            3,
            "a name of {n} bytes"
        );
    }
    let err = upload(&mut c, &r, &"n".repeat(256), b"abc".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("255 bytes"), "{err:?}");
    assert_no_server_path(&sb, &err);

    let long = vec!["p".repeat(200); 6].join("/");
    let err = upload(&mut c, &r, &long, b"abc".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("1024 bytes"), "{err:?}");

    // `#` and digits at the end is how the local store names files being written.
    for reserved in ["model.bin#1", "d/x#20", "d/x%2312"] {
        let err = upload(&mut c, &r, reserved, b"abc".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{reserved}: {err:?}");
        assert!(err.message().contains("reserved"), "{err:?}");
        assert_no_server_path(&sb, &err);
    }
    // `#` elsewhere is an ordinary character.
    upload(&mut c, &r, "notes#1.txt", b"abc".to_vec())
        .await
        .unwrap();

    // A percent-encoded `/..` is refused: whoever decodes the name would leave the run.
    for escape in [
        "a%2f..%2f..%2f..%2fescaped.txt",
        "%2e%2e/%2e%2e/escaped.txt",
    ] {
        let err = upload(&mut c, &r, escape, b"abc".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{escape}: {err:?}");
    }
    let everything = files_under(sb.dir());
    assert!(
        !everything.iter().any(|f| f.contains("escaped")),
        "{everything:?}"
    );
    assert_eq!(list(&mut c, &r).await, vec!["d", "notes#1.txt"]);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_staged_outside_the_run_and_leftovers_go_at_start() {
    // What a process killed in the middle of uploads leaves behind.
    let root = tempfile::tempdir().unwrap();
    let staging = root.path().join(".staging/tracking");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("0f0f#1"), b"half a file").unwrap();
    std::fs::write(staging.join("1e1e"), b"a whole file never renamed").unwrap();
    let root_str = root.path().display().to_string();
    let sb = Sandbox::builder()
        .tracking_with(move |c| c.artifact_root = root_str)
        .start()
        .await
        .unwrap();
    assert_eq!(
        files_under(&staging),
        Vec::<String>::new(),
        "leftovers are removed at start"
    );

    let mut c = sb.tracking_client().await;
    let exp = experiment(&mut c, "staging").await;
    let r = run(&mut c, &exp).await;
    // An upload under way: its bytes are somewhere on disk, but not under the run.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header(&r, "model/weights.bin")).await.unwrap();
    tx.send(chunk(vec![7; 6 * 1024 * 1024])).await.unwrap();
    let mut uploader = c.clone();
    let upload = tokio::spawn(async move {
        uploader
            .upload_artifact(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while files_under(&staging).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload is staged under .staging/tracking; on disk: {:?}",
            files_under(root.path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run_dir = root.path().join(&exp).join(&r);
    assert_eq!(
        files_under(&run_dir),
        Vec::<String>::new(),
        "nothing of an unfinished upload is under the run"
    );
    tx.send(chunk(vec![8; 10])).await.unwrap();
    drop(tx);
    let done = upload.await.unwrap().expect("the upload completes");
    assert_eq!(done.into_inner().file_size, 6 * 1024 * 1024 + 10);
    assert_eq!(
        files_under(&run_dir),
        vec!["artifacts/model/weights.bin".to_owned()]
    );
    assert_eq!(files_under(&staging), Vec::<String>::new());

    // An upload that breaks off leaves nothing, staged or in place.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header(&r, "broken.bin")).await.unwrap();
    tx.send(chunk(vec![1; 1000])).await.unwrap();
    tx.send(header(&r, "not-a-chunk")).await.unwrap();
    let err = c
        .upload_artifact(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(files_under(&staging), Vec::<String>::new());
    assert_eq!(
        files_under(&run_dir),
        vec!["artifacts/model/weights.bin".to_owned()]
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_configured_size_are_out_of_range() {
    let sb = Sandbox::builder()
        .tracking_with(|c| c.max_artifact_bytes = 1000)
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let exp = experiment(&mut c, "limit").await;
    let r = run(&mut c, &exp).await;
    assert_eq!(
        upload(&mut c, &r, "fits.bin", vec![0; 1000]).await.unwrap(),
        1000
    );
    // Over the limit in the second chunk: refused while streaming, nothing kept.
    let msgs = vec![
        header(&r, "big.bin"),
        chunk(vec![0; 600]),
        chunk(vec![0; 600]),
    ];
    let err = c
        .upload_artifact(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("1000 bytes"), "{err:?}");
    assert_no_server_path(&sb, &err);
    assert_eq!(list(&mut c, &r).await, vec!["fits.bin"]);
    assert_eq!(
        files_under(&artifact_dir(&sb).join(".staging")),
        Vec::<String>::new()
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_errors_do_not_reveal_the_servers_paths() {
    let sb = Sandbox::builder().tracking().start().await.unwrap();
    let mut c = sb.tracking_client().await;

    // A run whose experiment lives outside the artifact root: the client goes there.
    let elsewhere = tempfile::tempdir().unwrap();
    let location = format!("file://{}", elsewhere.path().display());
    let exp = c
        .create_experiment(pb::CreateExperimentRequest {
            name: format!("outside-{}", uuid::Uuid::new_v4().simple()),
            artifact_location: location.clone(),
            ..Default::default()
        })
        .await
        .expect("a location outside the root is accepted")
        .into_inner()
        .experiment_id;
    let r = run(&mut c, &exp).await;
    let err = c
        .list_artifacts(pb::ListArtifactsRequest {
            run_id: r.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&location), "{err:?}");
    let root = artifact_dir(&sb).display().to_string();
    assert!(!err.message().contains(&root), "{err:?}");

    // A path that clashes with a stored file: the caller's mistake, in its own words.
    let exp = experiment(&mut c, "clash").await;
    let r = run(&mut c, &exp).await;
    upload(&mut c, &r, "model", b"a file".to_vec())
        .await
        .unwrap();
    let err = upload(&mut c, &r, "model/inside.bin", b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("`model/inside.bin`"), "{err:?}");
    assert_no_server_path(&sb, &err);
    let err = c
        .download_artifact(pb::DownloadArtifactRequest {
            run_id: r.clone(),
            path: "missing.bin".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_no_server_path(&sb, &err);
    sb.stop().await.unwrap();
}

crate::on_both_backends!(experiment_locations_with_dot_dot_are_refused);

async fn experiment_locations_with_dot_dot_are_refused(db: Database) {
    let (sb, mut c) = crate::tracking_on(db).await;
    let default = c
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "0".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap()
        .artifact_location;
    let root = default.strip_suffix("/0").expect("the default is <root>/0");
    let create = |location: String| {
        let mut c = c.clone();
        async move {
            c.create_experiment(pb::CreateExperimentRequest {
                name: format!("loc-{}", uuid::Uuid::new_v4().simple()),
                artifact_location: location,
                ..Default::default()
            })
            .await
        }
    };
    for bad in [
        format!("{root}/../../x"),
        format!("{root}/x%2f..%2f..%2fetc"),
        format!("{root}/%2e%2e/%2e%2e/x"),
        "mlflow-artifacts:/x%2f..%2f..".to_owned(),
        "s3://other-bucket/a/../b".to_owned(),
    ] {
        let err = create(bad.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains("`..`"), "{bad}: {err:?}");
    }
    // Under the root, a location is an artifact path: not the staging area either.
    let err = create(format!("{root}/.staging/tracking"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Locations a client writes to directly stay accepted, as in MLflow.
    for good in [
        "s3://other-bucket/team/x".to_owned(),
        "file:///tmp/elsewhere/x".to_owned(),
        format!("{root}/team/x"),
    ] {
        create(good.clone())
            .await
            .unwrap_or_else(|e| panic!("{good}: {e:?}"));
    }
    sb.stop().await.unwrap();
}
