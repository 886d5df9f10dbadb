//! The offline store: Parquet files (sources, entity tables, written training tables) on
//! a local directory or S3, under one root; paths are relative to it.

use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use futures::TryStreamExt;
use mlops_storage::blob::{self, BlobStore};
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};

use crate::error::{FeatureStoreError, Result};

/// Rows per batch read from Parquet.
const BATCH_ROWS: usize = 64 * 1024;

/// The offline store.
#[derive(Clone, Debug)]
pub struct OfflineStore {
    blob: BlobStore,
}

/// A table read from the store: its schema (of the columns asked for) and its rows, in
/// file order (files of a directory by name), then row order.
pub struct Table {
    /// The schema.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
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

    /// Reads the Parquet file or directory `path`: the columns `columns` (all when
    /// `None`), each of which must exist. `what` names the table in messages.
    pub async fn read(&self, path: &str, columns: Option<&[String]>, what: &str) -> Result<Table> {
        let mut schema: Option<SchemaRef> = None;
        let mut batches = Vec::new();
        for file in self.files(path).await? {
            let bytes = self
                .blob
                .store
                .get(&file)
                .await
                .map_err(|e| store_error(path, e))?
                .bytes()
                .await
                .map_err(|e| store_error(path, e))?;
            let columns = columns.map(|c| c.to_vec());
            let (label, name) = (what.to_owned(), file.to_string());
            let (s, b) = tokio::task::spawn_blocking(move || {
                decode(bytes, columns.as_deref(), &label, &name)
            })
            .await
            .map_err(|e| FeatureStoreError::Internal(format!("reading {path}: {e}")))??;
            match &schema {
                Some(first) if first.fields() != s.fields() => {
                    return Err(FeatureStoreError::FailedPrecondition(format!(
                        "{what}: the files under {path} do not share one schema ({file} differs)"
                    )))
                }
                Some(_) => {}
                None => schema = Some(s),
            }
            batches.extend(b);
        }
        Ok(Table {
            schema: schema.unwrap_or_else(|| Arc::new(Schema::empty())),
            batches,
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
        self.blob
            .write_stream(&key, Box::pin(chunks), None, |_| {})
            .await
            .map_err(|e| {
                let why = match e {
                    blob::WriteError::Store(e) => e.to_string(),
                    other => format!("{other:?}"),
                };
                FeatureStoreError::Unavailable(format!(
                    "writing {path} to the offline store: {why}"
                ))
            })
    }
}

/// Decodes one Parquet file, projected on `columns`.
fn decode(
    bytes: Bytes,
    columns: Option<&[String]>,
    what: &str,
    file: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let corrupt = |e: parquet::errors::ParquetError| {
        FeatureStoreError::FailedPrecondition(format!(
            "{what}: {file} is not a readable Parquet file: {e}"
        ))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(corrupt)?;
    let builder = match columns {
        None => builder,
        Some(columns) => {
            let schema = builder.schema().clone();
            let mut roots = Vec::with_capacity(columns.len());
            for c in columns {
                let i = schema.index_of(c).map_err(|_| {
                    FeatureStoreError::FailedPrecondition(format!(
                        "{what}: {file} has no column `{c}` (it has: {})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                roots.push(i);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
    };
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(corrupt)?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            FeatureStoreError::FailedPrecondition(format!("{what}: reading {file}: {e}"))
        })?;
    Ok((schema, batches))
}
