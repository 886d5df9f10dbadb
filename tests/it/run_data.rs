//! A run's params, tags and latest metrics as GetRun and SearchRuns return them, after
//! writes through every path, on both backends. On PostgreSQL pages read them from
//! per-run documents that triggers keep (`run_docs`), so there the documents are also
//! compared with the tables they copy, here, after the migration that created them, and
//! after concurrent writers (`tracking_data::concurrent_writers_to_one_run`).

use std::collections::BTreeMap;

use mlops_proto::tracking::v1 as pb;
use mlops_tests::{fresh_postgres_database, Database, Sandbox};
use sqlx::Row;

use crate::{experiment, metric, param, run, tag, tracking_on, Client};

crate::on_both_backends!(every_write_path_shows_in_get_run_and_search);

/// A run's data as comparable values: params, tags, and metrics as (value bits or
/// "NaN", timestamp, step).
type Data = (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    BTreeMap<String, (String, i64, i64)>,
);

fn data_of(run: &pb::Run) -> Data {
    let d = run.data.clone().unwrap_or_default();
    (
        d.params.into_iter().map(|p| (p.key, p.value)).collect(),
        d.tags.into_iter().map(|t| (t.key, t.value)).collect(),
        d.metrics
            .into_iter()
            .map(|m| {
                let v = if m.value.is_nan() {
                    "NaN".to_owned()
                } else {
                    m.value.to_bits().to_string()
                };
                (m.key, (v, m.timestamp, m.step))
            })
            .collect(),
    )
}

/// `LogParam` of one `key = value`.
async fn log_param(
    c: &mut Client,
    run_id: &str,
    key: &str,
    value: &str,
) -> Result<(), tonic::Status> {
    c.log_param(pb::LogParamRequest {
        run_id: run_id.into(),
        param: Some(param(key, value)),
    })
    .await
    .map(|_| ())
}

