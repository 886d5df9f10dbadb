//! The offline store: Parquet files (sources, entity tables, written training tables) on
//! a local directory or S3, under one root; paths are relative to it.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use bytes::{Buf, Bytes};
use futures::TryStreamExt;
use mlops_storage::blob::{self, BlobStore};
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::file::metadata::{
    ColumnChunkMetaData, FooterTail, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{FeatureStoreError, Result};

/// Rows per batch read from Parquet.
const BATCH_ROWS: usize = 64 * 1024;

/// Bytes per chunk of an upload.
const UPLOAD_CHUNK: usize = 8 << 20;

/// The offline store.
#[derive(Clone, Debug)]
pub struct OfflineStore {
    blob: BlobStore,
}

fn store_error(path: &str, e: object_store::Error) -> FeatureStoreError {
    match e {
        object_store::Error::NotFound { .. } => {
            FeatureStoreError::NotFound(format!("{path} does not exist on the offline store"))
        }
        e => FeatureStoreError::Unavailable(format!("the offline store failed on {path}: {e}")),
    }
}

impl OfflineStore {
    /// Opens the store at `root` (a directory, `file:///dir` or `s3://bucket/prefix`).
    pub fn open(root: &str) -> anyhow::Result<Self> {
        Ok(OfflineStore {
            blob: blob::open(root, "feature-store")?,
        })
    }

    /// The root's URI.
    pub fn root_uri(&self) -> &str {
        &self.blob.root_uri
    }

    fn key(path: &str) -> Result<Path> {
        let path = path.trim_start_matches("./");
        blob::check_relative_path(path, false).map_err(|e| {
            FeatureStoreError::InvalidArgument(format!(
                "`{path}` is not a path on the offline store: {e}"
            ))
        })?;
        Path::parse(path).map_err(|e| {
            FeatureStoreError::InvalidArgument(format!("`{path}` is not a valid path: {e}"))
        })
    }

    /// The Parquet files of `path`: the file itself, or the `*.parquet` files under the
    /// directory, by name.
    async fn files(&self, path: &str) -> Result<Vec<Path>> {
        let key = Self::key(path)?;
        match self.blob.store.head(&key).await {
            Ok(_) => return Ok(vec![key]),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(path, e)),
        }
        let mut files: Vec<Path> = self
            .blob
            .store
            .list(Some(&key))
            .map_ok(|m| m.location)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| store_error(path, e))?
            .into_iter()
            .filter(|p| p.as_ref().ends_with(".parquet"))
            .collect();
        if files.is_empty() {
            return Err(FeatureStoreError::NotFound(format!(
                "{path} does not exist on the offline store ({}), or holds no .parquet file",
                self.blob.root_uri
            )));
        }
        files.sort();
        Ok(files)
    }

    /// Opens the Parquet file or directory `path` for reading a row group at a time:
    /// reads its files' footers and checks that they share one schema holding
    /// `columns` (all when `None`). `what` names the table in messages.
    pub async fn open_parquet(
        &self,
        path: &str,
        columns: Option<&[String]>,
        what: &str,
    ) -> Result<ParquetSource> {
        let mut schema: Option<SchemaRef> = None;
        let mut files = Vec::new();
        for file in self.files(path).await? {
            let name = file.to_string();
            let corrupt = |e: String| {
                FeatureStoreError::FailedPrecondition(format!(
                    "{what}: {name} is not a readable Parquet file: {e}"
                ))
            };
            let size = self
                .blob
                .store
                .head(&file)
                .await
                .map_err(|e| store_error(path, e))?
                .size;
            if size < 12 {
                return Err(corrupt(format!("it has {size} bytes")));
            }
            let tail = self
                .blob
                .store
                .get_range(&file, size - 8..size)
                .await
                .map_err(|e| store_error(path, e))?;
            let tail: [u8; 8] = tail
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("short read".into()))?;
            let footer = FooterTail::try_new(&tail).map_err(|e| corrupt(e.to_string()))?;
            let len = footer.metadata_length() as u64;
            if len + 8 > size {
                return Err(corrupt(format!(
                    "its footer claims {len} bytes of metadata"
                )));
            }
            let encoded = self
                .blob
                .store
                .get_range(&file, size - 8 - len..size - 8)
                .await
                .map_err(|e| store_error(path, e))?;
            let metadata = ParquetMetaDataReader::decode_metadata(&encoded)
                .map_err(|e| corrupt(e.to_string()))?;
            let meta = ArrowReaderMetadata::try_new(Arc::new(metadata), Default::default())
                .map_err(|e| corrupt(e.to_string()))?;
            let full = meta.schema().clone();
            let mut roots: Vec<usize> = match columns {
                None => (0..full.fields().len()).collect(),
                Some(columns) => columns
                    .iter()
                    .map(|c| {
                        full.index_of(c).map_err(|_| {
                            FeatureStoreError::FailedPrecondition(format!(
                                "{what}: {name} has no column `{c}` (it has: {})",
                                full.fields()
                                    .iter()
                                    .map(|f| f.name().as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
            };
            // The reader gives the columns once each, in the file's order.
            roots.sort_unstable();
            roots.dedup();
            let projected = Arc::new(full.project(&roots).map_err(|e| corrupt(e.to_string()))?);
            match &schema {
                Some(first) if first.fields() != projected.fields() => {
                    return Err(FeatureStoreError::FailedPrecondition(format!(
                        "{what}: the files under {path} do not share one schema ({name} differs)"
                    )))
                }
                Some(_) => {}
                None => schema = Some(projected),
            }
            files.push(SourceFile {
                path: file,
                size,
                meta,
                roots,
            });
        }
        Ok(ParquetSource {
            store: self.blob.store.clone(),
            what: what.to_owned(),
            schema: schema.unwrap_or_else(|| Arc::new(Schema::empty())),
            files,
        })
    }

    /// Copies the local file `local` to `path` on the store, a chunk at a time; returns
    /// its size. The file appears whole or not at all.
    pub async fn upload(&self, path: &str, local: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncReadExt;
        let key = Self::key(path)?;
        let file = tokio::fs::File::open(local).await.map_err(|e| {
            tracing::error!(file = %local.display(), error = %e, "reading a file to upload failed");
            FeatureStoreError::Internal(format!("reading the file to upload to {path}: {e}"))
        })?;
        let chunks = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        self.put(path, &key, Box::pin(chunks)).await
    }

    /// Writes `chunks` at `key` (`path` in messages): the file appears whole or not at all.
    async fn put<E: std::fmt::Display>(
        &self,
        path: &str,
        key: &Path,
        chunks: futures::stream::BoxStream<'_, std::result::Result<Bytes, E>>,
    ) -> Result<u64> {
        self.blob
            .write_stream(key, chunks, None, |_| {})
            .await
            .map_err(|e| {
                let why = match e {
                    blob::WriteError::Store(e) => e.to_string(),
                    blob::WriteError::Source(e) => format!("reading what to write: {e}"),
                    blob::WriteError::TooLarge { limit } => format!("over {limit} bytes"),
                };
                FeatureStoreError::Unavailable(format!(
                    "writing {path} to the offline store: {why}"
                ))
            })
    }

    /// Writes `batches` as one Parquet file at `path`; returns its size. The file
    /// appears whole or not at all.
    pub async fn write(
        &self,
        path: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<u64> {
        let key = Self::key(path)?;
        let (schema, batches) = (schema.clone(), batches.to_vec());
        let bytes = tokio::task::spawn_blocking(move || -> Result<Bytes> {
            let mut writer = ArrowWriter::try_new(Vec::new(), schema, None)
                .map_err(|e| FeatureStoreError::Internal(format!("writing Parquet: {e}")))?;
            for b in &batches {
                writer
                    .write(b)
                    .map_err(|e| FeatureStoreError::Internal(format!("writing Parquet: {e}")))?;
            }
            let out = writer
                .into_inner()
                .map_err(|e| FeatureStoreError::Internal(format!("writing Parquet: {e}")))?;
            Ok(Bytes::from(out))
        })
        .await
        .map_err(|e| FeatureStoreError::Internal(format!("writing {path}: {e}")))??;
        let chunks = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
        self.put(path, &key, Box::pin(chunks)).await
    }
}

/// One file of a [`ParquetSource`]: where it is, its size and its footer.
struct SourceFile {
    path: Path,
    size: u64,
    meta: ArrowReaderMetadata,
    /// The columns read (root indices of the file's schema).
    roots: Vec<usize>,
}

impl SourceFile {
    /// The column chunks of row group `rg` that are read.
    fn read_columns<'a>(
        &'a self,
        rg: &'a RowGroupMetaData,
    ) -> impl Iterator<Item = &'a ColumnChunkMetaData> + 'a {
        let descr = self.meta.metadata().file_metadata().schema_descr();
        rg.columns()
            .iter()
            .enumerate()
            .filter(move |(leaf, _)| self.roots.contains(&descr.get_column_root_idx(*leaf)))
            .map(|(_, c)| c)
    }
}

/// A Parquet file or directory on the offline store, opened: its files' footers, read
/// one row group at a time, so memory holds one row group's columns and not the file.
pub struct ParquetSource {
    store: Arc<dyn ObjectStore>,
    what: String,
    /// The schema of the columns read.
    pub schema: SchemaRef,
    files: Vec<SourceFile>,
}

impl ParquetSource {
    /// About how many bytes the columns read take in memory once decoded: the footers'
    /// uncompressed sizes, and at least 8 bytes per value.
    pub fn estimated_bytes(&self) -> u64 {
        let mut total = 0u64;
        for f in &self.files {
            for rg in f.meta.metadata().row_groups() {
                let bytes: u64 = f
                    .read_columns(rg)
                    .map(|c| c.uncompressed_size().max(0) as u64)
                    .sum();
                let floor = rg.num_rows().max(0) as u64 * 8 * f.roots.len() as u64;
                total += bytes.max(floor);
            }
        }
        total
    }

    /// Reads every row, in file order then row order, handing each batch to `each`; a
    /// row group's columns are fetched at once, then decoded a batch at a time. Call it
    /// where blocking is allowed: it waits for the store on `rt`.
    pub fn read_blocking(
        &self,
        rt: &tokio::runtime::Handle,
        mut each: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        for f in &self.files {
            let name = f.path.to_string();
            let failed = |e: String| {
                FeatureStoreError::FailedPrecondition(format!("{}: reading {name}: {e}", self.what))
            };
            let descr = f.meta.metadata().file_metadata().schema_descr_ptr();
            let mask = ProjectionMask::roots(&descr, f.roots.iter().copied());
            for (i, rg) in f.meta.metadata().row_groups().iter().enumerate() {
                let ranges: Vec<std::ops::Range<u64>> = f
                    .read_columns(rg)
                    .map(|c| {
                        let (start, len) = c.byte_range();
                        start..start + len
                    })
                    .collect();
                let parts = rt
                    .block_on(self.store.get_ranges(&f.path, &ranges))
                    .map_err(|e| store_error(&name, e))?;
                let chunks = Chunks {
                    size: f.size,
                    parts: ranges.iter().map(|r| r.start).zip(parts).collect(),
                };
                let reader =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(chunks, f.meta.clone())
                        .with_projection(mask.clone())
                        .with_row_groups(vec![i])
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| failed(e.to_string()))?;
                for batch in reader {
                    each(batch.map_err(|e| failed(e.to_string()))?)?;
                }
            }
        }
        Ok(())
    }
}

/// The column chunks of one row group, fetched: what the Parquet reader asks for is
/// within one of them.
struct Chunks {
    size: u64,
    /// (offset in the file, bytes), by offset.
    parts: Vec<(u64, Bytes)>,
}

impl Chunks {
    fn at(&self, start: u64) -> parquet::errors::Result<Bytes> {
        self.parts
            .iter()
            .find(|(at, b)| *at <= start && start < at + b.len() as u64)
            .map(|(at, b)| b.slice((start - at) as usize..))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "no fetched column chunk holds offset {start}"
                ))
            })
    }
}

impl Length for Chunks {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Chunks {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.at(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let b = self.at(start)?;
        if b.len() < length {
            return Err(parquet::errors::ParquetError::General(format!(
                "a read of {length} bytes at {start} runs past its column chunk"
            )));
        }
        Ok(b.slice(..length))
    }
}
