//! The element-wise and feature-wise ONNX-ML operators sklearn pipelines export, as onnxruntime
//! computes them: `Scaler`, `Imputer`, `Binarizer`, `Normalizer`, `OneHotEncoder`,
//! `LabelEncoder`, `ArrayFeatureExtractor`, `CategoryMapper`.

use std::collections::HashMap;

use tract_onnx::tract_hir::internal::*;

use super::attrs::{AttrError, Attrs};
use super::{as_f32, rows_cols, tensor, Kernel, OutShape, OutSpec, OutType};

fn strings(v: Vec<Vec<u8>>) -> Vec<String> {
    v.into_iter()
        .map(|s| String::from_utf8_lossy(&s).into_owned())
        .collect()
}

/// Per-column parameters: one for all columns or one per column.
fn per_column(values: &[f32], cols: usize, what: &str) -> TractResult<()> {
    if values.len() != 1 && values.len() != cols {
        bail!("{what} has {} values for {cols} columns", values.len());
    }
    Ok(())
}

/// `Scaler`: `(x - offset) * scale`.
#[derive(Debug)]
pub(crate) struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Scaler {
    pub fn parse(attrs: &Attrs) -> Result<Scaler, AttrError> {
        let (offset, scale) = (attrs.floats("offset"), attrs.floats("scale"));
        if offset.is_empty() || scale.is_empty() {
            return Err(attrs.error("offset and scale are required"));
        }
        Ok(Scaler { offset, scale })
    }
}

impl Kernel for Scaler {
    fn name(&self) -> &'static str {
        "Scaler"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::F32),
            shape: OutShape::AsInput,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (_, cols) = rows_cols(&inputs[0]);
        per_column(&self.offset, cols, "offset")?;
        per_column(&self.scale, cols, "scale")?;
        let x = as_f32(&inputs[0])?;
        let at = |v: &[f32], j: usize| if v.len() == 1 { v[0] } else { v[j] };
        let out = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let j = i % cols.max(1);
                (v - at(&self.offset, j)) * at(&self.scale, j)
            })
            .collect();
        Ok(tvec!(tensor(inputs[0].shape(), out)?))
    }
}

/// `Imputer`: replaces a value (NaN by default for floats) by a per-column value.
#[derive(Debug)]
pub(crate) struct Imputer {
    floats: Vec<f32>,
    replaced_float: f32,
    ints: Vec<i64>,
    replaced_int: i64,
}

impl Imputer {
    pub fn parse(attrs: &Attrs) -> Result<Imputer, AttrError> {
        let imp = Imputer {
            floats: attrs.floats("imputed_value_floats"),
            replaced_float: attrs.float_or("replaced_value_float", 0.0),
            ints: attrs.ints("imputed_value_int64s"),
            replaced_int: attrs.int_or("replaced_value_int64", 0),
        };
        if imp.floats.is_empty() == imp.ints.is_empty() {
            return Err(attrs.error("exactly one of imputed_value_floats/int64s is required"));
        }
        Ok(imp)
    }
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::AsInput,
            shape: OutShape::AsInput,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let input = &inputs[0];
        let (_, cols) = rows_cols(input);
        let cols = cols.max(1);
        let view = input.try_as_plain_ram()?;
        match input.datum_type() {
            DatumType::F32 => {
                per_column(&self.floats, cols, "imputed_value_floats")?;
                let nan = self.replaced_float.is_nan();
                let out = view
                    .as_slice::<f32>()?
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let hit = if nan {
                            v.is_nan()
                        } else {
                            v == self.replaced_float
                        };
                        match (hit, self.floats.len()) {
                            (false, _) => v,
                            (true, 1) => self.floats[0],
                            (true, _) => self.floats[i % cols],
                        }
                    })
                    .collect();
                Ok(tvec!(tensor(input.shape(), out)?))
            }
            DatumType::I64 => {
                if self.ints.len() != 1 && self.ints.len() != cols {
                    bail!(
                        "imputed_value_int64s has {} values for {cols} columns",
                        self.ints.len()
                    );
                }
                let out = view
                    .as_slice::<i64>()?
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| match (v == self.replaced_int, self.ints.len()) {
                        (false, _) => v,
                        (true, 1) => self.ints[0],
                        (true, _) => self.ints[i % cols],
                    })
                    .collect();
                Ok(tvec!(tensor(input.shape(), out)?))
            }
            dt => bail!("Imputer takes float or int64, got {dt:?}"),
        }
    }
}

/// `Binarizer`: 1 above the threshold, else 0.
#[derive(Debug)]
pub(crate) struct Binarizer {
    threshold: f32,
}

