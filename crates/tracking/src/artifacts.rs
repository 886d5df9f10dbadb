//! Artifacts: files under each run's artifact root, on a local directory or any
//! S3-compatible store (object_store). Paths are validated before any I/O: no
//! `..`, no absolute paths, nothing that escapes the run's root, names a local
//! filesystem can hold. Uploads appear whole or not at all
//! ([`mlops_storage::blob`] says how, and what a killed process leaves behind).
//!
//! Errors name the caller's paths, never the server's: the store's own messages
//! (which hold absolute local paths) go to the log.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mlops_storage::blob::{BlobStore, Failure, WriteError};
use object_store::path::Path;

use crate::error::{invalid, Result, TrackingError};

/// The owner name of this service's staging directory on a local root.
const STAGING_OWNER: &str = "tracking";

/// The configured artifact store and the URI of its root.
#[derive(Clone)]
pub struct Artifacts {
    blob: BlobStore,
    /// Largest file one upload may write; `None` for no limit.
    max_bytes: Option<u64>,
}

/// Most bytes a listing carries as its files' content ([`Artifacts::read_listed`]).
pub const MAX_INLINE_BYTES: u64 = 1 << 20;

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

/// Maps a store error on `rel` (what the caller asked for) to what the caller is
/// told; the store's message, with the server's paths, is logged.
fn store_err(op: &'static str, rel: &str, e: object_store::Error) -> TrackingError {
    match mlops_storage::blob::failure(&e) {
        Failure::NotFound => TrackingError::NotFound(format!("artifact `{rel}` not found")),
        Failure::Conflict => invalid(format!(
            "artifact path `{rel}` clashes with an existing artifact: a file where the path \
             needs a directory, or a directory where it names a file"
        )),
        Failure::Other => {
            tracing::warn!(op, path = %rel, error = %e, "artifact store call failed");
            TrackingError::Unavailable(format!(
                "artifact store error: could not {op} `{rel}`; the server log has the details"
            ))
        }
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
        Ok(Artifacts {
            blob: mlops_storage::blob::open(root, STAGING_OWNER)?,
            max_bytes: None,
        })
    }

    /// Refuses uploads larger than `max_bytes` (0 for no limit).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = (max_bytes > 0).then_some(max_bytes);
        self
    }

    /// Removes what uploads cut short by a stopped process left in the staging
    /// directory. Called once at start, before the service takes uploads.
    pub async fn remove_staged(&self) -> std::io::Result<usize> {
        self.blob.remove_staged().await
    }

    /// The root URI experiments' artifact locations start with.
    pub fn root_uri(&self) -> &str {
        &self.blob.root_uri
    }

    /// The store key of `rel` under a run's `artifact_uri`.
    fn key(&self, artifact_uri: &str, rel: &str) -> Result<Path> {
        let base = artifact_uri
            .strip_prefix(self.root_uri())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                TrackingError::FailedPrecondition(format!(
                    "the artifacts of this run or model are at {artifact_uri}, which this \
                     server does not store; read and write them there directly"
                ))
            })?;
        // Experiments made before locations were checked may hold `..` or `%2f`.
        crate::validate::location_under_root(base).map_err(|why| {
            TrackingError::FailedPrecondition(format!(
                "the artifact location {artifact_uri} of this run or model is not usable: {why}"
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
        chunks: BoxStream<'_, Result<Bytes>>,
    ) -> Result<u64> {
        check_path(rel, false)?;
        let key = self.key(artifact_uri, rel)?;
        self.blob
            .write_stream(&key, chunks, self.max_bytes, |_| {})
            .await
            .map_err(|e| match e {
                WriteError::Source(e) => e,
                WriteError::TooLarge { limit } => TrackingError::TooLarge(format!(
                    "artifact `{rel}` is larger than this server accepts ({limit} bytes, \
                     max_artifact_bytes)"
                )),
                WriteError::Store(e) => store_err("write", rel, e),
            })
    }

    /// Reads a file as a stream of chunks.
    pub async fn download(
        &self,
        artifact_uri: &str,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        check_path(rel, false)?;
        let key = self.key(artifact_uri, rel)?;
        let got = self.blob.store.get(&key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                TrackingError::NotFound(format!("artifact `{rel}` not found in this run"))
            }
            other => store_err("read", rel, other),
        })?;
        let rel = rel.to_owned();
        Ok(got
            .into_stream()
            .map_err(move |e| store_err("read", &rel, e))
            .boxed())
    }

    /// The content of each file of `entries` (a listing of `artifact_uri`) when together
    /// they hold at most `budget` bytes (and [`MAX_INLINE_BYTES`]); all `None` when they
    /// hold more. A directory, a file that went away since it was listed, or one that
    /// grew past what is left of the budget, is `None`: its caller downloads it and
    /// learns why there.
    pub async fn read_listed(
        &self,
        artifact_uri: &str,
        entries: &[Entry],
        budget: u64,
    ) -> Vec<Option<Bytes>> {
        let mut left = budget.min(MAX_INLINE_BYTES);
        let total: u64 = entries.iter().map(|e| e.size).sum();
        if left == 0 || total > left {
            return vec![None; entries.len()];
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let content = match e.is_dir {
                true => None,
                false => self.read_at_most(artifact_uri, &e.path, left).await,
            };
            left -= content.as_ref().map_or(0, |c| c.len() as u64);
            out.push(content);
        }
        out
    }

    /// The whole of file `rel` when it holds at most `limit` bytes; `None` otherwise
    /// or when it cannot be read.
    async fn read_at_most(&self, artifact_uri: &str, rel: &str, limit: u64) -> Option<Bytes> {
        let key = self.key(artifact_uri, rel).ok()?;
        let mut chunks = self.blob.store.get(&key).await.ok()?.into_stream();
        let mut parts = vec![];
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.ok()?;
            size += chunk.len() as u64;
            if size > limit {
                return None;
            }
            parts.push(chunk);
        }
        Some(match parts.len() {
            1 => parts.pop().unwrap_or_default(),
            _ => Bytes::from(parts.concat()),
        })
    }

    /// Lists what is directly under `rel` (a directory; empty for the root).
    pub async fn list(&self, artifact_uri: &str, rel: &str) -> Result<Vec<Entry>> {
        check_path(rel, true)?;
        let key = self.key(artifact_uri, rel)?;
        let base = self.key(artifact_uri, "")?;
        let listed = self
            .blob
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| store_err("list", rel, e))?;
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
        // A location outside the root: the message names it, never the server's root.
        match a.list("file:///elsewhere/1/x/artifacts", "").await {
            Err(TrackingError::FailedPrecondition(m)) => {
                assert!(m.contains("file:///elsewhere/1/x/artifacts"), "{m}");
                assert!(!m.contains(a.root_uri()), "{m}");
            }
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
        // Over the configured size: OUT_OF_RANGE, and nothing is kept.
        let limited = a.clone().with_max_bytes(4);
        let big = futures::stream::iter(vec![Ok(Bytes::from_static(b"12345"))]).boxed();
        let e = limited.upload(&uri, "big.bin", big).await.unwrap_err();
        assert!(
            matches!(&e, TrackingError::TooLarge(m) if m.contains("4 bytes")),
            "{e}"
        );
        assert!(matches!(
            a.download(&uri, "big.bin").await,
            Err(TrackingError::NotFound(_))
        ));
    }
}
