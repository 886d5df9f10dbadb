//! Tensors on the wire: the Open Inference Protocol's datatypes, its typed `contents` and its
//! raw little-endian bytes, to and from the model's [`Tensor`].
//!
//! Raw layout, as Triton writes it: elements little-endian and packed, `BOOL` one byte each,
//! `BYTES` as a 4-byte little-endian length before each element's bytes.

use bytes::Bytes;
use mlops_model::{DataType, Tensor, TensorData};
use mlops_proto::triton::InferTensorContents;

use crate::error::{invalid, Result};

/// The OIP datatype of an element type.
pub fn datatype_name(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "BOOL",
        DataType::U8 => "UINT8",
        DataType::U16 => "UINT16",
        DataType::U32 => "UINT32",
        DataType::U64 => "UINT64",
        DataType::I8 => "INT8",
        DataType::I16 => "INT16",
        DataType::I32 => "INT32",
        DataType::I64 => "INT64",
        DataType::F32 => "FP32",
        DataType::F64 => "FP64",
        DataType::String => "BYTES",
    }
}

/// The element type of an OIP datatype; `None` for one no model here takes (FP16, BF16) or
/// an unknown name.
pub fn parse_datatype(name: &str) -> Option<DataType> {
    Some(match name {
        "BOOL" => DataType::Bool,
        "UINT8" => DataType::U8,
        "UINT16" => DataType::U16,
        "UINT32" => DataType::U32,
        "UINT64" => DataType::U64,
        "INT8" => DataType::I8,
        "INT16" => DataType::I16,
        "INT32" => DataType::I32,
        "INT64" => DataType::I64,
        "FP32" => DataType::F32,
        "FP64" => DataType::F64,
        "BYTES" => DataType::String,
        _ => return None,
    })
}

/// The size of one element in raw form; `None` for `BYTES` (length-prefixed).
pub fn element_size(dtype: DataType) -> Option<usize> {
    Some(match dtype {
        DataType::Bool | DataType::U8 | DataType::I8 => 1,
        DataType::U16 | DataType::I16 => 2,
        DataType::U32 | DataType::I32 | DataType::F32 => 4,
        DataType::U64 | DataType::I64 | DataType::F64 => 8,
        DataType::String => return None,
    })
}

/// The element count of `shape`, refusing negative dimensions and overflow.
pub fn element_count(name: &str, shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| {
            invalid(format!(
                "input {name:?}: shape {shape:?} has a negative dimension"
            ))
        })?;
        acc.checked_mul(d)
            .ok_or_else(|| invalid(format!("input {name:?}: shape {shape:?} is too large")))
    })
}

macro_rules! from_le {
    ($raw:expr, $t:ty, $n:expr) => {
        $raw.chunks_exact($n)
            .map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                <$t>::from_le_bytes(a)
            })
            .collect()
    };
}

/// Decodes `count` elements of `dtype` from raw bytes, checking the length exactly.
pub fn decode_raw(name: &str, dtype: DataType, count: usize, raw: &[u8]) -> Result<TensorData> {
    if let Some(size) = element_size(dtype) {
        let want = count * size;
        if raw.len() != want {
            return Err(invalid(format!(
                "input {name:?}: raw contents hold {} bytes; its shape and datatype {} need {want} ({count} elements of {size} bytes)",
                raw.len(),
                datatype_name(dtype)
            )));
        }
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DataType::U8 => TensorData::U8(raw.to_vec()),
        DataType::I8 => TensorData::I8(raw.iter().map(|&b| b as i8).collect()),
        DataType::U16 => TensorData::U16(from_le!(raw, u16, 2)),
        DataType::I16 => TensorData::I16(from_le!(raw, i16, 2)),
        DataType::U32 => TensorData::U32(from_le!(raw, u32, 4)),
        DataType::I32 => TensorData::I32(from_le!(raw, i32, 4)),
        DataType::F32 => TensorData::F32(from_le!(raw, f32, 4)),
        DataType::U64 => TensorData::U64(from_le!(raw, u64, 8)),
        DataType::I64 => TensorData::I64(from_le!(raw, i64, 8)),
        DataType::F64 => TensorData::F64(from_le!(raw, f64, 8)),
        DataType::String => {
            let mut out = Vec::with_capacity(count.min(raw.len() / 4 + 1));
            let mut rest = raw;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err(invalid(format!(
                        "input {name:?}: BYTES raw contents end inside an element's 4-byte length"
                    )));
                }
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest = &rest[4..];
                if rest.len() < len {
                    return Err(invalid(format!(
                        "input {name:?}: a BYTES element says it has {len} bytes but only {} follow",
                        rest.len()
                    )));
                }
                out.push(rest[..len].to_vec());
                rest = &rest[len..];
            }
            if out.len() != count {
                return Err(invalid(format!(
                    "input {name:?}: raw contents hold {} BYTES elements; its shape needs {count}",
                    out.len()
                )));
            }
            TensorData::String(out)
        }
    })
}