async fn searched(c: &mut Client, exp: &str, run_id: &str) -> pb::Run {
    let page = c
        .search_runs(pb::SearchRunsRequest {
            experiment_ids: vec![exp.into()],
            filter: format!("attributes.run_id = '{run_id}'"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.runs.len(), 1);
    page.runs.into_iter().next().unwrap()
}

/// On PostgreSQL, the runs whose document differs from its tables (none expected).
pub(crate) async fn documents_out_of_step(pool: &sqlx::AnyPool) -> Vec<String> {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET extra_float_digits = 3")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "SELECT r.run_id FROM runs r LEFT JOIN run_docs d ON d.run_id = r.run_id WHERE \
         COALESCE(d.params, '{}') IS DISTINCT FROM COALESCE((SELECT jsonb_object_agg(x.key, x.value) \
           FROM params x WHERE x.run_id = r.run_id), '{}') \
         OR COALESCE(d.tags, '{}') IS DISTINCT FROM COALESCE((SELECT jsonb_object_agg(x.key, x.value) \
           FROM tags x WHERE x.run_id = r.run_id), '{}') \
         OR COALESCE(d.metrics, '{}') IS DISTINCT FROM COALESCE((SELECT jsonb_object_agg(x.key, \
           jsonb_build_array(x.value::text, x.is_nan, x.timestamp, x.step)) FROM latest_metrics x \
           WHERE x.run_id = r.run_id), '{}') \
         OR COALESCE(d.linked, false) IS DISTINCT FROM (EXISTS (SELECT 1 FROM run_inputs x WHERE x.run_id = r.run_id) \
           OR EXISTS (SELECT 1 FROM run_outputs x WHERE x.run_id = r.run_id) \
           OR EXISTS (SELECT 1 FROM run_model_inputs x WHERE x.run_id = r.run_id))",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn every_write_path_shows_in_get_run_and_search(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let exp = experiment(&mut c, "run-data").await;
    let r = c
        .create_run(pb::CreateRunRequest {
            experiment_id: exp.clone(),
            run_name: "first-name".into(),
            tags: vec![tag("team", "a"), tag("gone", "soon")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
        .info
        .unwrap()
        .run_id;
    // A run with no data at all.
    let empty = run(&mut c, &exp).await;

    // A mixed batch (one transaction), then metrics alone (PostgreSQL's one-statement path).
    c.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![metric("loss", 0.5, 1), metric("loss", 0.25, 2)],
        params: vec![param("lr", "0.1"), param("depth", "7")],
        tags: vec![tag("team", "b")],
    })
    .await
    .unwrap();
    let third = 0.1 + 0.2;
    for m in [
        metric("loss", third, 3),
        // older than the stored point: history only, not the latest
        metric("loss", 9.0, 0),
        metric("nan", f64::NAN, 1),
        metric("big", 1e300, 1),
        metric("inf", f64::INFINITY, 1),
        metric("tiny", -5e-324, 1),
    ] {
        c.log_metric(pb::LogMetricRequest {
            run_id: r.clone(),
            metric: Some(m),
        })
        .await
        .unwrap();
    }
    // NaN and real values in turn, alone and in batches: a statement prepared for one
    // on a pooled connection must take the other (sqlx's Any driver typed a NULL
    // float as `real`, and PostgreSQL refused the next real value as INTERNAL).
    let flips = run(&mut c, &exp).await;
    for i in 0..40i64 {
        let v = if i % 2 == 0 { f64::NAN } else { i as f64 };
        c.log_metric(pb::LogMetricRequest {
            run_id: flips.clone(),
            metric: Some(metric("flip", v, i)),
        })
        .await
        .unwrap();
        c.log_batch(pb::LogBatchRequest {
            run_id: flips.clone(),
            metrics: vec![metric("flop", v, i)],
            tags: vec![tag("turn", &i.to_string())],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let flipped = data_of(&crate::get_run(&mut c, &flips).await).2;
    assert_eq!(flipped["flip"].0, 39f64.to_bits().to_string());
    assert_eq!(flipped["flop"].0, 39f64.to_bits().to_string());
    c.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        metrics: vec![metric("acc", 0.75, 1), metric("nan", 2.0, 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    log_param(&mut c, &r, "seed", "42").await.unwrap();
    // The same param again with its value is accepted and changes nothing.
    c.log_batch(pb::LogBatchRequest {
        run_id: r.clone(),
        params: vec![param("lr", "0.1")],
        ..Default::default()
    })
    .await
    .unwrap();
    // One param alone (PostgreSQL's one-statement path): the same value again is
    // fine, another is refused naming both.
    log_param(&mut c, &r, "seed", "42").await.unwrap();
    let changed = log_param(&mut c, &r, "seed", "43").await.unwrap_err();
    assert_eq!(changed.code(), tonic::Code::InvalidArgument);
    assert!(
        changed.message().contains("`42`") && changed.message().contains("`43`"),
        "{}",
        changed.message()
    );
    // A changed param is refused, and nothing of its batch is kept.
    let refused = c
        .log_batch(pb::LogBatchRequest {
            run_id: r.clone(),
            params: vec![param("lr", "0.2")],
            tags: vec![tag("half", "written")],
            metrics: vec![metric("acc", 0.0, 9)],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    c.set_tag(pb::SetTagRequest {
        run_id: r.clone(),
        tag: Some(tag("team", "c")),
    })
    .await
    .unwrap();
    c.delete_tag(pb::DeleteTagRequest {
        run_id: r.clone(),
        key: "gone".into(),
    })
    .await
    .unwrap();
    c.update_run(pb::UpdateRunRequest {
        run_id: r.clone(),
        run_name: "second-name".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // A deleted run takes nothing, through either path, until restored.
    c.delete_run(pb::DeleteRunRequest {
        run_id: empty.clone(),
    })
    .await
    .unwrap();
    for batch in [
        pb::LogBatchRequest {
            run_id: empty.clone(),
            params: vec![param("late", "1")],
            ..Default::default()
        },
        pb::LogBatchRequest {
            run_id: empty.clone(),
            params: vec![param("late", "1"), param("later", "2")],
            ..Default::default()
        },
    ] {
        let e = c.log_batch(batch).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{}", e.message());
    }
    let missing = log_param(&mut c, "0123456789abcdef0123456789abcdef", "x", "1")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    c.restore_run(pb::RestoreRunRequest {
        run_id: empty.clone(),
    })
    .await
    .unwrap();

    let got = crate::get_run(&mut c, &r).await;
    let (params, tags, metrics) = data_of(&got);
    assert_eq!(
        params,
        BTreeMap::from([
            ("depth".into(), "7".into()),
            ("lr".into(), "0.1".into()),
            ("seed".into(), "42".into()),
        ])
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("c"));
    assert_eq!(
        tags.get("mlflow.runName").map(String::as_str),
        Some("second-name")
    );
    assert!(!tags.contains_key("gone"), "{tags:?}");
    assert!(!tags.contains_key("half"), "{tags:?}");
    let point = |v: f64, step: i64| (v.to_bits().to_string(), 1_700_000_000_000 + step, step);
    assert_eq!(
        metrics,
        BTreeMap::from([
            ("acc".into(), point(0.75, 1)),
            ("big".into(), point(1e300, 1)),
            ("inf".into(), point(f64::INFINITY, 1)),
            ("loss".into(), point(third, 3)),
            ("nan".into(), point(2.0, 2)),
            ("tiny".into(), point(-5e-324, 1)),
        ])
    );
    // A search's page shows the same data as GetRun, for a run with data and one without.
    assert_eq!(data_of(&searched(&mut c, &exp, &r).await), data_of(&got));
    let bare = searched(&mut c, &exp, &empty).await;
    assert_eq!(
        data_of(&bare),
        data_of(&crate::get_run(&mut c, &empty).await)
    );
    assert!(bare.data.unwrap().params.is_empty());

    if sb.tracking().store.db().backend() == mlops_storage::Backend::Postgres {
        let out = documents_out_of_step(sb.tracking().store.db().reader()).await;
        assert!(
            out.is_empty(),
            "documents differ from their tables: {out:?}"
        );
    }
    sb.stop().await.unwrap();
}

/// Runs written before the migration that added the documents get theirs from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_logged_before_the_documents_get_them() {
    let url = fresh_postgres_database().await.unwrap();
    let all = mlops_tracking::store::migrations();
    // Data written by the schema before the documents, then every later migration
    // applied over it at start-up.
    let before: Vec<_> = all.iter().filter(|m| m.version < 6).cloned().collect();
    assert_eq!(before.len(), 5, "the documents' migration is version 6");
    {
        let args = mlops_storage::DbArgs {
            database_url: url.clone(),
            db_max_connections: 2,
            db_acquire_timeout_ms: 2000,
            db_statement_timeout_ms: 0,
        };
        let db = mlops_storage::Db::connect(&args.options()).await.unwrap();
        db.migrate("tracking", &before).await.unwrap();
        for sql in [
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES (7, 'old', 'file:///tmp/old', 'active', 1, 1)",
            "INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time, artifact_uri, lifecycle_stage) \
             VALUES ('0123456789abcdef0123456789abcdef', 7, 'old-run', 'u', 'FINISHED', 5, 'file:///tmp/old/r', 'active'), \
             ('fedcba9876543210fedcba9876543210', 7, 'bare', 'u', 'FINISHED', 4, 'file:///tmp/old/b', 'active')",
            "INSERT INTO params VALUES ('0123456789abcdef0123456789abcdef', 'lr', '0.1')",
            "INSERT INTO tags VALUES ('0123456789abcdef0123456789abcdef', 'mlflow.runName', 'old-run')",
            "INSERT INTO latest_metrics VALUES ('0123456789abcdef0123456789abcdef', 'loss', 0.30000000000000004, 0, 10, 3), \
             ('0123456789abcdef0123456789abcdef', 'nan', NULL, 1, 11, 4)",
            "INSERT INTO datasets VALUES ('ds1', 7, 'train', 'd1g357', 'local', 'file:///tmp/train', '', '')",
            "INSERT INTO run_inputs VALUES ('0123456789abcdef0123456789abcdef', 'ds1', 'training', '[]')",
        ] {
            sqlx::query(sql).execute(db.writer()).await.unwrap();
        }
    }
    let sb = Sandbox::builder()
        .database(Database::Sqlite)
        .tracking_with(move |c| c.db.database_url = url)
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    assert!(documents_out_of_step(sb.tracking().store.db().reader())
        .await
        .is_empty());
    let old = "0123456789abcdef0123456789abcdef";
    let got = crate::get_run(&mut c, old).await;
    let (params, tags, metrics) = data_of(&got);
    assert_eq!(params, BTreeMap::from([("lr".into(), "0.1".into())]));
    assert_eq!(
        tags.get("mlflow.runName").map(String::as_str),
        Some("old-run")
    );
    assert_eq!(
        metrics,
        BTreeMap::from([
            ("loss".into(), ((0.1f64 + 0.2).to_bits().to_string(), 10, 3)),
            ("nan".into(), ("NaN".into(), 11, 4)),
        ])
    );
    assert_eq!(data_of(&searched(&mut c, "7", old).await), data_of(&got));
    // Its input, found through the document's link flag.
    let inputs = got.inputs.unwrap().dataset_inputs;
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].dataset.as_ref().unwrap().name, "train");
    let page = searched(&mut c, "7", old).await;
    assert_eq!(page.inputs.unwrap().dataset_inputs.len(), 1);
    // Writes after the migration merge into the documents it made.
    c.log_batch(pb::LogBatchRequest {
        run_id: old.into(),
        params: vec![param("depth", "3")],
        metrics: vec![metric("loss", 0.125, 5)],
        ..Default::default()
    })
    .await
    .unwrap();
    let (params, _, metrics) = data_of(&searched(&mut c, "7", old).await);
    assert_eq!(params.len(), 2);
    assert_eq!(metrics["loss"].2, 5);
    assert_eq!(metrics["nan"].0, "NaN");
    let bare = crate::get_run(&mut c, "fedcba9876543210fedcba9876543210").await;
    assert!(bare.data.unwrap().params.is_empty());
    // Version 7 went over the same data: run ids and keys compare as bytes.
    let not_bytes: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name IN ('run_id', 'key') \
         AND table_name IN ('runs', 'params', 'tags', 'latest_metrics', 'metric_chunks', \
         'run_docs', 'run_inputs', 'run_outputs', 'run_model_inputs') \
         AND collation_name IS DISTINCT FROM 'C'",
    )
    .fetch_all(sb.tracking().store.db().reader())
    .await
    .unwrap();
    assert!(not_bytes.is_empty(), "{not_bytes:?}");
    assert!(documents_out_of_step(sb.tracking().store.db().reader())
        .await
        .is_empty());
    sb.stop().await.unwrap();
}
