//! Bad training-data queries over gRPC, each with its status and a message that says what
//! to fix, on SQLite and PostgreSQL; the service keeps answering.

use std::sync::Arc;

use arrow_array::StringArray;
use mlops_proto::featurestore::v1 as fpb;
use mlops_tests::Database;
use tonic::Code;

use crate::feature_store::{
    apply, batch, entity_table, historical, query, start, start_spilling, times, write_sources,
    DEFS, HOUR,
};

async fn bad_queries_get_clear_statuses(db: Database) {
    let (sb, mut c) = start(db).await;
    apply(&mut c, DEFS).await.unwrap();
    write_sources(&sb.dir().join("features"));
    let entity = entity_table();
    fn expect<T>(r: Result<T, tonic::Status>, code: Code, says: &str) {
        let e = r.map(|_| ()).unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(
            e.message().contains(says),
            "`{}` does not say `{says}`",
            e.message()
        );
    }
    expect(
        historical(&mut c, query(&["driver_stats:nope"]), Some(&entity)).await,
        Code::InvalidArgument,
        "has no feature `nope`",
    );
    expect(
        historical(&mut c, query(&["nope:conv_rate"]), Some(&entity)).await,
        Code::InvalidArgument,
        "feature view `nope` is not defined",
    );
    expect(
        historical(&mut c, query(&["conv_rate"]), Some(&entity)).await,
        Code::InvalidArgument,
        "write `view:feature`",
    );
    let no_time = entity.project(&[0, 1, 2]).unwrap();
    expect(
        historical(&mut c, query(&["driver_stats:conv_rate"]), Some(&no_time)).await,
        Code::InvalidArgument,
        "has no column `event_timestamp`",
    );
    let string_keys = batch(vec![
        ("driver_id", Arc::new(StringArray::from(vec!["1"]))),
        ("event_timestamp", times(&[Some(HOUR)])),
    ]);
    expect(
        historical(
            &mut c,
            query(&["driver_stats:conv_rate"]),
            Some(&string_keys),
        )
        .await,
        Code::InvalidArgument,
        "int64",
    );
    expect(
        historical(&mut c, query(&["driver_stats:conv_rate"]), None).await,
        Code::InvalidArgument,
        "no entity table",
    );
    expect(
        historical(
            &mut c,
            fpb::HistoricalQuery {
                entity_parquet: "entities/missing.parquet".into(),
                ..query(&["driver_stats:conv_rate"])
            },
            None,
        )
        .await,
        Code::NotFound,
        "entities/missing.parquet does not exist",
    );
    expect(
        historical(
            &mut c,
            fpb::HistoricalQuery {
                entity_parquet: "../outside.parquet".into(),
                ..query(&["driver_stats:conv_rate"])
            },
            None,
        )
        .await,
        Code::InvalidArgument,
        "not a path on the offline store",
    );
    // A source whose file is gone, and one whose column has another type than declared.
    std::fs::remove_file(sb.dir().join("features/driver_stats.parquet")).unwrap();
    expect(
        historical(&mut c, query(&["driver_stats:conv_rate"]), Some(&entity)).await,
        Code::NotFound,
        "driver_stats.parquet does not exist",
    );
    apply(
        &mut c,
        &DEFS.replace(
            "{name: conv_rate, dtype: float64}",
            "{name: conv_rate, dtype: float32}",
        ),
    )
    .await
    .unwrap();
    write_sources(&sb.dir().join("features"));
    expect(
        historical(&mut c, query(&["driver_stats:conv_rate"]), Some(&entity)).await,
        Code::FailedPrecondition,
        "column `conv_rate` is Float64, but the view declares float32",
    );
    // Not a stream of Arrow IPC: refused, and the service still answers.
    use fpb::get_historical_features_request::Part;
    let garbage = vec![
        fpb::GetHistoricalFeaturesRequest {
            part: Some(Part::Query(query(&["city_stats:demand"]))),
        },
        fpb::GetHistoricalFeaturesRequest {
            part: Some(Part::ArrowIpc(bytes::Bytes::from_static(
                b"this is not arrow",
            ))),
        },
    ];
    let r = async {
        let mut s = c
            .get_historical_features(futures::stream::iter(garbage))
            .await?
            .into_inner();
        while s.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    }
    .await;
    expect(r, Code::InvalidArgument, "not a valid Arrow IPC stream");
    assert!(
        historical(&mut c, query(&["city_stats:demand"]), Some(&entity))
            .await
            .is_ok()
    );
    sb.stop().await.unwrap();
}

/// A join that must spill, and cannot (its directory is gone): UNAVAILABLE, with a message
/// that says what to look at and not where the server keeps its files; nothing is left
/// behind, and once the directory is back the same query answers.
async fn a_spill_that_fails_is_unavailable_and_says_no_server_path(db: Database) {
    let (sb, mut c, spill) = start_spilling(db).await;
    apply(&mut c, DEFS).await.unwrap();
    write_sources(&sb.dir().join("features"));
    let entity = entity_table();
    std::fs::remove_dir_all(&spill).unwrap();
    let q = || fpb::HistoricalQuery {
        feature_service: "driver_activity".into(),
        ..Default::default()
    };
    let e = historical(&mut c, q(), Some(&entity)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(
        e.message().contains("spilling the join to disk failed"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("/"), "a path in `{}`", e.message());
    std::fs::create_dir_all(&spill).unwrap();
    let (_, batches, summary) = historical(&mut c, q(), Some(&entity)).await.unwrap();
    assert!(summary.spilled);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 8);
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
    std::fs::remove_dir_all(&spill).unwrap();
    sb.stop().await.unwrap();
}

crate::on_both_backends!(
    bad_queries_get_clear_statuses,
    a_spill_that_fails_is_unavailable_and_says_no_server_path,
);
