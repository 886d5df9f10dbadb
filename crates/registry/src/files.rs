//! The registry's copy of each version's files, under
//! `<artifact root>/<model id>/<version>/`, on a local directory or S3.
//! Registered versions are immutable: deleting the run they came from does not
//! take the model away. Files appear whole or not at all
//! ([`mlops_storage::blob`] says how, and what a killed process leaves behind).

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mlops_storage::blob::{Failure, Staged, WriteError};
use object_store::path::Path;

use crate::error::{invalid, RegistryError, Result};

/// The blob store holding model files.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    blob: mlops_storage::blob::BlobStore,
}

/// A file written for a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Its path inside the version.
    pub rel: String,
    /// Bytes.
    pub size: u64,
    /// The whole content, kept when asked for (to read an ONNX signature).
    pub content: Option<Vec<u8>>,
}

/// The owner name of this service's staging directory on a local root.
const STAGING_OWNER: &str = "registry";

/// Maps a store error on `rel` (a file of a version) to what the caller is told;
/// the store's message, with the server's paths, is logged.
fn store_err(op: &'static str, rel: &str, e: object_store::Error) -> RegistryError {
    match mlops_storage::blob::failure(&e) {
        Failure::NotFound => RegistryError::NotFound(format!("model file `{rel}` not found")),
        Failure::Conflict => invalid(format!(
            "model file path `{rel}` clashes with another file of the version: a file where \
             the path needs a directory, or a directory where it names a file"
        )),
        Failure::Other => {
            tracing::warn!(op, path = %rel, error = %e, "model file store call failed");
            RegistryError::Unavailable(format!(
                "model file store error: could not {op} `{rel}`; the server log has the details"
            ))
        }
    }
}

impl ModelFiles {
    /// Opens the store at `root` (a directory, `file:///dir` or `s3://bucket/prefix`).
    pub fn open(root: &str) -> anyhow::Result<Self> {
        Ok(ModelFiles {
            blob: mlops_storage::blob::open(root, STAGING_OWNER)?,
        })
    }

    /// Removes what uploads cut short by a stopped process left in the staging
    /// directory. Called once at start, before the service takes uploads.
    pub async fn remove_staged(&self) -> std::io::Result<usize> {
        self.blob.remove_staged().await
    }

    /// Where a version's files live, as a URI.
    pub fn location(&self, model_id: &str, version: i64) -> String {
        format!("{}/{model_id}/{version}", self.blob.root_uri)
    }

    fn key(model_id: &str, version: i64, rel: &str) -> Result<Path> {
        mlops_storage::blob::check_relative_path(rel, false)
            .map_err(|why| invalid(format!("model file path {why}")))?;
        Path::parse(format!("{model_id}/{version}/{rel}"))
            .map_err(|e| invalid(format!("model file path `{rel}` is not valid: {e}")))
    }

    /// Writes one file from a stream of chunks, keeping the content in memory when
    /// `keep` (up to `limit` bytes in all). On an error nothing of it is left behind.
    pub async fn write(
        &self,
        model_id: &str,
        version: i64,
        rel: &str,
        chunks: BoxStream<'_, Result<Bytes>>,
        keep: bool,
        limit: u64,
    ) -> Result<Written> {
        let key = Self::key(model_id, version, rel)?;
        let mut content = keep.then(Vec::new);
        let size = self
            .blob
            .write_stream(&key, chunks, Some(limit), |bytes| {
                if let Some(c) = content.as_mut() {
                    c.extend_from_slice(bytes);
                }
            })
            .await
            .map_err(|e| match e {
                WriteError::Source(e) => e,
                WriteError::TooLarge { limit } => invalid(format!(
                    "the model is larger than this registry accepts ({limit} bytes, \
                     MLOPS_REGISTRY_MAX_MODEL_BYTES)"
                )),
                WriteError::Store(e) => store_err("write", rel, e),
            })?;
        Ok(Written {
            rel: rel.to_owned(),
            size,
            content,
        })
    }

