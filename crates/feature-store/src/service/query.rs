//! One training-data query at work: entity batches in, training batches out, back over
//! the stream or into a Parquet file on the offline store. Nothing here holds a whole
//! table: the entity table streams in (a Parquet entity table is read a row group at a
//! time), a join in memory answers each batch as it comes, a spilled join answers at the
//! end a batch at a time, and a Parquet output is written to a local file as it comes,
//! then uploaded.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::StreamExt;
use mlops_proto::featurestore::v1 as pb;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::FeatureStoreApi;
use crate::error::FeatureStoreError;
use crate::offline::historical::{self, join_error, Prepared, Wanted};
use crate::offline::ipc::{Decoder, Encoder};
use crate::offline::join::{Join, SpillJoin};

type Sender = mpsc::Sender<Result<pb::GetHistoricalFeaturesResponse, Status>>;

/// Rows per row group of a written training table.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Runs `f` where blocking is allowed.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, FeatureStoreError> + Send + 'static,
) -> Result<T, FeatureStoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FeatureStoreError::Internal(format!("{what}: {e}")))?
}

/// One historical query at work.
pub(super) struct Historical {
    pub(super) api: FeatureStoreApi,
    pub(super) wanted: Vec<Wanted>,
    pub(super) timestamp_column: String,
    pub(super) filter_by_created: bool,
    pub(super) output: String,
    pub(super) tx: Sender,
}

/// The join, as it takes entity batches.
enum Joiner {
    /// Answers each batch as it comes.
    Memory(Arc<Join>),
    /// Takes every batch, answers at the end (`None` only while a batch is in its hands).
    Spill(Option<Box<SpillJoin>>),
}

/// A training table being written to a local file, to be uploaded when complete.
struct ParquetFile {
    writer: ArrowWriter<std::fs::File>,
    file: tempfile::TempPath,
}

/// Where the training table goes.
enum Sink {
    Stream(Box<Encoder>),
    Parquet(Option<Box<ParquetFile>>),
}

/// A failure to write the training table's local file: its detail (with the server's
/// paths) goes to the log, not to the caller.
fn write_failed(e: impl std::fmt::Display) -> FeatureStoreError {
    tracing::error!(error = %e, "writing a training table to a local file failed");
    FeatureStoreError::Unavailable(
        "writing the training table to a local file failed: the feature store's log says why \
         (a full or missing spill directory?)"
            .into(),
    )
}

impl Historical {
    async fn prepare(&self, schema: &SchemaRef) -> Result<(Joiner, Sink), FeatureStoreError> {
        let prepared = historical::prepare(
            &self.api.offline,
            &self.wanted,
            schema,
            &self.timestamp_column,
            self.filter_by_created,
            &self.api.budget,
        )
        .await?;
        let out_schema = prepared.schema().clone();
        let joiner = match prepared {
            Prepared::Memory(j) => Joiner::Memory(j),
            Prepared::Spill(j) => {
                self.api.metrics.historical_spilled.inc();
                Joiner::Spill(Some(j))
            }
        };
        let sink = if self.output.is_empty() {
            let mut enc = Encoder::new(&out_schema, self.api.chunk_bytes)
                .map_err(FeatureStoreError::Internal)?;
            self.send_chunks(enc.take()).await?;
            Sink::Stream(Box::new(enc))
        } else {
            let dir = self.api.budget.spill_dir.clone();
            let file = blocking("creating the training table", move || {
                let file = tempfile::Builder::new()
                    .prefix("mlops-training-")
                    .suffix(".parquet")
                    .tempfile_in(&dir)
                    .map_err(|e| {
                        write_failed(format!("creating a file in {}: {e}", dir.display()))
                    })?;
                let (file, path) = file.into_parts();
                let props = WriterProperties::builder()
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let writer =
                    ArrowWriter::try_new(file, out_schema, Some(props)).map_err(write_failed)?;
                Ok(ParquetFile { writer, file: path })
            })
            .await?;
            Sink::Parquet(Some(Box::new(file)))
        };
        Ok((joiner, sink))
    }

    async fn send_chunks(&self, chunks: Vec<Bytes>) -> Result<(), FeatureStoreError> {
        for c in chunks {
            let msg = pb::GetHistoricalFeaturesResponse {
                part: Some(pb::get_historical_features_response::Part::ArrowIpc(c)),
            };
            // The caller went away: stop working for it.
            self.tx
                .send(Ok(msg))
                .await
                .map_err(|_| FeatureStoreError::Unavailable("the caller went away".into()))?;
        }
        Ok(())
    }

    /// Takes one entity batch.
    async fn apply(
        &self,
        joiner: &mut Joiner,
        sink: &mut Sink,
        batch: RecordBatch,
    ) -> Result<u64, FeatureStoreError> {
        let rows = batch.num_rows() as u64;
        match joiner {
            Joiner::Memory(join) => {
                let j = join.clone();
                let out = blocking("joining", move || j.apply(&batch).map_err(join_error)).await?;
                self.emit(sink, out).await?;
            }
            Joiner::Spill(slot) => {
                let mut j = slot
                    .take()
                    .expect("the spilled join is back after each batch");
                *slot = Some(
                    blocking("spilling the entity table", move || {
                        j.push(&batch).map_err(join_error)?;
                        Ok(j)
                    })
                    .await?,
                );
            }
        }
        Ok(rows)
    }

