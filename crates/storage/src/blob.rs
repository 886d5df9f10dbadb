//! Blob storage for artifacts and model files: a local directory or any
//! S3-compatible store behind one `ObjectStore`, the path rules every service
//! applies before touching it, and the one way files are written.
//!
//! Writes never leave a partial file where a reader could see it:
//! - on a local root a file is streamed into `<root>/.staging/<owner>/<uuid>` and
//!   renamed into place when complete (one rename on one filesystem: atomic). A
//!   process killed mid-upload leaves its staging file there, never beside the
//!   target, and the owning service removes every such file when it starts
//!   ([`BlobStore::remove_staged`]): a local root belongs to one process (more
//!   replicas need S3), and `<owner>` keeps two services that share a root apart;
//! - on S3 a file is a multipart upload, aborted on any error. An upload cut short
//!   by a killed process stays invisible (S3 shows nothing until it completes) and
//!   is cleaned by the bucket's lifecycle rule
//!   (`AbortIncompleteMultipartUpload`), which a deployment must set.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};

mod staged;
use staged::write_small;
pub use staged::Staged;

/// Longest file or directory name in a path, in bytes: the limit of the common
/// local filesystems (ext4, XFS, APFS, NTFS).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Longest relative path, in bytes: S3's limit for a whole key, and with a root in
/// front still far from a local filesystem's `PATH_MAX` (4096).
pub const MAX_PATH_BYTES: usize = 1024;

/// The directory under a local root that holds files being written.
pub const STAGING_DIR: &str = ".staging";

/// Parts of a multipart upload in flight at once before a write waits: bounds
/// the memory one upload holds when the store is slower than the client.
const MAX_PARTS_IN_FLIGHT: usize = 8;

/// On a local root, a file of at most this many bytes is held in memory and
/// written with one blocking call (staging file, then rename) instead of a
/// multipart upload's four: most model files and artifacts are small, and each
/// blocking call is a hop between threads.
pub const SMALL_FILE_BYTES: usize = 1 << 20;

/// An opened store and the URI of its root (`file:///...` or `s3://bucket/prefix`).
#[derive(Clone)]
pub struct BlobStore {
    /// Keys are relative to the root.
    pub store: Arc<dyn ObjectStore>,
    /// The root's URI, without a trailing slash.
    pub root_uri: String,
    /// For a local root: where files are written before they are renamed into place.
    staging: Option<Staging>,
}

/// A local root's staging directory, as a key prefix and as a directory, and the
/// root itself (which maps keys to files).
#[derive(Clone)]
struct Staging {
    prefix: Path,
    dir: PathBuf,
    local: Arc<object_store::local::LocalFileSystem>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("root_uri", &self.root_uri)
            .finish()
    }
}

/// Opens the store at `root`: a directory path (created if missing), `file:///dir`,
/// or `s3://bucket/prefix` (credentials and endpoint from the standard `AWS_*`
/// environment variables). `owner` (a service's name, like `tracking`) names its
/// staging directory on a local root, `<root>/.staging/<owner>`.
pub fn open(root: &str, owner: &str) -> Result<BlobStore, object_store::Error> {
    if let Some(rest) = root.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()?;
        let prefix = prefix.trim_end_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        let root_uri = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        return Ok(BlobStore {
            store,
            root_uri,
            staging: None,
        });
    }
    let dir = root.strip_prefix("file://").unwrap_or(root);
    let io = |e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{dir}: {e}").into(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let dir = std::fs::canonicalize(dir).map_err(io)?;
    let local = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?);
    let prefix = Path::from_iter([STAGING_DIR, owner]);
    Ok(BlobStore {
        store: local.clone(),
        root_uri: format!("file://{}", dir.display()),
        staging: Some(Staging {
            dir: dir.join(STAGING_DIR).join(owner),
            prefix,
            local,
        }),
    })
}

/// Why a streamed write failed. Nothing of the file is left in place either way.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The caller's stream of chunks failed.
    Source(E),
    /// The stream carried more bytes than the limit.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The store failed (its message may hold server paths: log it, do not answer it).
    Store(object_store::Error),
}

/// What a store error means for the caller, told apart without its message
/// (which holds the server's own paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing is stored at the key.
    NotFound,
    /// The key clashes with what is stored: a file where the path needs a
    /// directory, or a directory where it names a file.
    Conflict,
    /// Anything else: the store is unreachable, full, or refused the call.
    Other,
}

/// Classifies a store error (see [`Failure`]).
pub fn failure(e: &object_store::Error) -> Failure {
    match e {
        object_store::Error::NotFound { .. } => return Failure::NotFound,
        object_store::Error::AlreadyExists { .. } => return Failure::Conflict,
        _ => {}
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            return match io.kind() {
                ErrorKind::IsADirectory | ErrorKind::NotADirectory | ErrorKind::AlreadyExists => {
                    Failure::Conflict
                }
                _ => Failure::Other,
            };
        }
        source = s.source();
    }
    Failure::Other
}

