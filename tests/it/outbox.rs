//! The outbox's one-statement write on both backends: `Outbox::write_with` enqueues
//! an event only with the write it goes with.

use mlops_tests::Database;

use crate::events::{consumer_db, run_created};

crate::on_both_backends!(an_event_is_enqueued_only_with_its_write);

/// `Outbox::write_with`: the event goes in when the write returned a row, not
/// when it returned none, and a failed enqueue takes the write back with it.
async fn an_event_is_enqueued_only_with_its_write(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = consumer_db(db, dir.path()).await;
    let outbox = mlops_events::outbox::Outbox::new("consumer");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db.reader())
                .await
                .unwrap()
        }
    };
    let first = run_created("it.write-with", "r1");
    let insert = "INSERT INTO seen (event_id, run_id) VALUES ($1, $2) RETURNING seq";
    let wrote = outbox
        .write_with(&db, insert, 2, |q| q.bind("e1").bind("r1"), &first)
        .await
        .unwrap();
    assert!(wrote);
    assert_eq!(count("SELECT COUNT(*) FROM seen").await, 1);
    let stored: (String, Vec<u8>) = sqlx::query_as("SELECT event_id, payload FROM consumer_outbox")
        .fetch_one(db.reader())
        .await
        .unwrap();
    assert_eq!(stored, (first.id.clone(), first.payload.clone()));

    // A write that returns no row enqueues nothing.
    let update = "UPDATE seen SET run_id = $1 WHERE event_id = $2 RETURNING seq";
    let other = run_created("it.write-with", "r2");
    let wrote = outbox
        .write_with(
            &db,
            update,
            2,
            |q| q.bind("r2").bind("no-such-event"),
            &other,
        )
        .await
        .unwrap();
    assert!(!wrote);
    assert_eq!(count("SELECT COUNT(*) FROM consumer_outbox").await, 1);

    // An event the outbox refuses (its id is taken) leaves the write undone.
    outbox
        .write_with(&db, update, 2, |q| q.bind("changed").bind("e1"), &first)
        .await
        .unwrap_err();
    let run_id: String = sqlx::query_scalar("SELECT run_id FROM seen")
        .fetch_one(db.reader())
        .await
        .unwrap();
    assert_eq!(run_id, "r1");
    assert_eq!(count("SELECT COUNT(*) FROM consumer_outbox").await, 1);
}