impl Binarizer {
    pub fn parse(attrs: &Attrs) -> Result<Binarizer, AttrError> {
        Ok(Binarizer {
            threshold: attrs.float_or("threshold", 0.0),
        })
    }
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::AsInput,
            shape: OutShape::AsInput,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let input = &inputs[0];
        let view = input.try_as_plain_ram()?;
        let t = self.threshold;
        let out = match input.datum_type() {
            DatumType::F32 => tensor(
                input.shape(),
                view.as_slice::<f32>()?
                    .iter()
                    .map(|&v| if v > t { 1.0f32 } else { 0.0 })
                    .collect(),
            )?,
            DatumType::F64 => tensor(
                input.shape(),
                view.as_slice::<f64>()?
                    .iter()
                    .map(|&v| if v > t as f64 { 1.0f64 } else { 0.0 })
                    .collect(),
            )?,
            dt => bail!("Binarizer takes float or double, got {dt:?}"),
        };
        Ok(tvec!(out))
    }
}

#[derive(Debug, Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

/// `Normalizer`: each row divided by its max, L1 or L2 norm.
#[derive(Debug)]
pub(crate) struct Normalizer {
    norm: Norm,
}

impl Normalizer {
    pub fn parse(attrs: &Attrs) -> Result<Normalizer, AttrError> {
        let norm = match attrs.string_or("norm", "MAX").as_str() {
            "MAX" => Norm::Max,
            "L1" => Norm::L1,
            "L2" => Norm::L2,
            other => return Err(attrs.error(format!("unknown norm {other:?}"))),
        };
        Ok(Normalizer { norm })
    }
}

impl Kernel for Normalizer {
    fn name(&self) -> &'static str {
        "Normalizer"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::F32),
            shape: OutShape::AsInput,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (_, cols) = rows_cols(&inputs[0]);
        let mut out = as_f32(&inputs[0])?.into_owned();
        for row in out.chunks_mut(cols.max(1)) {
            match self.norm {
                Norm::Max => {
                    let max = row.iter().fold(f32::MIN, |m, &v| if v > m { v } else { m });
                    if max != 0.0 {
                        row.iter_mut().for_each(|v| *v /= max);
                    }
                }
                Norm::L1 => {
                    let sum: f32 = row.iter().map(|v| v.abs()).sum();
                    if sum != 0.0 {
                        row.iter_mut().for_each(|v| *v /= sum);
                    }
                }
                Norm::L2 => {
                    let sum: f32 = row.iter().map(|v| v * v).sum();
                    if sum != 0.0 {
                        let norm = sum.sqrt();
                        row.iter_mut().for_each(|v| *v /= norm);
                    }
                }
            }
        }
        Ok(tvec!(tensor(inputs[0].shape(), out)?))
    }
}

/// `OneHotEncoder`: one more axis with a 1 at the category's position.
#[derive(Debug)]
pub(crate) struct OneHotEncoder {
    ints: HashMap<i64, usize>,
    strings: HashMap<String, usize>,
    n: usize,
    zeros: bool,
}

impl OneHotEncoder {
    pub fn parse(attrs: &Attrs) -> Result<OneHotEncoder, AttrError> {
        let ints = attrs.ints("cats_int64s");
        let strs = strings(attrs.strings("cats_strings"));
        let n = ints.len().max(strs.len());
        if n == 0 {
            return Err(attrs.error("cats_int64s or cats_strings is required"));
        }
        Ok(OneHotEncoder {
            ints: ints.into_iter().enumerate().map(|(i, v)| (v, i)).collect(),
            strings: strs.into_iter().enumerate().map(|(i, v)| (v, i)).collect(),
            n,
            zeros: attrs.int_or("zeros", 1) != 0,
        })
    }

    fn encode(
        &self,
        hits: impl Iterator<Item = Option<usize>>,
        shape: &[usize],
    ) -> TractResult<Tensor> {
        let mut out = Vec::new();
        for hit in hits {
            let start = out.len();
            out.resize(start + self.n, 0.0f32);
            match hit {
                Some(i) => out[start + i] = 1.0,
                None if self.zeros => {}
                None => bail!("a value is not among the categories and zeros is 0"),
            }
        }
        let mut shape = shape.to_vec();
        shape.push(self.n);
        tensor(&shape, out)
    }
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::F32),
            shape: OutShape::Append(self.n),
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let input = &inputs[0];
        let view = input.try_as_plain_ram()?;
        let out = match input.datum_type() {
            DatumType::String => self.encode(
                view.as_slice::<String>()?
                    .iter()
                    .map(|s| self.strings.get(s).copied()),
                input.shape(),
            )?,
            DatumType::I64 => self.encode(
                view.as_slice::<i64>()?
                    .iter()
                    .map(|v| self.ints.get(v).copied()),
                input.shape(),
            )?,
            DatumType::I32 => self.encode(
                view.as_slice::<i32>()?
                    .iter()
                    .map(|&v| self.ints.get(&(v as i64)).copied()),
                input.shape(),
            )?,
            _ => self.encode(
                as_f32(input)?
                    .iter()
                    .map(|&v| self.ints.get(&(v as i64)).copied()),
                input.shape(),
            )?,
        };
        Ok(tvec!(out))
    }
}

