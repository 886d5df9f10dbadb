//! Hostile searches, on SQLite and PostgreSQL: a filter's size and clauses are bounded
//! (INVALID_ARGUMENT beyond), the largest allowed filter answers correctly well within
//! the statement timeout, searches cannot take the connections writes need, and a
//! statement past the timeout or abandoned by its caller is cancelled on the database.

use std::time::Duration;

use mlops_filter::sql::SqlBuilder;
use mlops_filter::{MAX_CLAUSES, MAX_FILTER_CHARS, MAX_LIST_VALUES, MAX_ORDER_BY};
use mlops_proto::registry::v1 as rpb;
use mlops_proto::tracking::v1 as pb;
use mlops_storage::{Backend, Db, DbOptions, StorageError};
use mlops_tests::{Database, Sandbox};
use tonic::Code;

use crate::{experiment, metric, param, run, tag, Client};

crate::on_both_backends!(
    hostile_run_filters,
    hostile_registry_filters,
    searches_never_starve_writes,
    abandoned_and_slow_statements_are_cancelled,
);

/// Tracking on `db` with a statement timeout of `timeout_ms`.
async fn tracking_with_timeout(db: Database, timeout_ms: u64) -> (Sandbox, Client) {
    let sb = Sandbox::builder()
        .database(db)
        .tracking_with(move |c| c.db.db_statement_timeout_ms = timeout_ms)
        .start()
        .await
        .expect("sandbox starts");
    let c = sb.tracking_client().await;
    (sb, c)
}

/// `runs` runs in a new experiment, each with params p0..p9 = "a"/"b" (by parity),
/// metrics m0..m9 = i % 10, tags t0..t4 = "v<i % 5>". Returns the experiment's id.
async fn populate(c: &mut Client, runs: usize) -> String {
    let exp = experiment(c, "hostile").await;
    for i in 0..runs {
        let r = run(c, &exp).await;
        c.log_batch(pb::LogBatchRequest {
            run_id: r,
            params: (0..10)
                .map(|k| param(&format!("p{k}"), if i % 2 == 0 { "a" } else { "b" }))
                .collect(),
            metrics: (0..10)
                .map(|k| metric(&format!("m{k}"), (i % 10) as f64, 0))
                .collect(),
            tags: (0..5)
                .map(|k| tag(&format!("t{k}"), &format!("v{}", i % 5)))
                .collect(),
        })
        .await
        .expect("log batch");
    }
    exp
}

/// `n` clauses that together mean `params.p0 = 'a' AND metrics.m0 >= 4`, spread over
/// params, metrics, tags and attributes so every kind of subquery is exercised.
fn many_clauses(n: usize) -> String {
    let mut clauses = vec!["params.p0 = 'a'".to_owned(), "metrics.m0 >= 4".to_owned()];
    let mut i = 0;
    while clauses.len() < n {
        clauses.push(match i % 4 {
            0 => format!("params.p{} != 'zz{i}'", i % 10),
            1 => format!("metrics.m{} > -{i}", i % 10),
            2 => format!("tags.t{} LIKE 'v%'", i % 5),
            _ => format!("attributes.run_name != 'no-such-run-{i}'"),
        });
        i += 1;
    }
    clauses.join(" AND ")
}

