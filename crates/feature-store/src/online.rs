//! The online store: the newest value of every key of each online feature view, in a
//! table of the metadata database, with an in-process cache per view that a
//! materialization here, or an event from another replica, invalidates.
//!
//! - [`materialize`]: from the offline source into the table, one transaction per view;
//! - [`push`]: rows the caller sends, the same way;
//! - [`ingest`]: rows from the Kafka topics of kafka sources, the same way;
//! - [`serve`]: `GetOnlineFeatures` from the cache;
//! - [`value`]: values and keys.

pub mod avro;
pub mod ingest;
pub mod materialize;
pub mod push;
pub mod serve;
pub mod value;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sqlx::Row;

use crate::error::{FeatureStoreError, Result};
use crate::offline::files::OfflineStore;
use crate::store::Store;
use value::Val;

/// A view's online rows, by encoded key.
#[derive(Debug, Default)]
pub struct ViewRows {
    /// Encoded key → its newest row.
    pub rows: HashMap<String, OnlineRow>,
}

/// A key's newest value of a view.
#[derive(Debug, Clone)]
pub struct OnlineRow {
    /// Its event time, nanoseconds since the epoch.
    pub event_ts: i64,
    /// Feature name → value (absent or `None`: null).
    pub values: HashMap<String, Option<Val>>,
}

/// The online store.
#[derive(Clone)]
pub struct OnlineStore {
    store: Store,
    offline: OfflineStore,
    pub(crate) metrics: crate::metrics::Metrics,
    cache: Arc<RwLock<HashMap<String, Arc<ViewRows>>>>,
    /// Bumped by every invalidation, so a load that raced one is not cached.
    generation: Arc<AtomicU64>,
    /// Request plans of the current definitions (`serve`).
    plans: Arc<std::sync::Mutex<serve::Plans>>,
}

impl OnlineStore {
    /// The online store over `store`'s database, materializing from `offline`.
    pub fn new(store: Store, offline: OfflineStore) -> Self {
        OnlineStore {
            store,
            offline,
            metrics: crate::metrics::Metrics::new(),
            cache: Arc::default(),
            generation: Arc::default(),
            plans: Arc::default(),
        }
    }

    /// Sets each view's newest-event gauge from the table (at start).
    pub async fn report_freshness(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT view_name, MAX(event_ts) FROM feature_store_online GROUP BY view_name",
        )
        .fetch_all(self.store.db().reader())
        .await?;
        for r in rows {
            let view: String = r.try_get(0)?;
            let newest: i64 = r.try_get(1)?;
            self.metrics
                .newest_event
                .with_label_values(&[&view])
                .set(newest.div_euclid(1_000_000_000));
        }
        Ok(())
    }

    /// Forgets the cached rows of `view` (the next read loads them again).
    pub fn invalidate(&self, view: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(view);
    }

    /// Forgets every cached view.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The rows of `view`, from the cache or the database.
    pub async fn rows(&self, view: &str) -> Result<Arc<ViewRows>> {
        if let Some(v) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(view)
        {
            return Ok(v.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let rows = sqlx::query(
            "SELECT entity_key, event_ts, payload FROM feature_store_online WHERE view_name = $1",
        )
        .bind(view)
        .fetch_all(self.store.db().reader())
        .await?;
        let mut out = ViewRows::default();
        for r in rows {
            let key: String = r.try_get(0)?;
            let payload: String = r.try_get(2)?;
            let values = serde_json::from_str(&payload).map_err(|e| {
                FeatureStoreError::Internal(format!(
                    "the online row of {view} {key} cannot be read: {e}"
                ))
            })?;
            out.rows.insert(
                key,
                OnlineRow {
                    event_ts: r.try_get(1)?,
                    values,
                },
            );
        }
        let out = Arc::new(out);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            cache.insert(view.to_owned(), out.clone());
        }
        Ok(out)
    }
}
