//! Our [`Tensor`]s to tract's and back, checked against the model's signature on the way in.

use tract_onnx::prelude::{tract_ndarray, Datum, DatumType, IntoTValue, TValue, TVec};

use crate::{DataType, IoSpec, RunError, Tensor, TensorData};

/// The tract type of a [`DataType`].
pub(crate) fn datum_type(dt: DataType) -> DatumType {
    match dt {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::String => DatumType::String,
    }
}

/// The [`DataType`] of a tract type, if we have one.
pub(crate) fn data_type(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::String,
        // tract's symbolic integers, which its analysis makes of some int64 values
        DatumType::TDim => DataType::I64,
        _ => return None,
    })
}

fn array<T: Datum>(shape: &[usize], data: Vec<T>) -> Result<TValue, RunError> {
    tract_ndarray::ArrayD::from_shape_vec(shape, data)
        .map(|a| tract_onnx::prelude::Tensor::from(a).into_tvalue())
        .map_err(|e| RunError::InvalidInput(format!("shape {shape:?}: {e}")))
}

fn plain<T: Datum + Copy>(shape: &[usize], data: &[T]) -> Result<TValue, RunError> {
    tract_onnx::prelude::Tensor::from_shape(shape, data)
        .map(|t| t.into_tvalue())
        .map_err(|e| RunError::InvalidInput(format!("shape {shape:?}: {e}")))
}

/// Checks `given` against `specs` and converts them.
pub(crate) fn inputs(specs: &[IoSpec], given: &[Tensor]) -> Result<TVec<TValue>, RunError> {
    if given.len() != specs.len() {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(RunError::InvalidInput(format!(
            "expected {} input tensors ({}), got {}",
            specs.len(),
            names.join(", "),
            given.len()
        )));
    }
    let mut out = TVec::with_capacity(given.len());
    for (spec, t) in specs.iter().zip(given) {
        if t.dtype() != spec.dtype {
            return Err(RunError::InvalidInput(format!(
                "input {:?}: expected {:?} elements, got {:?}",
                spec.name,
                spec.dtype,
                t.dtype()
            )));
        }
        let fits = t.shape.len() == spec.shape.len()
            && t.shape
                .iter()
                .zip(&spec.shape)
                .all(|(&d, s)| s.is_none_or(|s| s == d));
        if !fits || t.shape.iter().product::<usize>() != t.data.len() {
            let want: Vec<String> = spec
                .shape
                .iter()
                .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                .collect();
            return Err(RunError::InvalidInput(format!(
                "input {:?}: expected shape [{}], got {:?} with {} elements",
                spec.name,
                want.join(", "),
                t.shape,
                t.data.len()
            )));
        }
        let s = &t.shape;
        out.push(match &t.data {
            TensorData::Bool(v) => plain(s, v)?,
            TensorData::U8(v) => plain(s, v)?,
            TensorData::U16(v) => plain(s, v)?,
            TensorData::U32(v) => plain(s, v)?,
            TensorData::U64(v) => plain(s, v)?,
            TensorData::I8(v) => plain(s, v)?,
            TensorData::I16(v) => plain(s, v)?,
            TensorData::I32(v) => plain(s, v)?,
            TensorData::I64(v) => plain(s, v)?,
            TensorData::F32(v) => plain(s, v)?,
            TensorData::F64(v) => plain(s, v)?,
            TensorData::String(v) => array(
                s,
                v.iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect(),
            )?,
        });
    }
    Ok(out)
}

fn copy<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> Result<Vec<T>, RunError> {
    t.try_as_plain_ram()
        .and_then(|v| v.as_slice::<T>().map(|s| s.to_vec()))
        .map_err(|e| RunError::Failed(format!("{e:#}")))
}

/// Converts the plan's outputs.
pub(crate) fn outputs(specs: &[IoSpec], values: TVec<TValue>) -> Result<Vec<Tensor>, RunError> {
    specs
        .iter()
        .zip(values)
        .map(|(spec, v)| {
            let data = match v.datum_type() {
                DatumType::Bool => TensorData::Bool(copy(&v)?),
                DatumType::U8 => TensorData::U8(copy(&v)?),
                DatumType::U16 => TensorData::U16(copy(&v)?),
                DatumType::U32 => TensorData::U32(copy(&v)?),
                DatumType::U64 => TensorData::U64(copy(&v)?),
                DatumType::I8 => TensorData::I8(copy(&v)?),
                DatumType::I16 => TensorData::I16(copy(&v)?),
                DatumType::I32 => TensorData::I32(copy(&v)?),
                DatumType::I64 => TensorData::I64(copy(&v)?),
                DatumType::F32 => TensorData::F32(copy(&v)?),
                DatumType::F64 => TensorData::F64(copy(&v)?),
                DatumType::String => TensorData::String(
                    copy::<String>(&v)?
                        .into_iter()
                        .map(String::into_bytes)
                        .collect(),
                ),
                DatumType::TDim => TensorData::I64(copy(
                    &*v.cast_to::<i64>()
                        .map_err(|e| RunError::Failed(format!("{e:#}")))?,
                )?),
                dt => {
                    return Err(RunError::Failed(format!(
                        "output {:?} has type {dt:?}, which has no tensor type here",
                        spec.name
                    )))
                }
            };
            Ok(Tensor {
                shape: v.shape().to_vec(),
                data,
            })
        })
        .collect()
}
