//! Blob storage for artifacts and model files: a local directory or any
//! S3-compatible store behind one `ObjectStore`, and the path rules every
//! service applies before touching it.

use std::sync::Arc;

use object_store::ObjectStore;

/// An opened store and the URI of its root (`file:///...` or `s3://bucket/prefix`).
#[derive(Clone)]
pub struct BlobStore {
    /// Keys are relative to the root.
    pub store: Arc<dyn ObjectStore>,
    /// The root's URI, without a trailing slash.
    pub root_uri: String,
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
/// environment variables).
pub fn open(root: &str) -> Result<BlobStore, object_store::Error> {
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
        return Ok(BlobStore { store, root_uri });
    }
    let dir = root.strip_prefix("file://").unwrap_or(root);
    let io = |e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{dir}: {e}").into(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let dir = std::fs::canonicalize(dir).map_err(io)?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
    Ok(BlobStore {
        store: Arc::new(store),
        root_uri: format!("file://{}", dir.display()),
    })
}

/// Checks a relative path given by a client: not absolute, no `..`, no empty or `.`
/// segments, no backslashes or NUL bytes. `allow_empty` for "the root" in listings.
/// The error says what is wrong in words a person can act on.
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
    for seg in path.trim_end_matches('/').split('/') {
        match seg {
            ".." => return Err(format!("`{path}` escapes the root with `..`")),
            "." | "" => return Err(format!("`{path}` has an empty or `.` segment")),
            _ => {}
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
    fn opens_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().join("x").to_str().unwrap()).unwrap();
        assert!(b.root_uri.starts_with("file:///"));
        assert!(dir.path().join("x").is_dir());
    }
}
