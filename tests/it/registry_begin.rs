//! Step one of a registration, at the store: on PostgreSQL a version is begun in one
//! statement when the model is as read just before, and in a transaction when another
//! registration or a rename came first; on SQLite always in a transaction. Either way
//! the same numbers, tags, storage locations and events.

use std::time::Duration;

use mlops_events::outbox::Outbox;
use mlops_proto::events::v1 as ev;
use mlops_proto::registry::v1 as rpb;
use mlops_registry::error::RegistryError;
use mlops_registry::metrics::Metrics;
use mlops_registry::store::{migrations, NewVersion, Store};
use mlops_tests::Database;
use prost::Message;

crate::on_both_backends!(a_version_begins_alike_whether_or_not_the_model_changed_first);

async fn a_version_begins_alike_whether_or_not_the_model_changed_first(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    // Two connections: on PostgreSQL one for searches and one for everything else, so
    // every statement below runs on the same writer connection.
    let raw = crate::search_limits::raw_db(db, dir.path(), 2, Duration::from_secs(30)).await;
    raw.migrate("registry", &migrations()).await.unwrap();
    raw.migrate(
        "registry-outbox",
        &mlops_events::outbox::migrations("registry"),
    )
    .await
    .unwrap();
    let store = Store::new(raw.clone(), Outbox::new("registry"), Metrics::new());
    store
        .create_model(rpb::CreateRegisteredModelRequest {
            name: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let tag = |key: &str, value: &str| rpb::Tag {
        key: key.into(),
        value: value.into(),
    };
    let new = NewVersion {
        source: "runs:/r1/model".into(),
        run_id: "r1".into(),
        lineage: rpb::Lineage {
            run_id: "r1".into(),
            ..Default::default()
        },
        description: "first".into(),
        // A key given twice: the last value wins.
        tags: vec![tag("a", "1"), tag("b", "2"), tag("a", "3")],
    };
    let location = |id: &str, v: i64| format!("file:///models/{id}/{v}");

    let expected = store.expect_version("m").await;
    assert_eq!(expected.is_some(), db == Database::Postgres);
    let first = store
        .begin_version("m", &new, location, expected.clone())
        .await
        .unwrap();
    // The same expectation is stale now: the version takes the next number all the same.
    let second = store
        .begin_version("m", &new, location, expected)
        .await
        .unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    assert_eq!(first.model_id, second.model_id);
    // Both ways commit without waiting for the WAL flush (step two's commit waits for
    // it), and only their own transaction does: the connection's setting is unchanged.
    if db == Database::Postgres {
        assert_eq!(raw.writer().options().get_max_connections(), 1);
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(raw.writer())
            .await
            .unwrap();
        assert_eq!(
            setting, "on",
            "a registration's setting outlived its statement"
        );
    }

    // Read before a rename, an expectation finds no model by the old name any more.
    let before = store.expect_version("m").await;
    store.rename_model("m", "renamed").await.unwrap();
    let e = store
        .begin_version("m", &new, location, before)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)), "{e}");

    for p in [&first, &second] {
        let v = store.get_version("renamed", p.version).await.unwrap();
        assert_eq!(
            v.status,
            rpb::ModelVersionStatus::PendingRegistration as i32
        );
        assert_eq!(v.storage_location, location(&p.model_id, p.version));
        assert_eq!(p.location, v.storage_location);
        assert_eq!(
            (v.source.as_str(), v.run_id.as_str()),
            ("runs:/r1/model", "r1")
        );
        assert_eq!(v.description, "first");
        assert_eq!(v.lineage.unwrap().run_id, "r1");
        let tags: Vec<(String, String)> = v.tags.into_iter().map(|t| (t.key, t.value)).collect();
        assert_eq!(
            tags,
            [("a".to_owned(), "3".to_owned()), ("b".into(), "2".into())]
        );
    }

    let events: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT ce_type, key, payload FROM registry_outbox ORDER BY seq")
            .fetch_all(raw.reader())
            .await
            .unwrap();
    assert_eq!(
        events.len(),
        2,
        "one event per version begun, none for the refused one"
    );
    for ((ce_type, key, payload), p) in events.iter().zip([&first, &second]) {
        assert_eq!(ce_type, "mlops.events.v1.ModelVersionCreated");
        assert_eq!(key, &p.model_id);
        let created = ev::ModelVersionCreated::decode(&payload[..]).unwrap();
        assert_eq!(
            created,
            ev::ModelVersionCreated {
                model_id: p.model_id.clone(),
                name: "m".into(),
                version: p.version,
                source: "runs:/r1/model".into(),
                run_id: "r1".into(),
                creation_timestamp: p.created,
            }
        );
    }
}
