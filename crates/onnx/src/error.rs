//! Why a file could not be read as an ONNX model.

/// Why [`read_signature`](crate::read_signature) rejected a file.
///
/// Messages start with "not an ONNX model" when the bytes are not an ONNX file at all (another
/// format, a truncated upload), and with "invalid ONNX model" when they are one that breaks a
/// rule of the format. Where the first bytes give away a well-known format (a zip archive, a
/// pickle, text, ...), the message names it, since uploading the wrong file of a run is the
/// most common cause.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file has no bytes.
    #[error("not an ONNX model: the file is empty (0 bytes); expected a serialized ModelProto")]
    Empty,

    /// The bytes do not decode as a `ModelProto` protobuf message.
    #[error(
        "not an ONNX model: the file is not a valid ModelProto protobuf ({source}){}",
        hint(.looks_like)
    )]
    Decode {
        /// What the protobuf decoder stumbled on.
        source: prost::DecodeError,
        /// The format the first bytes suggest, if any.
        looks_like: Option<&'static str>,
    },

    /// The message decoded but sets no `ir_version`, which every ONNX file writes.
    #[error(
        "not an ONNX model: ir_version is missing (every ONNX file sets it to a positive \
         number){}",
        hint(.looks_like)
    )]
    MissingIrVersion {
        /// The format the first bytes suggest, if any.
        looks_like: Option<&'static str>,
    },

    /// `ir_version` is zero or negative.
    #[error("invalid ONNX model: ir_version is {0}, expected a positive number such as 8")]
    InvalidIrVersion(i64),

    /// The model has no graph, so there is nothing to run.
    #[error("not an ONNX model: it has no graph{}", hint(.looks_like))]
    NoGraph {
        /// The format the first bytes suggest, if any.
        looks_like: Option<&'static str>,
    },

    /// `opset_import` is empty although the IR version requires it (IR 3 and later).
    #[error(
        "invalid ONNX model: it imports no operator set (opset_import is empty; ir_version \
         {ir_version} requires at least one, e.g. the default domain at version 13)"
    )]
    NoOpsetImport {
        /// The model's IR version.
        ir_version: i64,
    },

    /// The graph has no outputs, so a caller could not fetch any result.
    #[error("invalid ONNX model: the graph declares no outputs (a model needs at least one)")]
    NoOutputs,

    /// A graph input or output has an empty name, so a caller could not refer to it.
    #[error("invalid ONNX model: graph {kind} #{index} has no name (every {kind} needs one)")]
    UnnamedValue {
        /// `input` or `output`.
        kind: &'static str,
        /// Its position in the graph's list, from 0.
        index: usize,
    },

    /// Two graph inputs, or two graph outputs, share a name.
    #[error("invalid ONNX model: the graph declares {kind} {name:?} more than once")]
    DuplicateName {
        /// `input` or `output`.
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
}

fn hint(looks_like: &Option<&'static str>) -> String {
    match looks_like {
        Some(format) => format!("; the file looks like {format}"),
        None => String::new(),
    }
}

/// What to say about bytes that failed to decode: the format they look like, or that they
/// look like an ONNX file cut short.
pub(crate) fn decode_hint(bytes: &[u8], error: &prost::DecodeError) -> Option<&'static str> {
    // Every ONNX writer puts ir_version (field 1, varint: key 0x08) first; prost reports a
    // message that ends in the middle of a field as a buffer underflow.
    let cut_short = bytes.first() == Some(&0x08) && error.to_string().contains("buffer underflow");
    if cut_short {
        return Some("an ONNX model cut short (an incomplete upload or copy?)");
    }
    sniff(bytes)
}

/// Names the well-known format the first bytes of a non-ONNX file suggest.
///
/// Only used to word an error: a file is never rejected because of what this says, since a
/// protobuf message may in principle start with any byte.
pub(crate) fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Some(
            "a zip archive (a PyTorch .pt checkpoint, a .keras file or another bundle; export \
             the model to ONNX first)",
        );
    }
    if let [0x80, 2..=5, ..] = bytes {
        return Some("a Python pickle (e.g. a pickled or joblib-saved scikit-learn model)");
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Some("a gzip file (decompress it first)");
    }
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return Some("an HDF5 file (e.g. a Keras .h5 model)");
    }
    if looks_like_safetensors(bytes) {
        return Some("a safetensors file (weights only, without a graph)");
    }
    if looks_like_text(bytes) {
        return Some("a text file");
    }
    None
}

/// A safetensors file starts with the length of its JSON header as a little-endian u64,
/// followed by the header itself.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    let len = u64::from_le_bytes(*len);
    rest.first() == Some(&b'{') && len <= rest.len() as u64
}

/// Text is valid UTF-8 without control characters other than whitespace; a serialized
/// ModelProto always has some (its field keys and lengths).
fn looks_like_text(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(512)];
    // A cut may split a multi-byte character at the end of the sample.
    let text = match std::str::from_utf8(sample) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&sample[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_names_common_formats() {
        assert!(sniff(b"PK\x03\x04\x14\x00")
            .unwrap()
            .starts_with("a zip archive"));
        assert!(sniff(b"\x80\x04\x95\x00")
            .unwrap()
            .starts_with("a Python pickle"));
        assert!(sniff(b"\x1f\x8b\x08\x00")
            .unwrap()
            .starts_with("a gzip file"));
        assert!(sniff(b"\x89HDF\r\n\x1a\n\x00")
            .unwrap()
            .starts_with("an HDF5 file"));
        let mut safetensors = 2u64.to_le_bytes().to_vec();
        safetensors.extend_from_slice(b"{}");
        assert!(sniff(&safetensors)
            .unwrap()
            .starts_with("a safetensors file"));
        assert_eq!(sniff(b"hello world\n"), Some("a text file"));
        assert_eq!(sniff("caf\u{e9}".as_bytes()), Some("a text file"));
        // The first byte of a real ONNX file: field 1 (ir_version), varint.
        assert_eq!(sniff(b"\x08\x08\x12\x04"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn hints_are_appended_to_messages() {
        let err = OnnxError::NoGraph {
            looks_like: Some("a text file"),
        };
        assert_eq!(
            err.to_string(),
            "not an ONNX model: it has no graph; the file looks like a text file"
        );
        let err = OnnxError::NoGraph { looks_like: None };
        assert_eq!(err.to_string(), "not an ONNX model: it has no graph");
    }
}