impl BlobStore {
    /// Writes `key` from a stream of chunks and returns its size. At most `limit`
    /// bytes when given; `on_chunk` sees each chunk before it is written (to keep
    /// a copy). The file appears whole or not at all: on any error what was written
    /// is removed (see the module's comment for a process killed meanwhile).
    pub async fn write_stream<E>(
        &self,
        key: &Path,
        mut chunks: BoxStream<'_, Result<Bytes, E>>,
        limit: Option<u64>,
        mut on_chunk: impl FnMut(&Bytes) + Send,
    ) -> Result<u64, WriteError<E>> {
        let mut size = 0u64;
        let over = |size: u64| match limit {
            Some(limit) if size > limit => Err(WriteError::TooLarge { limit }),
            _ => Ok(()),
        };
        // On a local root, read up to SMALL_FILE_BYTES first: a stream that ends
        // within them is written in one go.
        let mut head = vec![];
        if let Some(staging) = &self.staging {
            let mut held = 0;
            while held <= SMALL_FILE_BYTES {
                match chunks.next().await {
                    None => {
                        write_small(staging, key, head).await?;
                        return Ok(size);
                    }
                    Some(Ok(bytes)) => {
                        size += bytes.len() as u64;
                        over(size)?;
                        on_chunk(&bytes);
                        held += bytes.len();
                        head.push(bytes);
                    }
                    Some(Err(e)) => return Err(WriteError::Source(e)),
                }
            }
        }
        let staged = self
            .staging
            .as_ref()
            .map(|s| s.prefix.child(uuid::Uuid::new_v4().simple().to_string()));
        let upload = self
            .store
            .put_multipart(staged.as_ref().unwrap_or(key))
            .await
            .map_err(WriteError::Store)?;
        let mut writer = WriteMultipart::new(upload);
        let mut held = head.into_iter();
        let failed = loop {
            let bytes = match held.next() {
                // What was held is written first: it is counted and passed on already.
                Some(bytes) => bytes,
                None => match chunks.next().await {
                    None => break None,
                    Some(Err(e)) => break Some(WriteError::Source(e)),
                    Some(Ok(bytes)) => {
                        size += bytes.len() as u64;
                        if let Err(e) = over(size) {
                            break Some(e);
                        }
                        on_chunk(&bytes);
                        bytes
                    }
                },
            };
            if let Err(e) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                break Some(WriteError::Store(e));
            }
            writer.put(bytes);
        };
        if let Some(e) = failed {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "aborting a failed upload failed");
            }
            return Err(e);
        }
        // A failed finish aborts the upload itself (or its drop removes the file).
        writer.finish().await.map_err(WriteError::Store)?;
        if let Some(staged) = staged {
            if let Err(e) = self.store.rename(&staged, key).await {
                if let Err(rm) = self.store.delete(&staged).await {
                    tracing::warn!(error = %rm, "removing a staged upload failed");
                }
                return Err(WriteError::Store(e));
            }
        }
        Ok(size)
    }

    /// Removes every file left in this owner's staging directory by a process
    /// that stopped mid-upload, and returns how many. Call it once at start,
    /// before taking uploads: a local root belongs to one process, so nothing
    /// there is in flight. A no-op on S3 (see the module's comment).
    pub async fn remove_staged(&self) -> std::io::Result<usize> {
        let Some(staging) = &self.staging else {
            return Ok(0);
        };
        let mut entries = match tokio::fs::read_dir(&staging.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_type().await?.is_dir() {
                tokio::fs::remove_dir_all(entry.path()).await?;
            } else {
                tokio::fs::remove_file(entry.path()).await?;
            }
            removed += 1;
        }
        Ok(removed)
    }
}

