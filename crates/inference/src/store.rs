//! The models this service serves (its deployments) and their settings, kept across
//! restarts, with the deployment events each change publishes through the outbox.

use mlops_events::outbox::Outbox;
use mlops_events::Envelope;
use mlops_storage::{now_millis, Db, Migration};
use sqlx::Row;

use crate::error::Result;
use crate::repository::Selector;
use crate::settings::Settings;
use crate::traffic::TrafficSpec;

/// The schema.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "the models served and their settings".into(),
            sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
            postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
        },
        Migration {
            version: 2,
            name: "deployments keyed by the registered model's id".into(),
            sqlite: include_str!("../migrations/sqlite/0002_deployments.sql").into(),
            postgres: include_str!("../migrations/postgres/0002_deployments.sql").into(),
        },
        Migration {
            version: 3,
            name: "traffic splits and the version a rollback goes to".into(),
            sqlite: include_str!("../migrations/sqlite/0003_traffic.sql").into(),
            postgres: include_str!("../migrations/postgres/0003_traffic.sql").into(),
        },
    ]
}

/// A model to serve, as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The registered model's name.
    pub name: String,
    /// Its id ("" in rows written before ids were kept, until their next load).
    pub model_id: String,
    /// Which version.
    pub selector: Selector,
    /// How.
    pub settings: Settings,
    /// The version last served.
    pub version: i64,
    /// The traffic split.
    pub traffic: TrafficSpec,
    /// The version that served 100% before `version` (0: none).
    pub previous_version: i64,
}

/// Reads and writes the served models.
#[derive(Clone)]
pub struct Store {
    db: Db,
    outbox: Outbox,
}

impl Store {
    /// A store on `db`, migrated (with the outbox's tables).
    pub fn new(db: Db) -> Self {
        Store {
            db,
            outbox: Outbox::new("inference"),
        }
    }

    /// The outbox the deployment events go through.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records that `s.name` is served, replacing what was recorded, and enqueues `event`
    /// in the same transaction.
    pub async fn put(&self, s: &Stored, event: Option<Envelope>) -> Result<()> {
        let settings = serde_json::to_string(&s.settings).expect("settings serialize");
        let mut tx = self.db.begin().await?;
        // A rename in the registry: the model's id is the key, so an older row under its
        // old name goes.
        if !s.model_id.is_empty() {
            sqlx::query("DELETE FROM inference_models WHERE model_id = $1 AND name <> $2")
                .bind(&s.model_id)
                .bind(&s.name)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO inference_models (name, model_id, selector, settings, version, traffic, \
             previous_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET \
             model_id = excluded.model_id, selector = excluded.selector, \
             settings = excluded.settings, version = excluded.version, \
             traffic = excluded.traffic, previous_version = excluded.previous_version, \
             updated_at = excluded.updated_at",
        )
        .bind(&s.name)
        .bind(&s.model_id)
        .bind(s.selector.encode())
        .bind(settings)
        .bind(s.version)
        .bind(s.traffic.encode())
        .bind(s.previous_version)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        let _enqueued = match &event {
            Some(e) => Some(self.outbox.enqueue(&mut tx, e).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(())
    }

    /// Enqueues `event` alone (a change that writes no row: a failed swap).
    pub async fn publish(&self, event: &Envelope) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let _enqueued = self.outbox.enqueue(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets `name`, enqueuing `event` when it was recorded; `false` when it was not.
    pub async fn remove(&self, name: &str, event: Option<Envelope>) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query("DELETE FROM inference_models WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let removed = done.rows_affected() > 0;
        let _enqueued = match &event {
            Some(e) if removed => Some(self.outbox.enqueue(&mut tx, e).await?),
            _ => None,
        };
        tx.commit().await?;
        Ok(removed)
    }

    /// Every served model. A row this version cannot read is skipped with a warning.
    pub async fn all(&self) -> Result<Vec<Stored>> {
        let rows = sqlx::query(
            "SELECT name, selector, settings, version, model_id, traffic, previous_version \
             FROM inference_models ORDER BY name",
        )
        .fetch_all(self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let selector = Selector::decode(&r.get::<String, _>(1));
                let settings = serde_json::from_str(&r.get::<String, _>(2)).ok();
                let traffic = TrafficSpec::decode(&r.get::<String, _>(5));
                match (selector, settings, traffic) {
                    (Some(selector), Some(settings), Some(traffic)) => Some(Stored {
                        name,
                        model_id: r.get(4),
                        selector,
                        settings,
                        version: r.get(3),
                        traffic,
                        previous_version: r.get(6),
                    }),
                    _ => {
                        tracing::warn!(model = %name, "skipping a stored model this version cannot read");
                        None
                    }
                }
            })
            .collect())
    }
}
