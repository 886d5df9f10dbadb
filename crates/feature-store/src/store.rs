//! Definitions as applied, versioned: the current objects, the history of every change,
//! and the events an apply publishes through the outbox, all in one transaction.

use std::collections::BTreeMap;

use mlops_events::outbox::Outbox;
use mlops_events::Envelope;
use mlops_proto::events::{topics, v1 as events};
use mlops_storage::{now_millis, Db, Migration};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::Row;

use crate::defs::{Definitions, FeatureView};
use crate::error::{FeatureStoreError, Result};

/// The schema.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "definitions, their history and version".into(),
            sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
            postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
        },
        Migration {
            version: 2,
            name: "the online store and materialization runs".into(),
            sqlite: include_str!("../migrations/sqlite/0002_online.sql").into(),
            postgres: include_str!("../migrations/postgres/0002_online.sql").into(),
        },
    ]
}

/// The kinds of definitions, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An entity.
    Entity,
    /// A data source.
    Source,
    /// A feature view.
    FeatureView,
    /// A feature service.
    FeatureService,
}

impl Kind {
    /// Every kind, in the order an apply reports them.
    pub const ALL: [Kind; 4] = [
        Kind::Entity,
        Kind::Source,
        Kind::FeatureView,
        Kind::FeatureService,
    ];

    /// Its name in the database and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::Source => "source",
            Kind::FeatureView => "feature_view",
            Kind::FeatureService => "feature_service",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A stored definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The definition version that last created or changed it.
    pub version: i64,
    /// When, in milliseconds since the epoch.
    pub updated_at_ms: i64,
    /// Its spec, JSON.
    pub spec: String,
}

/// What an apply did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// New objects.
    pub created: Vec<(Kind, String)>,
    /// Objects whose definition changed.
    pub changed: Vec<(Kind, String)>,
    /// Objects no longer in the set.
    pub removed: Vec<(Kind, String)>,
    /// The definition version afterwards.
    pub version: i64,
}

/// Reads and writes definitions.
#[derive(Clone)]
pub struct Store {
    db: Db,
    outbox: Outbox,
}

fn specs(defs: &Definitions) -> BTreeMap<(Kind, String), String> {
    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).expect("definitions serialize")
    }
    let mut out = BTreeMap::new();
    for (n, e) in &defs.entities {
        out.insert((Kind::Entity, n.clone()), json(e));
    }
    for (n, s) in &defs.sources {
        out.insert((Kind::Source, n.clone()), json(s));
    }
    for (n, v) in &defs.feature_views {
        out.insert((Kind::FeatureView, n.clone()), json(v));
    }
    for (n, s) in &defs.feature_services {
        out.insert((Kind::FeatureService, n.clone()), json(s));
    }
    out
}

