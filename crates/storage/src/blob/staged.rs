//! Small files on a local root, written whole: into the staging directory, then
//! renamed into place, each step one blocking call. [`BlobStore::write_stream`]
//! writes a small file this way; [`BlobStore::stage`] and [`Staged::place`] let a
//! caller stage a file while it does other work and place it afterwards.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;

use super::{BlobStore, Staging, WriteError};

/// Writes a small file held in memory under a local root: into a staging file,
/// then renamed into place (creating its directories), in one blocking call.
/// On an error nothing of it is left behind.
pub(super) async fn write_small<E>(
    staging: &Staging,
    key: &Path,
    parts: Vec<Bytes>,
) -> Result<(), WriteError<E>> {
    let target = staging
        .local
        .path_to_filesystem(key)
        .map_err(WriteError::Store)?;
    let dir = staging.dir.clone();
    blocking(move || {
        let staged = stage_file(&dir, &parts)?;
        place_file(&staged, &target)
    })
    .await
    .map_err(WriteError::Store)
}

/// Runs `f` on the blocking pool; its IO error as the local store's.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, object_store::Error> {
    let io = match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => e,
        Err(join) => std::io::Error::other(join),
    };
    Err(object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(io),
    })
}

/// Writes `parts` to a new file in the staging directory `dir` and returns it.
fn stage_file(dir: &std::path::Path, parts: &[Bytes]) -> std::io::Result<PathBuf> {
    use std::io::{ErrorKind, Write};
    let staged = dir.join(uuid::Uuid::new_v4().simple().to_string());
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
    };
    let mut file = match create() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            create()?
        }
        other => other?,
    };
    if let Err(e) = parts.iter().try_for_each(|p| file.write_all(p)) {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    Ok(staged)
}

/// Renames the staged file into place at `target`, creating its directories; on
/// an error the staged file is removed.
fn place_file(staged: &std::path::Path, target: &std::path::Path) -> std::io::Result<()> {
    let placed = match std::fs::rename(staged, target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(staged, target)),
        other => other,
    };
    if placed.is_err() {
        let _ = std::fs::remove_file(staged);
    }
    placed
}

/// A file written whole into a local root's staging directory and not yet in
/// place: [`Staged::place`] puts it at its key. Dropped unplaced, it is removed.
#[derive(Debug)]
pub struct Staged {
    file: Option<PathBuf>,
    local: Arc<object_store::local::LocalFileSystem>,
    size: u64,
}

impl Staged {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Renames the file to `key`, creating its directories. On an error it is
    /// removed.
    pub async fn place(mut self, key: &Path) -> Result<(), object_store::Error> {
        let target = self.local.path_to_filesystem(key)?;
        let Some(staged) = self.file.take() else {
            return Ok(());
        };
        blocking(move || place_file(&staged, &target)).await
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // A small file, on an error path: removing it here blocks only briefly.
            let _ = std::fs::remove_file(file);
        }
    }
}

impl BlobStore {
    /// Whether the root is a local directory.
    pub fn is_local(&self) -> bool {
        self.staging.is_some()
    }

    /// On a local root, writes `parts` to a new staging file, to be placed at its
    /// key later (so that the write can overlap other work), and creates the
    /// directory `dir` under the root if given, where the key is likely to be.
    /// None on S3, which has no staging directory: write with
    /// [`BlobStore::write_stream`] there.
    pub async fn stage(
        &self,
        parts: Vec<Bytes>,
        dir: Option<&Path>,
    ) -> Result<Option<Staged>, object_store::Error> {
        let Some(staging) = &self.staging else {
            return Ok(None);
        };
        let make = dir
            .map(|d| staging.local.path_to_filesystem(d))
            .transpose()?;
        let staging_dir = staging.dir.clone();
        let size = parts.iter().map(|p| p.len() as u64).sum();
        let file = blocking(move || {
            let file = stage_file(&staging_dir, &parts)?;
            if let Some(make) = make {
                if let Err(e) = std::fs::create_dir_all(make) {
                    let _ = std::fs::remove_file(&file);
                    return Err(e);
                }
            }
            Ok(file)
        })
        .await?;
        Ok(Some(Staged {
            file: Some(file),
            local: staging.local.clone(),
            size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::files_under;
    use super::super::{failure, open, Failure};
    use super::*;

    #[tokio::test]
    async fn a_staged_file_is_placed_later_or_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().to_str().unwrap(), "test").unwrap();
        let parts = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")];
        let staged = b
            .stage(parts.clone(), Some(&Path::from("m/1")))
            .await
            .unwrap()
            .expect("a local root stages");
        assert_eq!(staged.size(), 4);
        assert!(
            dir.path().join("m/1").is_dir(),
            "the likely directory is made"
        );
        assert_eq!(files_under(&dir.path().join(".staging/test")).len(), 1);
        // Placed elsewhere than the likely directory: its directories are made too.
        staged
            .place(&Path::from("m/2/sub/model.onnx"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("m/2/sub/model.onnx")).unwrap(),
            b"abcd"
        );
        // Dropped unplaced, or failing to be placed: nothing is left.
        drop(b.stage(parts.clone(), None).await.unwrap());
        let staged = b.stage(parts, None).await.unwrap().unwrap();
        let e = staged
            .place(&Path::from("m/2/sub/model.onnx/x"))
            .await
            .unwrap_err();
        assert_eq!(failure(&e), Failure::Conflict, "{e}");
        assert_eq!(
            files_under(dir.path()),
            vec!["m/2/sub/model.onnx".to_owned()]
        );
    }
}
