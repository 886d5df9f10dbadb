//! Reference tables read once per version: a stored table is immutable (each upload has
//! its own key), so its columns, as drift samples, are kept for the next windows (a few
//! recent ones, in memory, by the table's key: a monitor deleted and created again never
//! sees its predecessor's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mlops_storage::blob::BlobStore;
use object_store::path::Path;

use crate::drift::Sample;
use crate::error::{MonitoringError, Result};
use crate::performance::Cbpe;
use crate::store::{ColumnProfile, Reference, Store};
use crate::table::{self, Columns, ParquetTable};

/// How many reference versions are kept in memory.
const KEEP: usize = 8;

/// A reference version with its columns read.
#[derive(Debug)]
pub struct Loaded {
    pub reference: Reference,
    /// One sample per column of the profile, in its order.
    pub samples: Vec<Sample>,
}

/// The references of every monitor, read on first use.
#[derive(Clone)]
pub struct References {
    blobs: BlobStore,
    cache: Arc<Mutex<HashMap<String, Arc<Loaded>>>>,
}

impl References {
    pub fn new(blobs: BlobStore) -> Self {
        References {
            blobs,
            cache: Arc::default(),
        }
    }

    /// Reference `version` of `monitor`, read from the store the first time.
    pub async fn get(&self, store: &Store, monitor: &str, version: i64) -> Result<Arc<Loaded>> {
        let reference = store.reference(monitor, version).await?;
        let key = reference.blob_key.clone();
        if let Some(l) = self.lock().get(&key) {
            return Ok(l.clone());
        }
        let path = Path::parse(&reference.blob_key)
            .map_err(|e| MonitoringError::Internal(format!("a stored reference key: {e}")))?;
        let bytes = self
            .blobs
            .store
            .get(&path)
            .await
            .map_err(|e| MonitoringError::Unavailable(format!("reading the reference: {e}")))?
            .bytes()
            .await
            .map_err(|e| MonitoringError::Unavailable(format!("reading the reference: {e}")))?;
        let loaded = tokio::task::spawn_blocking(move || {
            let internal = |e: table::TableError| {
                MonitoringError::Internal(format!("the stored reference is unreadable: {e}"))
            };
            let t = ParquetTable::new(bytes).map_err(internal)?;
            let samples = reference
                .profile
                .iter()
                .map(|c| {
                    let a = t.column(&c.name, "reference").map_err(internal)?;
                    table::to_sample(&c.name, a.as_ref(), c.column_type).map_err(internal)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, MonitoringError>(Loaded { reference, samples })
        })
        .await
        .map_err(|e| MonitoringError::Internal(format!("reading the reference: {e}")))??;
        let loaded = Arc::new(loaded);
        let mut cache = self.lock();
        if cache.len() >= KEEP {
            cache.clear();
        }
        cache.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Stores `parquet` (`rows` rows, profiled) as `monitor`'s next reference version,
    /// or, with `capture`, as the end of that capture: `None` when another replica ended
    /// it first (the table written here is removed again).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn save(
        &self,
        store: &Store,
        monitor: &str,
        parquet: Bytes,
        rows: i64,
        profile: &[ColumnProfile],
        cbpe: Option<&Cbpe>,
        capture: Option<&str>,
    ) -> Result<Option<Reference>> {
        let key = format!(
            "monitors/{monitor}/reference-{}.parquet",
            uuid::Uuid::new_v4()
        );
        let path = Path::parse(&key)
            .map_err(|e| MonitoringError::InvalidArgument(format!("monitor name: {e}")))?;
        self.blobs
            .store
            .put(&path, parquet.into())
            .await
            .map_err(|e| MonitoringError::Unavailable(format!("storing the reference: {e}")))?;
        let saved = match capture {
            None => store
                .add_reference(monitor, &key, rows, profile, cbpe)
                .await
                .map(Some),
            Some(id) => {
                store
                    .finish_capture(monitor, id, &key, rows, profile, cbpe)
                    .await
            }
        };
        if !matches!(saved, Ok(Some(_))) {
            let _ = self.blobs.store.delete(&path).await;
        }
        saved
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