/// Encodes a tensor's elements as raw bytes.
pub fn encode_raw(data: &TensorData) -> Bytes {
    let mut b = Vec::with_capacity(raw_len(data));
    encode_raw_into(data, &mut b);
    Bytes::from(b)
}

/// How many bytes [`encode_raw`] makes of `data`.
pub fn raw_len(data: &TensorData) -> usize {
    match data {
        TensorData::String(v) => v.iter().map(|s| s.len() + 4).sum(),
        other => other.len() * element_size(other.dtype()).unwrap_or(1),
    }
}

/// [`encode_raw`] appending to `b`.
pub fn encode_raw_into(data: &TensorData, b: &mut Vec<u8>) {
    match data {
        TensorData::Bool(v) => b.extend(v.iter().map(|&x| u8::from(x))),
        TensorData::U8(v) => b.extend_from_slice(v),
        TensorData::I8(v) => le(b, v, i8::to_le_bytes),
        TensorData::U16(v) => le(b, v, u16::to_le_bytes),
        TensorData::I16(v) => le(b, v, i16::to_le_bytes),
        TensorData::U32(v) => le(b, v, u32::to_le_bytes),
        TensorData::I32(v) => le(b, v, i32::to_le_bytes),
        TensorData::F32(v) => le(b, v, f32::to_le_bytes),
        TensorData::U64(v) => le(b, v, u64::to_le_bytes),
        TensorData::I64(v) => le(b, v, i64::to_le_bytes),
        TensorData::F64(v) => le(b, v, f64::to_le_bytes),
        TensorData::String(v) => {
            for s in v {
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s);
            }
        }
    }
}

/// `v`'s elements appended to `b` as `bytes` writes each, in one resize and a loop the
/// compiler sees whole (not a bounds-checked write per element).
fn le<T: Copy, const N: usize>(b: &mut Vec<u8>, v: &[T], bytes: fn(T) -> [u8; N]) {
    let start = b.len();
    b.resize(start + v.len() * N, 0);
    for (out, &x) in b[start..].chunks_exact_mut(N).zip(v) {
        out.copy_from_slice(&bytes(x));
    }
}

/// Decodes typed `contents` of `dtype`, checking that they hold `count` elements in the field
/// the protocol gives that datatype.
pub fn decode_typed(
    name: &str,
    dtype: DataType,
    count: usize,
    c: &InferTensorContents,
) -> Result<TensorData> {
    let narrow = |what: &str| {
        invalid(format!(
            "input {name:?}: a value in int_contents/uint_contents does not fit {what}"
        ))
    };
    let data = match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::I8 => TensorData::I8(
            c.int_contents
                .iter()
                .map(|&v| i8::try_from(v).map_err(|_| narrow("INT8")))
                .collect::<Result<_>>()?,
        ),
        DataType::I16 => TensorData::I16(
            c.int_contents
                .iter()
                .map(|&v| i16::try_from(v).map_err(|_| narrow("INT16")))
                .collect::<Result<_>>()?,
        ),
        DataType::I32 => TensorData::I32(c.int_contents.clone()),
        DataType::I64 => TensorData::I64(c.int64_contents.clone()),
        DataType::U8 => TensorData::U8(
            c.uint_contents
                .iter()
                .map(|&v| u8::try_from(v).map_err(|_| narrow("UINT8")))
                .collect::<Result<_>>()?,
        ),
        DataType::U16 => TensorData::U16(
            c.uint_contents
                .iter()
                .map(|&v| u16::try_from(v).map_err(|_| narrow("UINT16")))
                .collect::<Result<_>>()?,
        ),
        DataType::U32 => TensorData::U32(c.uint_contents.clone()),
        DataType::U64 => TensorData::U64(c.uint64_contents.clone()),
        DataType::F32 => TensorData::F32(c.fp32_contents.clone()),
        DataType::F64 => TensorData::F64(c.fp64_contents.clone()),
        DataType::String => {
            TensorData::String(c.bytes_contents.iter().map(|b| b.to_vec()).collect())
        }
    };
    if data.len() != count {
        return Err(invalid(format!(
            "input {name:?}: {} holds {} elements; its shape needs {count}",
            typed_field(dtype),
            data.len()
        )));
    }
    Ok(data)
}

/// The `contents` field that carries `dtype`.
pub fn typed_field(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "bool_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::String => "bytes_contents",
    }
}