    /// Passes one output batch on.
    async fn emit(&self, sink: &mut Sink, out: RecordBatch) -> Result<(), FeatureStoreError> {
        match sink {
            Sink::Stream(enc) => {
                enc.write(&out).map_err(FeatureStoreError::Internal)?;
                let chunks = enc.take();
                self.send_chunks(chunks).await
            }
            Sink::Parquet(slot) => {
                let mut file = slot.take().expect("the file is back after each batch");
                *slot = Some(
                    blocking("writing the training table", move || {
                        file.writer.write(&out).map_err(write_failed)?;
                        Ok(file)
                    })
                    .await?,
                );
                Ok(())
            }
        }
    }

    async fn finish(
        &self,
        joiner: Joiner,
        mut sink: Sink,
        rows: u64,
    ) -> Result<(), FeatureStoreError> {
        let spilled = matches!(joiner, Joiner::Spill(_));
        if let Joiner::Spill(Some(join)) = joiner {
            let mut output = blocking("joining the partitions", move || {
                join.finish().map_err(join_error)
            })
            .await?;
            loop {
                let (next, rest) = blocking("joining", move || {
                    let next = output.next().transpose().map_err(join_error);
                    Ok((next, output))
                })
                .await?;
                output = rest;
                match next? {
                    Some(batch) => self.emit(&mut sink, batch).await?,
                    None => break,
                }
            }
        }
        self.api.metrics.historical_rows.inc_by(rows);
        match sink {
            Sink::Stream(mut enc) => {
                enc.finish().map_err(FeatureStoreError::Internal)?;
                self.send_chunks(enc.take()).await?;
            }
            Sink::Parquet(file) => {
                let file = file.expect("the file is back after each batch");
                let file = blocking("writing the training table", move || {
                    file.writer.close().map_err(write_failed)?;
                    Ok(file.file)
                })
                .await?;
                self.api.offline.upload(&self.output, &file).await?;
            }
        }
        let summary = pb::GetHistoricalFeaturesResponse {
            part: Some(pb::get_historical_features_response::Part::Summary(
                pb::HistoricalSummary {
                    rows: rows as i64,
                    output_parquet: self.output.clone(),
                    spilled,
                },
            )),
        };
        let _ = self.tx.send(Ok(summary)).await;
        Ok(())
    }

    /// The entity table from a Parquet file or directory, a row group at a time.
    pub(super) async fn read_parquet(self, path: &str) -> Result<(), FeatureStoreError> {
        let source = self
            .api
            .offline
            .open_parquet(path, None, "the entity table")
            .await?;
        let (mut joiner, mut sink) = self.prepare(&source.schema).await?;
        let (batches, mut incoming) = mpsc::channel(2);
        let rt = tokio::runtime::Handle::current();
        let reader = tokio::task::spawn_blocking(move || {
            source.read_blocking(&rt, |b| {
                // The query ended early (its error is reported by the other side).
                batches
                    .blocking_send(b)
                    .map_err(|_| FeatureStoreError::Unavailable("the query ended".into()))
            })
        });
        let mut rows = 0;
        while let Some(batch) = incoming.recv().await {
            rows += self.apply(&mut joiner, &mut sink, batch).await?;
        }
        reader
            .await
            .map_err(|e| FeatureStoreError::Internal(format!("reading {path}: {e}")))??;
        self.finish(joiner, sink, rows).await
    }

    /// The entity table as Arrow IPC chunks after the query.
    pub(super) async fn read_stream(
        self,
        mut input: Streaming<pb::GetHistoricalFeaturesRequest>,
    ) -> Result<(), FeatureStoreError> {
        let mut decoder = Decoder::new();
        let mut prepared: Option<(Joiner, Sink)> = None;
        let mut pending = Vec::new();
        let mut rows = 0;
        let bad = |m: String| {
            FeatureStoreError::InvalidArgument(format!(
                "the entity table is not a valid Arrow IPC stream: {m}"
            ))
        };
        while let Some(msg) = input.next().await {
            let msg = msg.map_err(|s| {
                FeatureStoreError::InvalidArgument(format!(
                    "reading the entity table: {}",
                    s.message()
                ))
            })?;
            let chunk = match msg.part {
                Some(pb::get_historical_features_request::Part::ArrowIpc(c)) => c,
                _ => {
                    return Err(FeatureStoreError::InvalidArgument(
                        "after the query, every message must be an Arrow IPC chunk".into(),
                    ))
                }
            };
            pending.extend(decoder.push(chunk).map_err(bad)?);
            if prepared.is_none() {
                if let Some(schema) = decoder.schema() {
                    prepared = Some(self.prepare(&schema).await?);
                }
            }
            if let Some((joiner, sink)) = prepared.as_mut() {
                for batch in pending.drain(..) {
                    rows += self.apply(joiner, sink, batch).await?;
                }
            }
        }
        decoder.finish().map_err(bad)?;
        let Some((joiner, sink)) = prepared else {
            return Err(FeatureStoreError::InvalidArgument(
                "no entity table came after the query (send it as Arrow IPC chunks, or name a Parquet file in `entity_parquet`)".into(),
            ));
        };
        self.finish(joiner, sink, rows).await
    }
}
