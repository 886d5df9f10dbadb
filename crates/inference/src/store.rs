//! The models this service serves and their settings, kept across restarts.

use mlops_storage::{now_millis, Db, Migration};
use sqlx::Row;

use crate::error::Result;
use crate::repository::Selector;
use crate::settings::Settings;

/// The schema.
pub fn migrations() -> Vec<Migration> {
    vec![Migration {
        version: 1,
        name: "the models served and their settings".into(),
        sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
        postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
    }]
}

/// A model to serve, as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The registered model's name.
    pub name: String,
    /// Which version.
    pub selector: Selector,
    /// How.
    pub settings: Settings,
    /// The version last served.
    pub version: i64,
}

/// Reads and writes the served models.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store on `db`, migrated.
    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records that `name` is served, replacing what was recorded.
    pub async fn put(&self, s: &Stored) -> Result<()> {
        let settings = serde_json::to_string(&s.settings).expect("settings serialize");
        sqlx::query(
            "INSERT INTO inference_models (name, selector, settings, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET \
             selector = excluded.selector, settings = excluded.settings, \
             version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(&s.name)
        .bind(s.selector.encode())
        .bind(settings)
        .bind(s.version)
        .bind(now_millis())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// Forgets `name`; `false` when it was not recorded.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM inference_models WHERE name = $1")
            .bind(name)
            .execute(self.db.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every served model. A row this version cannot read is skipped with a warning.
    pub async fn all(&self) -> Result<Vec<Stored>> {
        let rows = sqlx::query(
            "SELECT name, selector, settings, version FROM inference_models ORDER BY name",
        )
        .fetch_all(self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let selector = Selector::decode(&r.get::<String, _>(1));
                let settings = serde_json::from_str(&r.get::<String, _>(2)).ok();
                match (selector, settings) {
                    (Some(selector), Some(settings)) => Some(Stored {
                        name,
                        selector,
                        settings,
                        version: r.get(3),
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