async fn search(c: &mut Client, exp: &str, filter: &str) -> Result<Vec<String>, tonic::Status> {
    let resp = c
        .search_runs(pb::SearchRunsRequest {
            experiment_ids: vec![exp.into()],
            filter: filter.into(),
            max_results: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut ids: Vec<String> = resp
        .runs
        .into_iter()
        .filter_map(|r| r.info.map(|i| i.run_id))
        .collect();
    ids.sort();
    Ok(ids)
}

fn assert_invalid(r: Result<Vec<String>, tonic::Status>, needle: &str) {
    let status = r.expect_err("the filter is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(needle),
        "message `{}` should name the limit `{needle}`",
        status.message()
    );
}

async fn hostile_run_filters(db: Database) {
    // 10 s: the tester's 200-clause search took 15 s on PostgreSQL before, and a
    // search that hit the timeout would fail this test with DEADLINE_EXCEEDED.
    let (sb, mut c) = tracking_with_timeout(db, 10_000).await;
    let exp = populate(&mut c, 40).await;
    let expected = search(&mut c, &exp, "params.p0 = 'a' AND metrics.m0 >= 4")
        .await
        .expect("the plain search answers");
    assert_eq!(expected.len(), 12, "runs 4, 6, 8 of every 10");

    // The largest filter allowed gives the same answer as its two meaningful clauses.
    for n in [10, 50, MAX_CLAUSES] {
        let got = search(&mut c, &exp, &many_clauses(n)).await;
        assert_eq!(
            got.as_ref().ok(),
            Some(&expected),
            "{db:?}: {n} clauses: {got:?}"
        );
    }
    // Order by as many fields as allowed, over the same filter.
    let order_by: Vec<String> = (0..MAX_ORDER_BY)
        .map(|k| format!("metrics.m{k} DESC"))
        .collect();
    let ordered = c
        .search_runs(pb::SearchRunsRequest {
            experiment_ids: vec![exp.clone()],
            filter: many_clauses(MAX_CLAUSES),
            order_by: order_by.clone(),
            max_results: 1000,
            ..Default::default()
        })
        .await
        .expect("the largest ordered search answers")
        .into_inner();
    assert_eq!(ordered.runs.len(), expected.len());

    // Past each limit: INVALID_ARGUMENT naming it, never INTERNAL or a timeout.
    assert_invalid(
        search(&mut c, &exp, &many_clauses(MAX_CLAUSES + 1)).await,
        &MAX_CLAUSES.to_string(),
    );
    assert_invalid(search(&mut c, &exp, &many_clauses(1000)).await, "clauses");
    let long = format!(
        "params.p0 = '{}'",
        "a".repeat(MAX_FILTER_CHARS - "params.p0 = ''".len() + 1)
    );
    assert_invalid(search(&mut c, &exp, &long).await, "16384");
    let list: Vec<String> = (0..=MAX_LIST_VALUES).map(|i| format!("'v{i}'")).collect();
    assert_invalid(
        search(&mut c, &exp, &format!("params.p0 IN ({})", list.join(", "))).await,
        &MAX_LIST_VALUES.to_string(),
    );
    let mut too_many_orders = order_by;
    too_many_orders.push("params.p0".into());
    let status = c
        .search_runs(pb::SearchRunsRequest {
            experiment_ids: vec![exp.clone()],
            order_by: too_many_orders,
            ..Default::default()
        })
        .await
        .expect_err("11 order_by clauses are refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Experiments are searched with the same grammar and limits.
    let tags: Vec<String> = (0..MAX_CLAUSES)
        .map(|i| format!("tags.k{i} IS NULL"))
        .collect();
    let name = exp_name(&mut c, &exp).await;
    let exps = c
        .search_experiments(pb::SearchExperimentsRequest {
            filter: format!("name = '{}' AND {}", name, tags[1..].join(" AND ")),
            ..Default::default()
        })
        .await
        .expect("a 200-clause experiment search answers")
        .into_inner();
    assert_eq!(exps.experiments.len(), 1);
    let status = c
        .search_experiments(pb::SearchExperimentsRequest {
            filter: format!("{} AND tags.x IS NULL", tags.join(" AND ")),
            ..Default::default()
        })
        .await
        .expect_err("201 clauses are refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The service is still up and answering.
    assert_eq!(
        search(&mut c, &exp, "params.p0 = 'a' AND metrics.m0 >= 4")
            .await
            .unwrap(),
        expected
    );
    sb.stop().await.unwrap();
}

async fn exp_name(c: &mut Client, id: &str) -> String {
    c.get_experiment(pb::GetExperimentRequest {
        experiment_id: id.into(),
    })
    .await
    .expect("get experiment")
    .into_inner()
    .experiment
    .expect("an experiment")
    .name
}

async fn hostile_registry_filters(db: Database) {
    let (sb, _, mut r) = crate::registry::registry_on(db).await;
    let prefix = format!("hostile-{}", uuid::Uuid::new_v4().simple());
    for i in 0..6 {
        r.create_registered_model(rpb::CreateRegisteredModelRequest {
            name: format!("{prefix}-{i}"),
            tags: (0..5)
                .map(|k| rpb::Tag {
                    key: format!("t{k}"),
                    value: if i % 2 == 0 { "even" } else { "odd" }.into(),
                })
                .collect(),
            ..Default::default()
        })
        .await
        .expect("create model");
    }
    let mut clauses = vec![format!("name LIKE '{prefix}-%'"), "tags.t0 = 'even'".into()];
    let mut i = 0;
    while clauses.len() < MAX_CLAUSES {
        clauses.push(format!("tags.t{} != 'x{i}'", i % 5));
        i += 1;
    }
    let found = r
        .search_registered_models(rpb::SearchRegisteredModelsRequest {
            filter: clauses.join(" AND "),
            ..Default::default()
        })
        .await
        .expect("a 200-clause model search answers")
        .into_inner();
    let mut names: Vec<String> = found
        .registered_models
        .into_iter()
        .map(|m| m.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("{prefix}-0"),
            format!("{prefix}-2"),
            format!("{prefix}-4")
        ]
    );
    clauses.push("tags.t1 = 'even'".into());
    let status = r
        .search_registered_models(rpb::SearchRegisteredModelsRequest {
            filter: clauses.join(" AND "),
            ..Default::default()
        })
        .await
        .expect_err("201 clauses are refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("200"), "{}", status.message());
    let status = r
        .search_model_versions(rpb::SearchModelVersionsRequest {
            filter: (0..1000)
                .map(|i| format!("tags.k{i} = 'v'"))
                .collect::<Vec<_>>()
                .join(" AND "),
            ..Default::default()
        })
        .await
        .expect_err("1000 clauses are refused, not an internal error");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    sb.stop().await.unwrap();
}

/// On SQLite the limit bounds searches only (waiting for a connection included), so
/// 1 ms fits everything else; on
/// PostgreSQL it bounds every statement (see `abandoned_and_slow_statements_are_cancelled`
/// for its timeout, classified by the same code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_the_statement_timeout_is_deadline_exceeded() {
    let db = Database::Sqlite;
    let (sb, mut c) = tracking_with_timeout(db, 1).await;
    let exp = populate(&mut c, 20).await;
    // A search of 20 runs can finish within 1 ms on a fast machine, so hold every
    // read connection: the limit covers waiting for one too, and the search cannot
    // start before it runs out, whatever the machine's speed.
    let reader = sb.tracking().store.db().reader().clone();
    let mut held = vec![];
    for _ in 0..reader.options().get_max_connections() {
        held.push(reader.acquire().await.expect("a read connection"));
    }
    let status = search(&mut c, &exp, &many_clauses(MAX_CLAUSES))
        .await
        .expect_err("the search runs past 1 ms");
    drop(held);
    assert_eq!(status.code(), Code::DeadlineExceeded, "{db:?}: {status:?}");
    assert!(
        status.message().contains("1ms") && status.message().contains("narrow"),
        "{}",
        status.message()
    );
    sb.stop().await.unwrap();
}

async fn searches_never_starve_writes(db: Database) {
    // Four connections: on PostgreSQL searches may hold two of them, writes keep the rest.
    let sb = Sandbox::builder()
        .database(db)
        .tracking_with(|c| {
            c.db.db_max_connections = 4;
            c.db.db_acquire_timeout_ms = 5_000;
        })
        .start()
        .await
        .expect("sandbox starts");
    let mut c = sb.tracking_client().await;
    let exp = populate(&mut c, 30).await;
    let slots = sb.tracking().store.db().search_slots();
    if db == Database::Postgres {
        assert_eq!(slots, 2, "half the pool serves searches");
    }
    let mut searches = vec![];
    for _ in 0..17 {
        let mut c = sb.tracking_client().await;
        let exp = exp.clone();
        searches.push(tokio::spawn(async move {
            search(&mut c, &exp, &many_clauses(MAX_CLAUSES)).await
        }));
    }
    // Writes made while the searches run all succeed.
    for i in 0..20 {
        let r = run(&mut c, &exp).await;
        c.log_param(pb::LogParamRequest {
            run_id: r,
            param: Some(param("during", &i.to_string())),
        })
        .await
        .expect("a write while searches run");
    }
    for s in searches {
        match s.await.expect("search task") {
            Ok(ids) => assert_eq!(ids.len(), 9, "{db:?}"),
            // Past the slots, a search may wait out the acquire timeout: it is told so.
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("retry"), "{}", status.message());
            }
        }
    }
    sb.stop().await.unwrap();
}

/// A database of `db`'s kind for the storage layer alone, with at most
/// `max_connections` connections.
pub(crate) async fn raw_db(
    db: Database,
    dir: &std::path::Path,
    max_connections: u32,
    statement_timeout: Duration,
) -> Db {
    let url = match db {
        Database::Sqlite => format!("sqlite://{}/raw.db", dir.display()),
        Database::Postgres => mlops_tests::fresh_postgres_database()
            .await
            .expect("a fresh database"),
    };
    Db::connect(&DbOptions {
        url,
        max_connections,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout,
    })
    .await
    .expect("connect")
}

/// A statement that runs for many seconds on `backend`.
fn slow_sql(backend: Backend) -> SqlBuilder {
    let mut b = SqlBuilder::new(backend);
    b.push(match backend {
        Backend::Postgres => "SELECT pg_sleep(30)::text",
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) \
             SELECT count(*) FROM c"
        }
    });
    b
}