/// A key or a value of `LabelEncoder`.
#[derive(Debug, Clone)]
enum Column {
    Ints(Vec<i64>),
    Strings(Vec<String>),
    Floats(Vec<f32>),
}

impl Column {
    fn dt(&self) -> DatumType {
        match self {
            Column::Ints(_) => DatumType::I64,
            Column::Strings(_) => DatumType::String,
            Column::Floats(_) => DatumType::F32,
        }
    }
}

/// `LabelEncoder` (opset 1 `classes_strings`, or opset 2+ keys and values).
#[derive(Debug)]
pub(crate) struct LabelEncoder {
    keys: Column,
    values: Column,
    default_int: i64,
    default_string: String,
    default_float: f32,
}

impl LabelEncoder {
    pub fn parse(attrs: &Attrs) -> Result<LabelEncoder, AttrError> {
        attrs.refuse(&["keys_tensor", "values_tensor", "default_tensor"])?;
        let default_int = attrs.int_or("default_int64", -1);
        let default_string = attrs.string_or("default_string", "_Unused");
        let default_float = attrs.float_or("default_float", -0.0);
        let column = |prefix: &str| -> Option<Column> {
            let ints = attrs.ints(&format!("{prefix}_int64s"));
            let strs = attrs.strings(&format!("{prefix}_strings"));
            let floats = attrs.floats(&format!("{prefix}_floats"));
            if !ints.is_empty() {
                Some(Column::Ints(ints))
            } else if !strs.is_empty() {
                Some(Column::Strings(strings(strs)))
            } else if !floats.is_empty() {
                Some(Column::Floats(floats))
            } else {
                None
            }
        };
        let (keys, values) = match (column("keys"), column("values")) {
            (Some(k), Some(v)) => (k, v),
            _ => {
                // opset 1: strings <-> their index; the direction is the input's type
                let classes = strings(attrs.strings("classes_strings"));
                if classes.is_empty() {
                    return Err(attrs.error("keys and values (or classes_strings) are required"));
                }
                let idx = (0..classes.len() as i64).collect();
                (Column::Strings(classes), Column::Ints(idx))
            }
        };
        let len = |c: &Column| match c {
            Column::Ints(v) => v.len(),
            Column::Strings(v) => v.len(),
            Column::Floats(v) => v.len(),
        };
        if len(&keys) != len(&values) {
            return Err(attrs.error("keys and values differ in length"));
        }
        Ok(LabelEncoder {
            keys,
            values,
            default_int,
            default_string,
            default_float,
        })
    }

    /// The position of each input element among the keys.
    fn positions(&self, input: &Tensor) -> TractResult<(Vec<Option<usize>>, bool)> {
        let view = input.try_as_plain_ram()?;
        let find = |p: Option<usize>| p;
        Ok(match (&self.keys, input.datum_type()) {
            (Column::Strings(k), DatumType::String) => {
                let m: HashMap<&str, usize> =
                    k.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
                (
                    view.as_slice::<String>()?
                        .iter()
                        .map(|s| find(m.get(s.as_str()).copied()))
                        .collect(),
                    false,
                )
            }
            (Column::Ints(k), DatumType::I64) => {
                let m: HashMap<i64, usize> = k.iter().enumerate().map(|(i, &v)| (v, i)).collect();
                (
                    view.as_slice::<i64>()?
                        .iter()
                        .map(|v| m.get(v).copied())
                        .collect(),
                    false,
                )
            }
            (Column::Floats(k), DatumType::F32) => (
                view.as_slice::<f32>()?
                    .iter()
                    .map(|v| {
                        k.iter()
                            .position(|key| key == v || (key.is_nan() && v.is_nan()))
                    })
                    .collect(),
                false,
            ),
            // opset 1, reversed: an index into the strings
            (Column::Strings(k), DatumType::I64) => (
                view.as_slice::<i64>()?
                    .iter()
                    .map(|&v| usize::try_from(v).ok().filter(|&i| i < k.len()))
                    .collect(),
                true,
            ),
            (_, dt) => bail!(
                "LabelEncoder keys are {:?}, the input is {dt:?}",
                self.keys.dt()
            ),
        })
    }
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        // an opset-1 encoder maps both ways; its output type is the other one of the input's
        let dt = match (&self.keys, &self.values) {
            (Column::Strings(_), Column::Ints(_)) => {
                return vec![OutSpec {
                    dt: OutType::Fixed(DatumType::I64),
                    shape: OutShape::AsInput,
                }]
            }
            (_, v) => v.dt(),
        };
        vec![OutSpec {
            dt: OutType::Fixed(dt),
            shape: OutShape::AsInput,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let input = &inputs[0];
        let (pos, reversed) = self.positions(input)?;
        let shape = input.shape();
        let out = if reversed {
            let Column::Strings(k) = &self.keys else {
                bail!("unreachable encoder state")
            };
            tensor(
                shape,
                pos.iter()
                    .map(|p| p.map_or(self.default_string.clone(), |i| k[i].clone()))
                    .collect(),
            )?
        } else {
            match &self.values {
                Column::Ints(v) => tensor(
                    shape,
                    pos.iter()
                        .map(|p| p.map_or(self.default_int, |i| v[i]))
                        .collect(),
                )?,
                Column::Floats(v) => tensor(
                    shape,
                    pos.iter()
                        .map(|p| p.map_or(self.default_float, |i| v[i]))
                        .collect(),
                )?,
                Column::Strings(v) => tensor(
                    shape,
                    pos.iter()
                        .map(|p| p.map_or(self.default_string.clone(), |i| v[i].clone()))
                        .collect(),
                )?,
            }
        };
        Ok(tvec!(out))
    }
}

/// `ArrayFeatureExtractor`: picks columns of the last axis by index.
#[derive(Debug)]
pub(crate) struct ArrayFeatureExtractor;

impl ArrayFeatureExtractor {
    pub fn parse(_attrs: &Attrs) -> Result<ArrayFeatureExtractor, AttrError> {
        Ok(ArrayFeatureExtractor)
    }
}

fn pick<T: Datum + Clone>(
    x: &Tensor,
    cols: usize,
    idx: &[usize],
    shape: &[usize],
) -> TractResult<Tensor> {
    let data = x.try_as_plain_ram()?;
    let data = data.as_slice::<T>()?;
    let out = data
        .chunks(cols.max(1))
        .flat_map(|row| idx.iter().map(|&i| row[i].clone()))
        .collect();
    tensor(shape, out)
}

impl Kernel for ArrayFeatureExtractor {
    fn name(&self) -> &'static str {
        "ArrayFeatureExtractor"
    }

