//! Tables over gRPC: one Arrow IPC stream cut into chunks, one per message.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use bytes::Bytes;

/// Writes a table as an Arrow IPC stream, handing it out in chunks of at most
/// `chunk_bytes`.
pub struct Encoder {
    writer: StreamWriter<Vec<u8>>,
    chunk_bytes: usize,
}

impl Encoder {
    /// A stream of `schema`; the schema message is in the first chunks `take` returns.
    pub fn new(schema: &SchemaRef, chunk_bytes: usize) -> Result<Self, String> {
        let writer = StreamWriter::try_new(Vec::new(), schema).map_err(|e| e.to_string())?;
        Ok(Encoder {
            writer,
            chunk_bytes: chunk_bytes.max(1),
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.writer.write(batch).map_err(|e| e.to_string())
    }

    /// Ends the stream (its end-of-stream marker is in the next `take`).
    pub fn finish(&mut self) -> Result<(), String> {
        self.writer.finish().map_err(|e| e.to_string())
    }

    /// The bytes written since the last call, in chunks.
    pub fn take(&mut self) -> Vec<Bytes> {
        let bytes = Bytes::from(std::mem::take(self.writer.get_mut()));
        let mut out = Vec::with_capacity(bytes.len() / self.chunk_bytes + 1);
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + self.chunk_bytes).min(bytes.len());
            out.push(bytes.slice(at..end));
            at = end;
        }
        out
    }
}

/// Reads an Arrow IPC stream from chunks cut anywhere.
#[derive(Default)]
pub struct Decoder {
    decoder: StreamDecoder,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// The stream's schema, once its first message has been read.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.decoder.schema()
    }

    /// The batches completed by `chunk`.
    pub fn push(&mut self, chunk: Bytes) -> Result<Vec<RecordBatch>, String> {
        let mut buffer = Buffer::from(chunk);
        let mut out = Vec::new();
        while !buffer.is_empty() {
            if let Some(batch) = self
                .decoder
                .decode(&mut buffer)
                .map_err(|e| e.to_string())?
            {
                out.push(batch);
            }
        }
        Ok(out)
    }

    /// Checks that the stream ended on a message boundary.
    pub fn finish(&mut self) -> Result<(), String> {
        self.decoder.finish().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_table_survives_chunks_cut_anywhere() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(b * 100..b * 100 + 100)),
                        Arc::new(StringArray::from_iter(
                            (0..100).map(|i| (i % 7 != 0).then(|| format!("row {i} of batch {b}"))),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        for chunk in [1, 7, 100, 1 << 20] {
            let mut enc = Encoder::new(&schema, chunk).unwrap();
            let mut chunks = enc.take();
            for b in &batches {
                enc.write(b).unwrap();
                chunks.extend(enc.take());
            }
            enc.finish().unwrap();
            chunks.extend(enc.take());
            assert!(chunks.iter().all(|c| c.len() <= chunk));
            let mut dec = Decoder::new();
            let mut got = Vec::new();
            for c in chunks {
                got.extend(dec.push(c).unwrap());
            }
            dec.finish().unwrap();
            assert_eq!(dec.schema().unwrap(), schema);
            assert_eq!(got, batches, "chunks of {chunk} bytes");
        }
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut enc = Encoder::new(&schema, 1 << 20).unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        enc.write(&batch).unwrap();
        let bytes: Vec<u8> = enc.take().concat();
        let mut dec = Decoder::new();
        assert!(dec
            .push(Bytes::from(bytes[..bytes.len() - 5].to_vec()))
            .unwrap()
            .is_empty());
        assert!(dec.finish().is_err());
        // Garbage is refused when read, or at the latest when the stream ends.
        let mut garbage = Decoder::new();
        let refused = garbage
            .push(Bytes::from_static(b"not arrow at all"))
            .is_err()
            || garbage.finish().is_err();
        assert!(refused);
    }
}