/// `s` with its `%XX` escapes decoded once, as a URL is; other bytes, and `%`
/// without two hex digits, stay as they are.
pub fn percent_decoded(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Whether a file name ends in `#` and digits: a local store writes its own
/// temporary files under such names beside the target and hides them from
/// listings, so a file of that name would be invisible or clash with one.
fn is_reserved_name(name: &[u8]) -> bool {
    match name.iter().rposition(|b| *b == b'#') {
        Some(i) => i + 1 < name.len() && name[i + 1..].iter().all(u8::is_ascii_digit),
        None => false,
    }
}

/// Checks a relative path given by a client: not absolute, no `..`, no empty or `.`
/// segments, no backslashes or NUL bytes, and none of these percent-encoded (the
/// stores keep `%2f` as it is, but a client, a proxy or a shell that decodes the
/// name would see a `/` or a `..`); names of at most [`MAX_SEGMENT_BYTES`], the
/// whole at most [`MAX_PATH_BYTES`], no name ending in `#` and digits (reserved by
/// the local store for files being written). `allow_empty` for "the root" in
/// listings. The error says what is wrong in words a person can act on.
pub fn check_relative_path(path: &str, allow_empty: bool) -> Result<(), String> {
    if path.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err("must not be empty".into())
        };
    }
    if path.starts_with('/')
        || path.starts_with('\\')
        || path.contains(":\\")
        || path.contains("://")
    {
        return Err(format!("`{path}` is absolute"));
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(format!("`{path}` contains a backslash or NUL byte"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "`{}...` is {} bytes long; the limit is {MAX_PATH_BYTES} bytes",
            path.chars().take(40).collect::<String>(),
            path.len()
        ));
    }
    for seg in path.trim_end_matches('/').split('/') {
        match seg {
            ".." => return Err(format!("`{path}` escapes the root with `..`")),
            "." | "" => return Err(format!("`{path}` has an empty or `.` segment")),
            _ => {}
        }
        if seg.len() > MAX_SEGMENT_BYTES {
            return Err(format!(
                "`{path}` has a name of {} bytes; the limit is {MAX_SEGMENT_BYTES} bytes per name",
                seg.len()
            ));
        }
        let decoded = percent_decoded(seg);
        if decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
            return Err(format!(
                "`{path}` has a percent-encoded slash, backslash or NUL byte (`%2f`, `%5c`, `%00`)"
            ));
        }
        if matches!(&decoded[..], b"." | b"..") {
            return Err(format!(
                "`{path}` has a percent-encoded `.` or `..` segment (`%2e`)"
            ));
        }
        if is_reserved_name(seg.as_bytes()) || is_reserved_name(&decoded) {
            return Err(format!(
                "`{path}` has a name ending in `#` and digits, which is reserved for files being written"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert!(check_relative_path("model/model.onnx", false).is_ok());
        assert!(check_relative_path("a/b/", false).is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "C:\\x",
            "s3://b/x",
        ] {
            assert!(check_relative_path(bad, false).is_err(), "{bad}");
        }
        assert!(check_relative_path("", true).is_ok());
    }

    #[test]
    fn names_and_paths_have_limits() {
        let name = |n: usize| "n".repeat(n);
        assert!(check_relative_path(&name(255), false).is_ok());
        assert!(check_relative_path(&format!("d/{}", name(254)), false).is_ok());
        let e = check_relative_path(&format!("d/{}", name(256)), false).unwrap_err();
        assert!(e.contains("255 bytes"), "{e}");
        // bytes, not characters: 128 two-byte characters are 256 bytes
        assert!(check_relative_path(&"é".repeat(128), false).is_err());
        let long = vec![name(200); 6].join("/");
        let e = check_relative_path(&long, false).unwrap_err();
        assert!(e.contains("1024 bytes") && e.len() < 200, "{e}");
        assert!(check_relative_path(&vec![name(200); 5].join("/"), false).is_ok());
    }

    #[test]
    fn names_ending_in_hash_digits_are_reserved() {
        for bad in ["a#1", "dir/model.bin#12", "x#0/y", "a%2312"] {
            let e = check_relative_path(bad, false).unwrap_err();
            assert!(e.contains("reserved"), "{bad}: {e}");
        }
        for good in ["a#", "a#b", "#", "a#1b", "issue#12.md"] {
            assert!(check_relative_path(good, false).is_ok(), "{good}");
        }
    }

    #[test]
    fn percent_encoded_escapes_are_refused() {
        for bad in [
            "a%2f..%2f..%2fetc",
            "a%2F..%2Fx",
            "%2e%2e/x",
            "a/%2E",
            "a%5cb",
            "a%00b",
        ] {
            assert!(check_relative_path(bad, false).is_err(), "{bad}");
        }
        for good in ["a%20b.txt", "100%.txt", "a%2", "%zz", "a%252fb"] {
            assert!(check_relative_path(good, false).is_ok(), "{good}");
        }
    }

    fn chunks(
        parts: Vec<Result<&'static [u8], &'static str>>,
    ) -> BoxStream<'static, Result<Bytes, &'static str>> {
        futures::stream::iter(parts.into_iter().map(|p| p.map(Bytes::from_static))).boxed()
    }

    /// Every file under `dir`, relative, sorted.
    pub(super) fn files_under(dir: &std::path::Path) -> Vec<String> {
        let mut out = vec![];
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn local_writes_go_through_staging_and_leave_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().to_str().unwrap(), "test").unwrap();
        // A name of 254 bytes: a staging file beside it (`<name>#1`) would not fit.
        let long = format!("run/{}", "n".repeat(254));
        let key = Path::parse(&long).unwrap();
        let size = b
            .write_stream(&key, chunks(vec![Ok(b"ab"), Ok(b"cd")]), None, |_| {})
            .await
            .unwrap();
        assert_eq!(size, 4);
        assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), b"abcd");
        assert_eq!(files_under(dir.path()), vec![long.clone()]);

        // A failing stream, and one over the limit: nothing of either stays anywhere.
        let e = b
            .write_stream(
                &Path::from("run/broken"),
                chunks(vec![Ok(b"x"), Err("client went away")]),
                None,
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::Source("client went away")));
        let mut seen = 0;
        let e = b
            .write_stream(
                &Path::from("run/big"),
                chunks(vec![Ok(b"abc"), Ok(b"def")]),
                Some(5),
                |c| seen += c.len(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::TooLarge { limit: 5 }));
        assert_eq!(seen, 3, "the chunk over the limit is not passed on");
        // A path that needs a directory where a file is: a conflict, and no leftover.
        let e = b
            .write_stream(
                &Path::from(format!("{long}/x")),
                chunks(vec![Ok(b"x")]),
                None,
                |_| {},
            )
            .await
            .unwrap_err();
        let WriteError::Store(e) = e else {
            panic!("expected a store error")
        };
        assert_eq!(failure(&e), Failure::Conflict, "{e}");
        tokio::task::yield_now().await;
        assert_eq!(files_under(dir.path()), vec![long]);
    }

    /// `n` chunks of 64 KiB, each filled with its index, then `last`.
    fn big(
        n: usize,
        last: Result<(), &'static str>,
    ) -> BoxStream<'static, Result<Bytes, &'static str>> {
        let parts = (0..n).map(|i| Ok(Bytes::from(vec![i as u8; 64 << 10])));
        futures::stream::iter(parts.chain(last.err().map(Err))).boxed()
    }

    #[tokio::test]
    async fn files_past_the_small_size_stream_through_a_multipart_upload() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().to_str().unwrap(), "test").unwrap();
        // 17 chunks of 64 KiB: past SMALL_FILE_BYTES, so the held chunks are written
        // first and the rest streamed after them, each seen once.
        let n = SMALL_FILE_BYTES / (64 << 10) + 1;
        let mut seen = vec![];
        let size = b
            .write_stream(&Path::from("m/1/model.bin"), big(n, Ok(())), None, |c| {
                seen.push(c[0])
            })
            .await
            .unwrap();
        assert_eq!(size, (n * (64 << 10)) as u64);
        assert_eq!(seen, (0..n).map(|i| i as u8).collect::<Vec<_>>());
        let got = std::fs::read(dir.path().join("m/1/model.bin")).unwrap();
        assert_eq!(got.len() as u64, size);
        assert!(got
            .chunks(64 << 10)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8)));

        // A stream failing, or going over the limit, past the small size: nothing stays.
        let e = b
            .write_stream(
                &Path::from("m/2/model.bin"),
                big(n, Err("gone")),
                None,
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::Source("gone")));
        let limit = (SMALL_FILE_BYTES + (128 << 10)) as u64;
        let e = b
            .write_stream(
                &Path::from("m/3/model.bin"),
                big(n + 4, Ok(())),
                Some(limit),
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::TooLarge { .. }));
        tokio::task::yield_now().await;
        assert_eq!(files_under(dir.path()), vec!["m/1/model.bin".to_owned()]);
    }

    #[tokio::test]
    async fn leftover_staging_files_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().to_str().unwrap(), "tracking").unwrap();
        assert_eq!(b.remove_staged().await.unwrap(), 0);
        // What a process killed mid-upload leaves: a part file and a complete one.
        let staging = dir.path().join(".staging/tracking");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("0123#1"), b"half").unwrap();
        std::fs::write(staging.join("4567"), b"whole").unwrap();
        // Another owner's staging directory is not this service's to clean.
        let other = dir.path().join(".staging/registry");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("89ab#1"), b"in flight").unwrap();
        std::fs::write(dir.path().join("kept"), b"a file").unwrap();
        let b = open(dir.path().to_str().unwrap(), "tracking").unwrap();
        assert_eq!(b.remove_staged().await.unwrap(), 2);
        assert_eq!(
            files_under(dir.path()),
            vec![".staging/registry/89ab#1".to_owned(), "kept".to_owned()]
        );
    }

    #[test]
    fn opens_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().join("x").to_str().unwrap(), "test").unwrap();
        assert!(b.root_uri.starts_with("file:///"));
        assert!(dir.path().join("x").is_dir());
    }
}
