//! Artifacts: files under each run's artifact root, on a local directory or any
//! S3-compatible store (object_store). Paths are validated before any I/O: no
//! `..`, no absolute paths, nothing that escapes the run's root.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};

use crate::error::{invalid, Result, TrackingError};

/// The configured artifact store and the URI of its root.
#[derive(Clone)]
pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
    root_uri: String,
}

/// One entry of a listing, relative to the run's root.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The path relative to the run's artifact root.
    pub path: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Bytes (0 for directories).
    pub size: u64,
}

fn store_err(e: object_store::Error) -> TrackingError {
    match e {
        object_store::Error::NotFound { path, .. } => {
            TrackingError::NotFound(format!("artifact {path} not found"))
        }
        other => TrackingError::Artifacts(other.to_string()),
    }
}

/// Checks a relative artifact path; `allow_empty` for "the root" in listings.
pub fn check_path(path: &str, allow_empty: bool) -> Result<()> {
    mlops_storage::blob::check_relative_path(path, allow_empty).map_err(|why| {
        invalid(format!(
            "artifact path {why}; give a relative path under the run's artifact root, like `model/model.onnx`"
        ))
    })
}

impl Artifacts {
    /// Opens the store at `root`: a directory path, `file:///dir`, or `s3://bucket/prefix`
    /// (credentials and endpoint from the standard `AWS_*` environment variables).
    pub fn open(root: &str) -> anyhow::Result<Self> {
        let blob = mlops_storage::blob::open(root)?;
        Ok(Artifacts {
            store: blob.store,
            root_uri: blob.root_uri,
        })
    }

    /// The root URI experiments' artifact locations start with.
    pub fn root_uri(&self) -> &str {
        &self.root_uri
    }

    /// The store key of `rel` under a run's `artifact_uri`.
    fn key(&self, artifact_uri: &str, rel: &str) -> Result<Path> {
        let base = artifact_uri
            .strip_prefix(&self.root_uri)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                TrackingError::FailedPrecondition(format!(
                    "the run's artifact location {artifact_uri} is not under this server's artifact root {}",
                    self.root_uri
                ))
            })?;
        let full = if rel.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{}", rel.trim_end_matches('/'))
        };
        Path::parse(&full).map_err(|e| invalid(format!("artifact path `{rel}` is not valid: {e}")))
    }

    /// Writes a file from a stream of chunks; on any error nothing is left behind.
    pub async fn upload(
        &self,
        artifact_uri: &str,
        rel: &str,
        mut chunks: BoxStream<'_, Result<Bytes>>,
    ) -> Result<u64> {
        check_path(rel, false)?;
        let key = self.key(artifact_uri, rel)?;
        let upload = self.store.put_multipart(&key).await.map_err(store_err)?;
        let mut writer = WriteMultipart::new(upload);
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(bytes) => {
                    size += bytes.len() as u64;
                    writer.write(&bytes);
                }
                Err(e) => {
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(error = %abort, "aborting a failed upload failed");
                    }
                    return Err(e);
                }
            }
        }
        writer.finish().await.map_err(store_err)?;
        Ok(size)
    }

    /// Reads a file as a stream of chunks.
    pub async fn download(
        &self,
        artifact_uri: &str,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        check_path(rel, false)?;
        let key = self.key(artifact_uri, rel)?;
        let got = self.store.get(&key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                TrackingError::NotFound(format!("artifact `{rel}` not found in this run"))
            }
            other => store_err(other),
        })?;
        Ok(got.into_stream().map_err(store_err).boxed())
    }

    /// Lists what is directly under `rel` (a directory; empty for the root).
    pub async fn list(&self, artifact_uri: &str, rel: &str) -> Result<Vec<Entry>> {
        check_path(rel, true)?;
        let key = self.key(artifact_uri, rel)?;
        let base = self.key(artifact_uri, "")?;
        let listed = self
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(store_err)?;
        let relative = |p: &Path| -> String {
            let s = p.as_ref();
            s.strip_prefix(base.as_ref())
                .unwrap_or(s)
                .trim_start_matches('/')
                .to_owned()
        };
        let mut out: Vec<Entry> = listed
            .common_prefixes
            .iter()
            .map(|p| Entry {
                path: relative(p),
                is_dir: true,
                size: 0,
            })
            .chain(listed.objects.iter().map(|o| Entry {
                path: relative(&o.location),
                is_dir: false,
                size: o.size,
            }))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_round_trip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let a = Artifacts::open(dir.path().to_str().unwrap()).unwrap();
        let uri = format!("{}/1/abc/artifacts", a.root_uri());
        let chunks = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ])
        .boxed();
        assert_eq!(a.upload(&uri, "model/m.bin", chunks).await.unwrap(), 11);
        let body: Vec<Bytes> = a
            .download(&uri, "model/m.bin")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(body.concat(), b"hello world");
        let root = a.list(&uri, "").await.unwrap();
        assert_eq!(
            root,
            vec![Entry {
                path: "model".into(),
                is_dir: true,
                size: 0
            }]
        );
        let sub = a.list(&uri, "model").await.unwrap();
        assert_eq!(
            sub,
            vec![Entry {
                path: "model/m.bin".into(),
                is_dir: false,
                size: 11
            }]
        );
        assert!(matches!(
            a.download(&uri, "nope").await,
            Err(TrackingError::NotFound(_))
        ));
        // a failed upload leaves nothing behind
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"x")),
            Err(invalid("client went away")),
        ])
        .boxed();
        assert!(a.upload(&uri, "half.bin", failing).await.is_err());
        assert!(matches!(
            a.download(&uri, "half.bin").await,
            Err(TrackingError::NotFound(_))
        ));
        assert!(matches!(
            a.list("file:///elsewhere/1/x/artifacts", "").await,
            Err(TrackingError::FailedPrecondition(_))
        ));
    }
}
