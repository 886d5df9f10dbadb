//! A tensor: a shape and one typed, row-major buffer.

/// An element type, named as ONNX names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `bool`.
    Bool,
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// `string`: arbitrary bytes per element (ONNX strings; OIP `BYTES`).
    String,
}

/// The elements of a tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `bool`.
    Bool(Vec<bool>),
    /// `uint8`.
    U8(Vec<u8>),
    /// `uint16`.
    U16(Vec<u16>),
    /// `uint32`.
    U32(Vec<u32>),
    /// `uint64`.
    U64(Vec<u64>),
    /// `int8`.
    I8(Vec<i8>),
    /// `int16`.
    I16(Vec<i16>),
    /// `int32`.
    I32(Vec<i32>),
    /// `int64`.
    I64(Vec<i64>),
    /// `float`.
    F32(Vec<f32>),
    /// `double`.
    F64(Vec<f64>),
    /// `string`.
    String(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any variant, bound as `$v`.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::String($v) => $body,
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::String(_) => DataType::String,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of `dtype` with room for `capacity` elements.
    pub fn with_capacity(dtype: DataType, capacity: usize) -> TensorData {
        match dtype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::U8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::U16 => TensorData::U16(Vec::with_capacity(capacity)),
            DataType::U32 => TensorData::U32(Vec::with_capacity(capacity)),
            DataType::U64 => TensorData::U64(Vec::with_capacity(capacity)),
            DataType::I8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::I16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::I32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::I64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::F32 => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::F64 => TensorData::F64(Vec::with_capacity(capacity)),
            DataType::String => TensorData::String(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`'s elements; `false` (and nothing appended) when the types differ.
    pub fn extend_from(&mut self, other: &TensorData) -> bool {
        match (self, other) {
            (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(b),
            (TensorData::U8(a), TensorData::U8(b)) => a.extend_from_slice(b),
            (TensorData::U16(a), TensorData::U16(b)) => a.extend_from_slice(b),
            (TensorData::U32(a), TensorData::U32(b)) => a.extend_from_slice(b),
            (TensorData::U64(a), TensorData::U64(b)) => a.extend_from_slice(b),
            (TensorData::I8(a), TensorData::I8(b)) => a.extend_from_slice(b),
            (TensorData::I16(a), TensorData::I16(b)) => a.extend_from_slice(b),
            (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
            (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
            (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
            (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
            (TensorData::String(a), TensorData::String(b)) => a.extend_from_slice(b),
            _ => return false,
        }
        true
    }

    /// The elements `range` as a new buffer.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        match self {
            TensorData::Bool(v) => TensorData::Bool(v[range].to_vec()),
            TensorData::U8(v) => TensorData::U8(v[range].to_vec()),
            TensorData::U16(v) => TensorData::U16(v[range].to_vec()),
            TensorData::U32(v) => TensorData::U32(v[range].to_vec()),
            TensorData::U64(v) => TensorData::U64(v[range].to_vec()),
            TensorData::I8(v) => TensorData::I8(v[range].to_vec()),
            TensorData::I16(v) => TensorData::I16(v[range].to_vec()),
            TensorData::I32(v) => TensorData::I32(v[range].to_vec()),
            TensorData::I64(v) => TensorData::I64(v[range].to_vec()),
            TensorData::F32(v) => TensorData::F32(v[range].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[range].to_vec()),
            TensorData::String(v) => TensorData::String(v[range].to_vec()),
        }
    }
}

/// A tensor: its dimensions and its elements, row-major. The product of `shape` is
/// `data.len()` (a scalar has an empty shape and one element).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The elements.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor, or `None` when the shape does not hold exactly `data.len()` elements.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Option<Tensor> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    /// The number of rows: the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Stacks tensors along the first dimension. `None` when `parts` is empty or the parts
    /// differ in type or in any dimension after the first.
    pub fn concat_rows(parts: &[&Tensor]) -> Option<Tensor> {
        let first = parts.first()?;
        if first.shape.is_empty() {
            return None;
        }
        let total = parts.iter().map(|t| t.data.len()).sum();
        let mut data = TensorData::with_capacity(first.dtype(), total);
        let mut rows = 0;
        for part in parts {
            if part.shape.len() != first.shape.len() || part.shape[1..] != first.shape[1..] {
                return None;
            }
            if !data.extend_from(&part.data) {
                return None;
            }
            rows += part.shape[0];
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Some(Tensor { shape, data })
    }

    /// Cuts the tensor along the first dimension into parts of `rows[i]` rows each.
    /// `None` when the counts do not add up to the number of rows.
    pub fn split_rows(&self, rows: &[usize]) -> Option<Vec<Tensor>> {
        if self.shape.is_empty() || rows.iter().sum::<usize>() != self.shape[0] {
            return None;
        }
        let row_len: usize = self.shape[1..].iter().product();
        let mut start = 0;
        Some(
            rows.iter()
                .map(|&n| {
                    let mut shape = self.shape.clone();
                    shape[0] = n;
                    let data = self.data.slice(start * row_len..(start + n) * row_len);
                    start += n;
                    Tensor { shape, data }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_concatenate_and_split_back() {
        let a = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).unwrap();
        let b = Tensor::new(vec![2, 2], TensorData::F32(vec![3.0, 4.0, 5.0, 6.0])).unwrap();
        let both = Tensor::concat_rows(&[&a, &b]).unwrap();
        assert_eq!(both.shape, vec![3, 2]);
        assert_eq!(both.split_rows(&[1, 2]).unwrap(), vec![a, b]);
    }

    #[test]
    fn mismatched_parts_do_not_concatenate() {
        let a = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).unwrap();
        let b = Tensor::new(vec![1, 3], TensorData::F32(vec![1.0, 2.0, 3.0])).unwrap();
        let c = Tensor::new(vec![1, 2], TensorData::I64(vec![1, 2])).unwrap();
        assert!(Tensor::concat_rows(&[&a, &b]).is_none());
        assert!(Tensor::concat_rows(&[&a, &c]).is_none());
        assert!(a.split_rows(&[2]).is_none());
        assert!(Tensor::new(vec![3], TensorData::F32(vec![1.0])).is_none());
    }
}
