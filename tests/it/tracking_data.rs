//! The tracking service's API, the same suite on SQLite and on PostgreSQL:
//! search, dataset inputs, artifacts, heartbeat leases and concurrent writers.

use futures::StreamExt;
use mlops_proto::registry::v1 as rpb;
use mlops_proto::tracking::v1 as pb;
use mlops_tests::Database;
use tonic::Code;

use crate::{experiment, metric, param, run, tag, tracking_on};

crate::on_both_backends!(
    search_runs_grammar_order_and_paging,
    dataset_inputs,
    artifacts_round_trip_and_bad_paths,
    heartbeat_lease_kills_silent_runs,
    concurrent_writers_to_one_run,
    values_at_their_limits_are_stored_and_found,
);

async fn search_runs_grammar_order_and_paging(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "search").await;
    let mut ids = vec![];
    for i in 0..12 {
        let r = run(&mut c, &exp).await;
        let model = if i % 2 == 0 { "rf" } else { "GBM" };
        c.log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            metrics: vec![
                metric("auc", i as f64 / 10.0, 0),
                metric("val loss", 1.0 - i as f64 / 20.0, 0),
            ],
            params: vec![param("model", model)],
            tags: vec![tag("team", if i < 6 { "x" } else { "y" })],
        })
        .await
        .unwrap();
        if i % 3 == 0 {
            c.update_run(pb::UpdateRunRequest {
                run_id: r.clone(),
                status: pb::RunStatus::Finished as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        ids.push(r);
    }
    let search = |filter: &str, order: &[&str], max: i32, token: String| pb::SearchRunsRequest {
        experiment_ids: vec![exp.clone()],
        filter: filter.into(),
        order_by: order.iter().map(|s| s.to_string()).collect(),
        max_results: max,
        page_token: token,
        ..Default::default()
    };
    let found = |resp: pb::SearchRunsResponse| -> Vec<String> {
        resp.runs
            .into_iter()
            .map(|r| r.info.unwrap().run_id)
            .collect()
    };
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        let mut v: Vec<String> = (0..12)
            .filter(|i| pred(*i))
            .map(|i| ids[i].clone())
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    let issue = "metrics.auc > 0.3 and params.model = 'rf' and tags.team != 'x' and attributes.status = 'FINISHED'";
    let got = found(
        c.search_runs(search(issue, &[], 0, String::new()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        sorted(got),
        expect(&|i| i > 3 && i % 2 == 0 && i >= 6 && i % 3 == 0)
    );
    let like = found(
        c.search_runs(search("params.model LIKE 'g%'", &[], 0, String::new()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(like.is_empty(), "LIKE is case-sensitive");
    let ilike = found(
        c.search_runs(search("params.model ILIKE 'g%'", &[], 0, String::new()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(sorted(ilike), expect(&|i| i % 2 == 1));
    let inn = found(
        c.search_runs(search(
            &format!("attributes.run_id IN ('{}', '{}')", ids[1], ids[2]),
            &[],
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner(),
    );
    assert_eq!(sorted(inn), sorted(vec![ids[1].clone(), ids[2].clone()]));
    let quoted = found(
        c.search_runs(search("metrics.`val loss` <= 0.5", &[], 0, String::new()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(sorted(quoted), expect(&|i| i >= 10));

    let ordered = found(
        c.search_runs(search("", &["metrics.auc DESC"], 0, String::new()))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        ordered,
        (0..12).rev().map(|i| ids[i].clone()).collect::<Vec<_>>()
    );

    let mut paged = vec![];
    let mut token = String::new();
    loop {
        let page = c
            .search_runs(search("", &["metrics.auc ASC"], 5, token))
            .await
            .unwrap()
            .into_inner();
        token = page.next_page_token.clone();
        paged.extend(found(page));
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, ids, "pages in order, no gaps, no repeats");

    let bad = c
        .search_runs(search("metrics.auc >> 1", &[], 0, String::new()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("position 12"), "{}", bad.message());
    let bad_order = c
        .search_runs(search("", &["metrics.auc SIDEWAYS"], 0, String::new()))
        .await
        .unwrap_err();
    assert_eq!(bad_order.code(), Code::InvalidArgument);
    let too_many = c
        .search_runs(search("", &[], 50_001, String::new()))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    sb.stop().await.unwrap();
}

async fn dataset_inputs(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "inputs").await;
    let r = run(&mut c, &exp).await;
    let ds = |name: &str, digest: &str| pb::Dataset {
        name: name.into(),
        digest: digest.into(),
        source_type: "local".into(),
        source: "{\"uri\": \"/data/x.parquet\"}".into(),
        schema: "{\"cols\": [\"a\"]}".into(),
        profile: "{\"rows\": 10}".into(),
    };
    c.log_inputs(pb::LogInputsRequest {
        models: vec![],
        run_id: r.clone(),
        datasets: vec![
            pb::DatasetInput {
                dataset: Some(ds("train", "abc123")),
                context: "training".into(),
                tags: vec![],
            },
            pb::DatasetInput {
                dataset: Some(ds("test", "def456")),
                context: "evaluation".into(),
                tags: vec![],
            },
        ],
    })
    .await
    .unwrap();
    let inputs = crate::get_run(&mut c, &r).await.inputs.unwrap();
    assert_eq!(inputs.dataset_inputs.len(), 2);
    let train = inputs
        .dataset_inputs
        .iter()
        .find(|d| d.context == "training")
        .unwrap();
    assert_eq!(train.dataset.as_ref().unwrap().digest, "abc123");
    assert!(train.tags.contains(&tag("mlflow.data.context", "training")));
    let found = c
        .search_runs(pb::SearchRunsRequest {
            experiment_ids: vec![exp.clone()],
            filter: "datasets.digest = 'def456'".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.runs.len(), 1);
    let missing = c
        .log_inputs(pb::LogInputsRequest {
            models: vec![],
            run_id: r.clone(),
            datasets: vec![pb::DatasetInput {
                dataset: None,
                context: String::new(),
                tags: vec![],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    sb.stop().await.unwrap();
}

async fn artifacts_round_trip_and_bad_paths(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "artifacts").await;
    let r = run(&mut c, &exp).await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let upload = |path: &str, data: Vec<u8>| {
        let mut msgs = vec![pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Header(
                pb::ArtifactHeader {
                    run_id: r.clone(),
                    path: path.into(),
                    ..Default::default()
                },
            )),
        }];
        for chunk in data.chunks(64 * 1024) {
            msgs.push(pb::UploadArtifactRequest {
                item: Some(pb::upload_artifact_request::Item::Chunk(chunk.to_vec())),
            });
        }
        futures::stream::iter(msgs)
    };
    let resp = c
        .upload_artifact(upload("model/model.bin", body.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.file_size, body.len() as u64);
    c.upload_artifact(upload("metrics.json", b"{}".to_vec()))
        .await
        .unwrap();

    let mut stream = c
        .download_artifact(pb::DownloadArtifactRequest {
            run_id: r.clone(),
            path: "model/model.bin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = vec![];
    while let Some(chunk) = stream.next().await {
        got.extend(chunk.unwrap().chunk);
    }
    assert_eq!(got, body);

    let root = c
        .list_artifacts(pb::ListArtifactsRequest {
            run_id: r.clone(),
            path: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<(String, bool)> = root
        .files
        .iter()
        .map(|f| (f.path.clone(), f.is_dir))
        .collect();
    assert_eq!(
        names,
        vec![("metrics.json".into(), false), ("model".into(), true)]
    );
    let sub = c
        .list_artifacts(pb::ListArtifactsRequest {
            run_id: r.clone(),
            path: "model".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sub.files.len(), 1);
    assert_eq!(sub.files[0].file_size, body.len() as u64);
    assert_eq!(sub.files[0].content, None, "no content unless asked for");

    // Content with the listing: only when the listed files fit the budget together.
    let lister = c.clone();
    let listed = |path: &str, inline_bytes: u64| {
        let mut c = lister.clone();
        let request = pb::ListArtifactsRequest {
            run_id: r.clone(),
            path: path.into(),
            inline_bytes,
            ..Default::default()
        };
        async move { c.list_artifacts(request).await.unwrap().into_inner().files }
    };
    let sub = listed("model", body.len() as u64).await;
    assert_eq!(sub[0].content.as_deref(), Some(&body[..]));
    assert_eq!(sub[0].file_size, body.len() as u64);
    let short = listed("model", body.len() as u64 - 1).await;
    assert_eq!(
        short[0].content, None,
        "one byte over the budget: no content"
    );
    assert_eq!(short[0].file_size, body.len() as u64);
    let root = listed("", u64::MAX).await;
    assert_eq!(root.len(), 2);
    assert_eq!(root[0].content.as_deref(), Some(&b"{}"[..]), "metrics.json");
    assert_eq!(root[1].content, None, "a directory has no content");
    c.upload_artifact(upload("big/blob.bin", vec![7u8; (1 << 20) + 1]))
        .await
        .unwrap();
    let big = listed("big", u64::MAX).await;
    assert_eq!(big[0].content, None, "over 1 MiB is never sent inline");

    for bad in ["../escape.txt", "/etc/passwd", "a/../../b", "model//x"] {
        let e = c
            .upload_artifact(upload(bad, b"x".to_vec()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        let e = c
            .download_artifact(pb::DownloadArtifactRequest {
                run_id: r.clone(),
                path: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
    }
    assert!(
        !sb.dir().join("escape.txt").exists() && !sb.dir().join("artifacts/escape.txt").exists()
    );
    let e = c
        .download_artifact(pb::DownloadArtifactRequest {
            run_id: r.clone(),
            path: "nope.bin".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let no_header = c
        .upload_artifact(futures::stream::iter(vec![pb::UploadArtifactRequest {
            item: Some(pb::upload_artifact_request::Item::Chunk(vec![1])),
        }]))
        .await
        .unwrap_err();
    assert_eq!(no_header.code(), Code::InvalidArgument);
    sb.stop().await.unwrap();
}

async fn heartbeat_lease_kills_silent_runs(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "lease").await;
    let leased = c
        .create_run(pb::CreateRunRequest {
            experiment_id: exp.clone(),
            heartbeat_timeout_seconds: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
        .info
        .unwrap();
    assert!(leased.lease_expires_at.is_some());
    let plain = run(&mut c, &exp).await;
    let no_lease = c
        .heartbeat(pb::HeartbeatRequest {
            run_id: plain.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_lease.code(), Code::FailedPrecondition);

    // Heartbeats keep it alive past its timeout...
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        c.heartbeat(pb::HeartbeatRequest {
            run_id: leased.run_id.clone(),
        })
        .await
        .unwrap();
    }
    let alive = crate::get_run(&mut c, &leased.run_id).await.info.unwrap();
    assert_eq!(alive.status, pb::RunStatus::Running as i32);
    // ...and silence kills it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info = crate::get_run(&mut c, &leased.run_id).await.info.unwrap();
        if info.status == pb::RunStatus::Killed as i32 {
            assert!(info.end_time.is_some());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run was not killed after its lease expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = c
        .heartbeat(pb::HeartbeatRequest {
            run_id: leased.run_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition);
    let untouched = crate::get_run(&mut c, &plain).await.info.unwrap();
    assert_eq!(
        untouched.status,
        pb::RunStatus::Running as i32,
        "runs without a lease are left alone"
    );
    sb.stop().await.unwrap();
}

async fn concurrent_writers_to_one_run(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "concurrent").await;
    let r = run(&mut c, &exp).await;
    let mut tasks = vec![];
    for w in 0..12 {
        let mut c = sb.tracking_client().await;
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..20 {
                // Overlapping keys in different orders: the classic deadlock recipe.
                let keys: Vec<String> = if w % 2 == 0 {
                    (0..5).map(|k| format!("k{k}")).collect()
                } else {
                    (0..5).rev().map(|k| format!("k{k}")).collect()
                };
                let metrics = keys
                    .iter()
                    .flat_map(|k| (0..10).map(move |i| metric(k, i as f64, (b * 10 + i) as i64)))
                    .collect();
                // Every other batch is metrics alone (PostgreSQL's one-statement path),
                // racing the transactions of the others.
                let (params, tags) = if b % 2 == 0 {
                    (
                        vec![param(&format!("w{w}"), "1")],
                        keys.iter().map(|k| tag(k, &format!("w{w}"))).collect(),
                    )
                } else {
                    (vec![], vec![])
                };
                c.log_batch(pb::LogBatchRequest {
                    run_id: r.clone(),
                    metrics,
                    params,
                    tags,
                })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for k in 0..5 {
        let h = c
            .get_metric_history(pb::GetMetricHistoryRequest {
                run_id: r.clone(),
                metric_key: format!("k{k}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(h.values.len(), 12 * 20 * 10);
    }
    let data = crate::get_run(&mut c, &r).await.data.unwrap();
    assert_eq!(data.params.len(), 12);
    // The latest point of each key is its highest step, 19 * 10 + 9.
    assert!(
        data.metrics.iter().all(|m| m.step == 199),
        "{:?}",
        data.metrics
    );
    if sb.tracking().store.db().backend() == mlops_storage::Backend::Postgres {
        let out = crate::run_data::documents_out_of_step(sb.tracking().store.db().reader()).await;
        assert!(
            out.is_empty(),
            "documents differ from their tables: {out:?}"
        );
    }
    sb.stop().await.unwrap();
}

/// `n` characters that do not compress (a database that indexes values whole cannot
/// take them past a third of a page, about 2,700 bytes on PostgreSQL).
fn incompressible(n: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize])
        })
        .collect()
}

/// A param of 6,000 characters and a tag of 8,000 (MLflow's limits, which tracking
/// enforces), and a model version tag of 5,000 (the registry's), are stored, returned
/// whole, and found by the filters that name them.
async fn values_at_their_limits_are_stored_and_found(db: Database) {
    let (sb, mut c, mut reg) = crate::registry::registry_on(db).await;
    let exp = experiment(&mut c, "long-values").await;
    let (p, t) = (incompressible(6000, 1), incompressible(8000, 2));
    let r = run(&mut c, &exp).await;
    c.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        params: vec![param("config", &p)],
        tags: vec![tag("notes", &t)],
        ..Default::default()
    })
    .await
    .unwrap();
    // Another run whose values share the long prefix and differ at the end.
    let other = run(&mut c, &exp).await;
    let (p2, t2) = (format!("{}x", &p[..5999]), format!("{}x", &t[..7999]));
    c.log_param(pb::LogParamRequest {
        run_id: other.clone(),
        param: Some(param("config", &p2)),
    })
    .await
    .unwrap();
    c.set_tag(pb::SetTagRequest {
        run_id: other.clone(),
        tag: Some(tag("notes", &t2)),
    })
    .await
    .unwrap();
    let got = crate::get_run(&mut c, &r).await.data.unwrap();
    assert_eq!(got.params[0].value, p);
    assert!(got.tags.iter().any(|x| x.key == "notes" && x.value == t));
    let found = |filter: String| {
        let mut c = c.clone();
        let exp = exp.clone();
        async move {
            let mut ids: Vec<String> = c
                .search_runs(pb::SearchRunsRequest {
                    experiment_ids: vec![exp],
                    filter,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .runs
                .into_iter()
                .map(|x| x.info.unwrap().run_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        found(format!("params.config = '{p}'")).await,
        vec![r.clone()]
    );
    assert_eq!(
        found(format!("params.config = '{p2}'")).await,
        vec![other.clone()]
    );
    assert_eq!(
        found(format!("params.config != '{p}'")).await,
        vec![other.clone()]
    );
    let mut both = vec![r.clone(), other.clone()];
    both.sort();
    assert_eq!(
        found(format!("tags.notes LIKE '{}%'", &t[..3000])).await,
        both
    );
    assert_eq!(found(format!("tags.notes = '{t}'")).await, vec![r.clone()]);
    assert_eq!(
        found(format!("params.config IN ('{p}', 'short')")).await,
        vec![r.clone()]
    );

    let name = format!("long-tags-{}", uuid::Uuid::new_v4().simple());
    reg.create_registered_model(rpb::CreateRegisteredModelRequest {
        name: name.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let v = incompressible(5000, 3);
    for (version, value) in [(1, v.clone()), (2, format!("{}x", &v[..4999]))] {
        reg.create_model_version(rpb::CreateModelVersionRequest {
            name: name.clone(),
            source: "s3://bucket/model".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        reg.set_model_version_tag(rpb::SetModelVersionTagRequest {
            name: name.clone(),
            version,
            key: "notes".into(),
            value,
        })
        .await
        .unwrap();
    }
    let versions: Vec<i64> = reg
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: format!("name = '{name}' AND tags.notes = '{v}'"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .model_versions
        .into_iter()
        .map(|x| x.version)
        .collect();
    assert_eq!(versions, [1]);
    sb.stop().await.unwrap();
}
