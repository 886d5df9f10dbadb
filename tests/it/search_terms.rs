//! A run filter's keyed terms find the same runs, in the same order, wherever they
//! stand in the filter. On PostgreSQL the first few are subqueries the planner may
//! join and the rest are read from each run's document (`run_docs`), so every
//! operator on params, tags and metrics is checked here in both places: alone, and
//! behind three terms that every run passes.

use mlops_proto::tracking::v1 as pb;
use mlops_tests::Database;

use crate::{experiment, metric, param, run, tag, Client};

crate::on_both_backends!(a_term_answers_alike_first_or_past_the_joined_ones);

/// Three terms every run passes (keys no run has) that take the joined places.
const IN_FRONT: &str = "params.none1 IS NULL AND tags.none2 IS NULL AND metrics.none3 IS NULL";

/// The ids of the runs `filter` finds in `exp`, in the search's order, page by page.
async fn ids(c: &mut Client, exp: &str, filter: &str, page: i32) -> Vec<String> {
    let mut out = vec![];
    let mut token = String::new();
    loop {
        let resp = c
            .search_runs(pb::SearchRunsRequest {
                experiment_ids: vec![exp.into()],
                filter: filter.into(),
                max_results: page,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("`{filter}`: {s:?}"))
            .into_inner();
        out.extend(
            resp.runs
                .into_iter()
                .filter_map(|r| r.info.map(|i| i.run_id)),
        );
        if resp.next_page_token.is_empty() {
            return out;
        }
        token = resp.next_page_token;
    }
}

async fn a_term_answers_alike_first_or_past_the_joined_ones(db: Database) {
    let (sb, mut c) = crate::tracking_on(db).await;
    let exp = experiment(&mut c, "terms").await;
    // Runs 0..=9 have a param, a tag and a metric; run 10 only the param; run 11
    // nothing at all (on PostgreSQL, no document).
    let mut runs = vec![];
    for i in 0..12usize {
        let r = run(&mut c, &exp).await;
        let value = match i {
            5 => f64::NAN,
            6 => f64::INFINITY,
            7 => f64::NEG_INFINITY,
            _ => i as f64,
        };
        if i <= 10 {
            c.log_batch(pb::LogBatchRequest {
                run_id: r.clone(),
                params: vec![param("p", ["alpha", "Beta", "gamma", "delta"][i % 4])],
                metrics: if i < 10 {
                    vec![metric("m", value, 0)]
                } else {
                    vec![]
                },
                tags: if i < 10 {
                    vec![tag("t", ["red", "Green", "blue"][i % 3])]
                } else {
                    vec![]
                },
            })
            .await
            .expect("log batch");
        }
        runs.push(r);
    }
    // A changed tag, a deleted one, and a metric's later step.
    c.set_tag(pb::SetTagRequest {
        run_id: runs[3].clone(),
        tag: Some(tag("t", "violet")),
    })
    .await
    .unwrap();
    c.delete_tag(pb::DeleteTagRequest {
        run_id: runs[4].clone(),
        key: "t".into(),
    })
    .await
    .unwrap();
    c.log_metric(pb::LogMetricRequest {
        run_id: runs[8].clone(),
        metric: Some(metric("m", 100.0, 1)),
    })
    .await
    .unwrap();

    // Each filter with the runs it finds (by index), worked out from the data above.
    let cases: &[(&str, &[usize])] = &[
        ("params.p = 'alpha'", &[0, 4, 8]),
        ("params.p != 'alpha'", &[1, 2, 3, 5, 6, 7, 9, 10]),
        ("params.p LIKE '%ta'", &[1, 3, 5, 7, 9]),
        ("params.p = 'Beta'", &[1, 5, 9]),
        ("params.p LIKE 'b%'", &[]),
        ("params.p ILIKE 'b%'", &[1, 5, 9]),
        ("params.p IN ('gamma', 'delta')", &[2, 3, 6, 7, 10]),
        ("params.p NOT IN ('gamma')", &[0, 1, 3, 4, 5, 7, 8, 9]),
        ("params.p IS NULL", &[11]),
        ("tags.t = 'violet'", &[3]),
        ("tags.t != 'red'", &[1, 2, 3, 5, 7, 8]),
        ("tags.t LIKE 'G%'", &[1, 7]),
        ("tags.t ILIKE 'green'", &[1, 7]),
        ("tags.t IN ('red', 'blue')", &[0, 2, 5, 6, 8, 9]),
        ("tags.t IS NOT NULL", &[0, 1, 2, 3, 5, 6, 7, 8, 9]),
        ("tags.t IS NULL", &[4, 10, 11]),
        ("metrics.m > 3", &[4, 6, 8, 9]),
        ("metrics.m <= 3", &[0, 1, 2, 3, 7]),
        ("metrics.m = 100", &[8]),
        ("metrics.m != 2", &[0, 1, 3, 4, 6, 7, 8, 9]),
        ("metrics.m > 1000000", &[6]),
        ("metrics.m IS NOT NULL", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("metrics.m > 1 AND metrics.m < 8", &[2, 3, 4]),
        (
            "params.p != 'gamma' AND tags.t LIKE '%e%' AND metrics.m >= 0",
            &[0, 1, 3, 8, 9],
        ),
    ];
    for (filter, expected) in cases {
        let alone = ids(&mut c, &exp, filter, 1000).await;
        let mut found: Vec<usize> = alone
            .iter()
            .map(|id| {
                runs.iter()
                    .position(|r| r == id)
                    .expect("a run of the experiment")
            })
            .collect();
        found.sort_unstable();
        assert_eq!(&found, expected, "{db:?}: `{filter}`");
        // Behind three joined terms, and read three runs a page: the same runs in the
        // same order.
        let behind = format!("{IN_FRONT} AND {filter}");
        assert_eq!(
            ids(&mut c, &exp, &behind, 3).await,
            alone,
            "{db:?}: `{behind}`"
        );
    }
    sb.stop().await.unwrap();
}