    fn n_inputs(&self) -> usize {
        2
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::AsInput,
            shape: OutShape::LastFromInput1,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let x = &inputs[0];
        let cols = *x
            .shape()
            .last()
            .context("ArrayFeatureExtractor needs rank 1 or more")?;
        let idx = inputs[1].cast_to::<i64>()?;
        let idx: Vec<usize> = idx
            .try_as_plain_ram()?
            .as_slice::<i64>()?
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < cols)
                    .context("index out of range")
            })
            .collect::<TractResult<_>>()?;
        let mut shape = x.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = idx.len();
        }
        let out = match x.datum_type() {
            DatumType::F32 => pick::<f32>(x, cols, &idx, &shape)?,
            DatumType::F64 => pick::<f64>(x, cols, &idx, &shape)?,
            DatumType::I64 => pick::<i64>(x, cols, &idx, &shape)?,
            DatumType::I32 => pick::<i32>(x, cols, &idx, &shape)?,
            DatumType::String => pick::<String>(x, cols, &idx, &shape)?,
            dt => bail!("ArrayFeatureExtractor does not take {dt:?}"),
        };
        Ok(tvec!(out))
    }
}

/// `CategoryMapper`: strings to integers or back.
#[derive(Debug)]
pub(crate) struct CategoryMapper {
    ints: Vec<i64>,
    strings: Vec<String>,
    default_int: i64,
}

impl CategoryMapper {
    pub fn parse(attrs: &Attrs) -> Result<CategoryMapper, AttrError> {
        let m = CategoryMapper {
            ints: attrs.ints("cats_int64s"),
            strings: strings(attrs.strings("cats_strings")),
            default_int: attrs.int_or("default_int64", -1),
        };
        if m.ints.len() != m.strings.len() {
            return Err(attrs.error("cats_int64s and cats_strings differ in length"));
        }
        Ok(m)
    }
}

impl Kernel for CategoryMapper {
    fn name(&self) -> &'static str {
        "CategoryMapper"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        // the direction follows the input type; string inputs are the usual case
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::I64),
            shape: OutShape::AsInput,
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let input = &inputs[0];
        let view = input.try_as_plain_ram()?;
        let out = match input.datum_type() {
            DatumType::String => {
                let m: HashMap<&str, i64> = self
                    .strings
                    .iter()
                    .map(|s| s.as_str())
                    .zip(self.ints.iter().copied())
                    .collect();
                tensor(
                    input.shape(),
                    view.as_slice::<String>()?
                        .iter()
                        .map(|s| m.get(s.as_str()).copied().unwrap_or(self.default_int))
                        .collect(),
                )?
            }
            dt => bail!("CategoryMapper from {dt:?} is not supported (strings to int64 is)"),
        };
        Ok(tvec!(out))
    }
}