fn view_event(name: &str, change: &str, version: i64, view: Option<&FeatureView>) -> Envelope {
    let msg = events::FeatureViewUpdated {
        name: name.to_owned(),
        change: change.to_owned(),
        version,
        entities: view.map(|v| v.entities.clone()).unwrap_or_default(),
        features: view
            .map(|v| v.schema.iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default(),
        ttl_nanos: view.map(|v| v.ttl_nanos).unwrap_or_default(),
        source: view.map(|v| v.source.clone()).unwrap_or_default(),
    };
    Envelope::of(
        topics::FEATURES,
        "/mlops/feature-store",
        name,
        format!("feature_views/{name}"),
        &msg,
    )
}

impl Store {
    /// A store on `db` (migrated by the caller, with the outbox's tables).
    pub fn new(db: Db) -> Self {
        Store {
            db,
            outbox: Outbox::new("feature-store"),
        }
    }

    /// The outbox the events go through.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Makes the stored definitions exactly `defs` (a valid set), in one transaction:
    /// rows, history, version and events. `dry_run` reports without writing.
    pub async fn apply(&self, defs: &Definitions, dry_run: bool) -> Result<Applied> {
        let wanted = specs(defs);
        let mut tx = self.db.begin().await?;
        // On PostgreSQL the row lock serialises applies from here to the commit.
        let current_version: i64 = if dry_run {
            sqlx::query("SELECT version FROM feature_store_version WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?
        } else {
            sqlx::query(
                "UPDATE feature_store_version SET version = version WHERE id = 1 RETURNING version",
            )
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?
        };
        let rows = sqlx::query("SELECT kind, name, spec FROM feature_store_definitions")
            .fetch_all(&mut *tx)
            .await?;
        let mut have: BTreeMap<(Kind, String), String> = BTreeMap::new();
        for r in rows {
            let kind: String = r.try_get(0)?;
            let kind = Kind::parse(&kind).ok_or_else(|| {
                FeatureStoreError::Internal(format!(
                    "a stored definition has an unknown kind `{kind}`"
                ))
            })?;
            have.insert((kind, r.try_get(1)?), r.try_get(2)?);
        }
        let mut applied = Applied {
            version: current_version,
            ..Applied::default()
        };
        for (key, spec) in &wanted {
            match have.get(key) {
                None => applied.created.push(key.clone()),
                Some(old) if old != spec => applied.changed.push(key.clone()),
                Some(_) => {}
            }
        }
        for key in have.keys() {
            if !wanted.contains_key(key) {
                applied.removed.push(key.clone());
            }
        }
        let nothing =
            applied.created.is_empty() && applied.changed.is_empty() && applied.removed.is_empty();
        if dry_run || nothing {
            tx.rollback().await?;
            if dry_run && !nothing {
                applied.version += 1;
            }
            return Ok(applied);
        }
        let version = current_version + 1;
        applied.version = version;
        let now = now_millis();
        let changes = applied
            .created
            .iter()
            .map(|k| (k, "created"))
            .chain(applied.changed.iter().map(|k| (k, "changed")))
            .chain(applied.removed.iter().map(|k| (k, "removed")));
        for ((kind, name), change) in changes {
            let spec = wanted.get(&(*kind, name.clone()));
            match spec {
                Some(spec) => {
                    sqlx::query(
                        "INSERT INTO feature_store_definitions (kind, name, version, spec, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, name) DO UPDATE SET \
                         version = excluded.version, spec = excluded.spec, updated_at = excluded.updated_at",
                    )
                    .bind(kind.as_str())
                    .bind(name)
                    .bind(version)
                    .bind(spec)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM feature_store_definitions WHERE kind = $1 AND name = $2",
                    )
                    .bind(kind.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(
                "INSERT INTO feature_store_history (version, kind, name, change, spec, applied_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(version)
            .bind(kind.as_str())
            .bind(name)
            .bind(change)
            .bind(spec)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if *kind == Kind::FeatureView {
                let event = view_event(name, change, version, defs.feature_views.get(name));
                let _enqueued = self.outbox.enqueue(&mut tx, &event).await?;
            }
        }
        sqlx::query("UPDATE feature_store_version SET version = $1 WHERE id = 1")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// The definition version.
    pub async fn version(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT version FROM feature_store_version WHERE id = 1")
                .fetch_one(self.db.reader())
                .await?
                .try_get(0)?,
        )
    }

    /// The stored definitions of `kind` (every kind when `None`), by kind and name, and
    /// the definition version.
    pub async fn list(&self, kind: Option<Kind>) -> Result<(Vec<Stored>, i64)> {
        let mut tx = self.db.reader().begin().await?;
        let version: i64 = sqlx::query("SELECT version FROM feature_store_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(
            "SELECT kind, name, version, updated_at, spec FROM feature_store_definitions",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let k: String = r.try_get(0)?;
            let Some(k) = Kind::parse(&k) else { continue };
            if kind.is_some_and(|want| want != k) {
                continue;
            }
            out.push(Stored {
                kind: k,
                name: r.try_get(1)?,
                version: r.try_get(2)?,
                updated_at_ms: r.try_get(3)?,
                spec: r.try_get(4)?,
            });
        }
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok((out, version))
    }

    /// The current definitions, as a set.
    pub async fn definitions(&self) -> Result<Definitions> {
        fn parse<T: DeserializeOwned>(s: &Stored) -> Result<T> {
            serde_json::from_str(&s.spec).map_err(|e| {
                FeatureStoreError::Internal(format!(
                    "the stored {} `{}` cannot be read: {e}",
                    s.kind.as_str(),
                    s.name
                ))
            })
        }
        let (stored, _) = self.list(None).await?;
        let mut defs = Definitions::default();
        for s in &stored {
            match s.kind {
                Kind::Entity => {
                    defs.entities.insert(s.name.clone(), parse(s)?);
                }
                Kind::Source => {
                    defs.sources.insert(s.name.clone(), parse(s)?);
                }
                Kind::FeatureView => {
                    defs.feature_views.insert(s.name.clone(), parse(s)?);
                }
                Kind::FeatureService => {
                    defs.feature_services.insert(s.name.clone(), parse(s)?);
                }
            }
        }
        Ok(defs)
    }
}