/// A tensor's elements as typed `contents`.
pub fn encode_typed(data: &TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::I8(v) => c.int_contents = v.iter().map(|&x| x as i32).collect(),
        TensorData::I16(v) => c.int_contents = v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => c.int_contents = v.clone(),
        TensorData::I64(v) => c.int64_contents = v.clone(),
        TensorData::U8(v) => c.uint_contents = v.iter().map(|&x| x as u32).collect(),
        TensorData::U16(v) => c.uint_contents = v.iter().map(|&x| x as u32).collect(),
        TensorData::U32(v) => c.uint_contents = v.clone(),
        TensorData::U64(v) => c.uint64_contents = v.clone(),
        TensorData::F32(v) => c.fp32_contents = v.clone(),
        TensorData::F64(v) => c.fp64_contents = v.clone(),
        TensorData::String(v) => {
            c.bytes_contents = v.iter().map(|s| Bytes::copy_from_slice(s)).collect()
        }
    }
    c
}

/// Builds a tensor of `shape` from decoded elements.
pub fn tensor(shape: &[i64], data: TensorData) -> Tensor {
    Tensor {
        shape: shape.iter().map(|&d| d as usize).collect(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips_every_type() {
        let all = [
            TensorData::Bool(vec![true, false]),
            TensorData::U8(vec![1, 255]),
            TensorData::U16(vec![1, 65535]),
            TensorData::U32(vec![1, u32::MAX]),
            TensorData::U64(vec![1, u64::MAX]),
            TensorData::I8(vec![-1, 127]),
            TensorData::I16(vec![-1, 300]),
            TensorData::I32(vec![-1, 70000]),
            TensorData::I64(vec![-1, i64::MAX]),
            TensorData::F32(vec![0.5, -1.25]),
            TensorData::F64(vec![0.5, -1e300]),
            TensorData::String(vec![b"ab".to_vec(), vec![]]),
        ];
        for data in all {
            let raw = encode_raw(&data);
            assert_eq!(raw.len(), raw_len(&data));
            assert_eq!(decode_raw("x", data.dtype(), 2, &raw).unwrap(), data);
            let typed = encode_typed(&data);
            assert_eq!(decode_typed("x", data.dtype(), 2, &typed).unwrap(), data);
            let name = datatype_name(data.dtype());
            assert_eq!(parse_datatype(name), Some(data.dtype()));
        }
    }

    #[test]
    fn numbers_are_packed_little_endian() {
        let raw = |d| encode_raw(&d).to_vec();
        assert_eq!(raw(TensorData::U16(vec![1, 0x0203])), [1, 0, 3, 2]);
        assert_eq!(raw(TensorData::I8(vec![-1, 2])), [0xff, 2]);
        assert_eq!(raw(TensorData::Bool(vec![true, false])), [1, 0]);
        assert_eq!(raw(TensorData::F32(vec![0.5])), [0, 0, 0, 0x3f]);
        assert_eq!(
            raw(TensorData::I64(vec![-2])),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(raw(TensorData::F32(vec![])), [0u8; 0]);
        // Appending keeps what the buffer held.
        let mut b = vec![9];
        encode_raw_into(&TensorData::U32(vec![0x0a0b0c0d]), &mut b);
        assert_eq!(b, [9, 0x0d, 0x0c, 0x0b, 0x0a]);
    }

    #[test]
    fn bytes_framing_is_a_little_endian_length_before_each_element() {
        let raw = encode_raw(&TensorData::String(vec![b"hi".to_vec()]));
        assert_eq!(&raw[..], &[2, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn wrong_lengths_say_what_was_expected() {
        let err = decode_raw("x", DataType::F32, 3, &[0; 8]).unwrap_err();
        assert!(err.to_string().contains("need 12"), "{err}");
        let err = decode_raw("x", DataType::String, 1, &[5, 0, 0, 0, 1]).unwrap_err();
        assert!(err.to_string().contains("says it has 5 bytes"), "{err}");
        let err = decode_raw("x", DataType::String, 2, &[0, 0, 0, 0]).unwrap_err();
        assert!(err.to_string().contains("needs 2"), "{err}");
        let c = InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        };
        let err = decode_typed("x", DataType::F32, 2, &c).unwrap_err();
        assert!(err.to_string().contains("fp32_contents holds 1"), "{err}");
        let c = InferTensorContents {
            int_contents: vec![300],
            ..Default::default()
        };
        assert!(decode_typed("x", DataType::I8, 1, &c).is_err());
        assert!(element_count("x", &[-1, 3]).is_err());
        assert!(element_count("x", &[i64::MAX, i64::MAX]).is_err());
    }
}