    /// Whether the store is a local directory.
    pub fn is_local(&self) -> bool {
        self.blob.is_local()
    }

    /// On a local store, writes a small file's content to the staging directory
    /// before its version exists, creating the directory of `likely` (a model id
    /// and the version it will likely be) meanwhile: [`ModelFiles::place`] then only
    /// renames it. None on S3.
    pub async fn stage(
        &self,
        parts: Vec<Bytes>,
        likely: Option<(&str, i64)>,
    ) -> Result<Option<Staged>> {
        let dir = likely.map(|(id, v)| Path::from(format!("{id}/{v}")));
        self.blob
            .stage(parts, dir.as_ref())
            .await
            .map_err(|e| store_err("stage", "the model file", e))
    }

    /// Puts a staged file in place as `rel` of a version; `content` is what
    /// [`Written`] keeps of it.
    pub async fn place(
        &self,
        staged: Staged,
        model_id: &str,
        version: i64,
        rel: &str,
        content: Option<Vec<u8>>,
    ) -> Result<Written> {
        let key = Self::key(model_id, version, rel)?;
        let size = staged.size();
        staged
            .place(&key)
            .await
            .map_err(|e| store_err("write", rel, e))?;
        Ok(Written {
            rel: rel.to_owned(),
            size,
            content,
        })
    }

    /// Removes every file of a version (after a failed registration or a delete).
    pub async fn remove_version(&self, model_id: &str, version: i64) {
        self.remove_under(Path::from(format!("{model_id}/{version}")))
            .await
    }

    /// Removes every file of a model.
    pub async fn remove_model(&self, model_id: &str) {
        self.remove_under(Path::from(model_id.to_owned())).await
    }

    /// Deletes everything under `prefix`; failures are logged, not returned (the
    /// metadata is already gone, and a leftover file harms nothing).
    async fn remove_under(&self, prefix: Path) {
        let listed: Vec<_> = match self.blob.store.list(Some(&prefix)).try_collect().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "listing model files to remove them failed");
                return;
            }
        };
        for meta in listed {
            if let Err(e) = self.blob.store.delete(&meta.location).await {
                tracing::warn!(path = %meta.location, error = %e, "removing a model file failed");
            }
        }
    }

    /// Reads one file of a version as a stream of chunks.
    pub async fn read(
        &self,
        model_id: &str,
        version: i64,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let key = Self::key(model_id, version, rel)?;
        let got = self.blob.store.get(&key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                RegistryError::NotFound(format!("file `{rel}` not found in this version"))
            }
            other => store_err("read", rel, other),
        })?;
        let rel = rel.to_owned();
        Ok(got
            .into_stream()
            .map_err(move |e| store_err("read", &rel, e))
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn write_read_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let files = ModelFiles::open(dir.path().to_str().unwrap()).unwrap();
        let chunks = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"def")),
        ])
        .boxed();
        let w = files
            .write("m1", 1, "model.onnx", chunks, true, 100)
            .await
            .unwrap();
        assert_eq!(w.size, 6);
        assert_eq!(w.content.as_deref(), Some(&b"abcdef"[..]));
        let back: Vec<Bytes> = files
            .read("m1", 1, "model.onnx")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(back.concat(), b"abcdef");
        // over the limit: refused, nothing left
        let big = futures::stream::iter(vec![Ok(Bytes::from(vec![0u8; 10]))]).boxed();
        let e = files
            .write("m1", 2, "big.bin", big, false, 5)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(matches!(
            files.read("m1", 2, "big.bin").await,
            Err(RegistryError::NotFound(_))
        ));
        files.remove_version("m1", 1).await;
        assert!(matches!(
            files.read("m1", 1, "model.onnx").await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(files.location("m1", 3).ends_with("/m1/3"));
        assert!(files
            .write("m1", 1, "../x", futures::stream::empty().boxed(), false, 1)
            .await
            .is_err());
    }
}
