//! Arrow IPC for the wire: one output table is one IPC stream, cut at message boundaries so that
//! each gRPC message carries its schema or one batch. Both ends live here so they cannot disagree.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;

/// Encodes one table's stream: [`TableEncoder::schema_bytes`] first, then one chunk per batch.
pub struct TableEncoder {
    writer: StreamWriter<Vec<u8>>,
    schema_bytes: Vec<u8>,
}

impl TableEncoder {
    pub fn new(schema: &SchemaRef) -> Result<Self, ArrowError> {
        let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
        // The writer emits the schema message as soon as it is made.
        let schema_bytes = std::mem::take(writer.get_mut());
        Ok(TableEncoder {
            writer,
            schema_bytes,
        })
    }

    pub fn schema_bytes(&self) -> &[u8] {
        &self.schema_bytes
    }

    /// The IPC messages of one batch (dictionary batches first, when a column needs them).
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }

    /// Encodes `batch` as one or more chunks of at most about `max_bytes` each, halving the batch
    /// until it fits (a single row is sent whatever its size). gRPC caps message sizes, and one wide
    /// batch of request bodies can pass the cap.
    pub fn encode_bounded(
        &mut self,
        batch: &RecordBatch,
        max_bytes: usize,
    ) -> Result<Vec<(RecordBatch, Vec<u8>)>, ArrowError> {
        // The IPC body is at most the arrays' memory plus padding: small batches need no probe.
        if batch.get_array_memory_size() <= max_bytes / 2 {
            return Ok(vec![(batch.clone(), self.encode(batch)?)]);
        }
        let mut out = Vec::new();
        let mut pending = vec![batch.clone()];
        while let Some(part) = pending.pop() {
            // Encode on the side first: bytes already written to the stream cannot be taken back
            // (the writer tracks the dictionaries it has sent).
            let mut probe = TableEncoder::new(&part.schema())?;
            let size = probe.encode(&part)?.len();
            if size > max_bytes && part.num_rows() > 1 {
                let half = part.num_rows() / 2;
                pending.push(part.slice(half, part.num_rows() - half));
                pending.push(part.slice(0, half));
                continue;
            }
            let bytes = self.encode(&part)?;
            out.push((part, bytes));
        }
        Ok(out)
    }
}

/// Decodes one table's stream from the chunks [`TableEncoder`] made, fed in order.
pub struct TableDecoder {
    decoder: StreamDecoder,
    schema: SchemaRef,
}

impl TableDecoder {
    /// Starts a table from its schema chunk.
    pub fn new(schema_bytes: &[u8]) -> Result<Self, ArrowError> {
        // The decoder only finishes a body-less message (the schema) when more bytes arrive, so the
        // schema is read on its own here and the decoder catches up with the first batch.
        let schema = Arc::new(try_schema_from_ipc_buffer(schema_bytes)?);
        let mut decoder = StreamDecoder::new();
        let mut buffer = Buffer::from(schema_bytes.to_vec());
        if decoder.decode(&mut buffer)?.is_some() || !buffer.is_empty() {
            return Err(ArrowError::IpcError(
                "the schema chunk is not exactly one schema message".into(),
            ));
        }
        Ok(TableDecoder { decoder, schema })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The batch of one chunk.
    pub fn decode(&mut self, chunk: &[u8]) -> Result<RecordBatch, ArrowError> {
        let mut buffer = Buffer::from(chunk.to_vec());
        let mut batch = None;
        while !buffer.is_empty() {
            if let Some(b) = self.decoder.decode(&mut buffer)? {
                if batch.is_some() {
                    return Err(ArrowError::IpcError(
                        "one chunk held more than one record batch".into(),
                    ));
                }
                batch = Some(b);
            }
        }
        batch.ok_or_else(|| ArrowError::IpcError("the chunk held no record batch".into()))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: usize, text: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values((0..rows).map(|_| text))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn chunks_round_trip_in_order() {
        let (a, b) = (batch(3, "x"), batch(5, "yy"));
        let mut enc = TableEncoder::new(&a.schema()).unwrap();
        let (ca, cb) = (enc.encode(&a).unwrap(), enc.encode(&b).unwrap());
        let mut dec = TableDecoder::new(enc.schema_bytes()).unwrap();
        assert_eq!(dec.schema(), a.schema());
        assert_eq!(dec.decode(&ca).unwrap(), a);
        assert_eq!(dec.decode(&cb).unwrap(), b);
        assert!(dec.decode(&[]).is_err());
    }

    #[test]
    fn large_batches_are_split_under_the_byte_bound() {
        let big = batch(1000, &"z".repeat(100));
        let mut enc = TableEncoder::new(&big.schema()).unwrap();
        let parts = enc.encode_bounded(&big, 20_000).unwrap();
        assert!(parts.len() > 5, "{} parts", parts.len());
        assert!(parts.iter().all(|(_, bytes)| bytes.len() <= 20_000));
        let mut dec = TableDecoder::new(enc.schema_bytes()).unwrap();
        let decoded: Vec<RecordBatch> = parts.iter().map(|(_, c)| dec.decode(c).unwrap()).collect();
        let joined = arrow::compute::concat_batches(&big.schema(), &decoded).unwrap();
        assert_eq!(joined, big);
    }

    #[test]
    fn a_garbage_schema_chunk_is_an_error() {
        assert!(TableDecoder::new(b"not arrow").is_err());
        assert!(TableDecoder::new(&[]).is_err());
    }
}