async fn active_searches(db: &Db) -> i64 {
    use mlops_storage::sqlx::Row;
    mlops_storage::sqlx::query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND application_name = 'mlops-search'",
    )
    .fetch_one(db.writer())
    .await
    .expect("pg_stat_activity")
    .get::<i64, _>(0)
}

async fn abandoned_and_slow_statements_are_cancelled(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    // A slow search past the statement timeout: DEADLINE_EXCEEDED, promptly.
    let store = raw_db(db, dir.path(), 4, Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let Err(err) = slow_sql(store.backend()).fetch_all(&store).await else {
        panic!("the statement timeout stops it");
    };
    assert!(matches!(err, StorageError::TimedOut(_)), "{err:?}");
    assert!(err.to_string().contains("300ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    store.ping().await.expect("the database still answers");

    if db == Database::Postgres {
        // A search whose caller goes away is cancelled on the server, long before its
        // own 30 s (and with no statement timeout to help).
        let store = raw_db(db, dir.path(), 4, Duration::ZERO).await;
        let abandoned = tokio::time::timeout(
            Duration::from_millis(300),
            slow_sql(Backend::Postgres).fetch_all(&store),
        )
        .await;
        assert!(abandoned.is_err(), "the caller gave up first");
        let mut left = active_searches(&store).await;
        for _ in 0..50 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = active_searches(&store).await;
        }
        assert_eq!(left, 0, "the abandoned search still runs on the server");
        store.ping().await.expect("the pool still answers");
    }
}
