//! Values in the online store: read from Arrow columns, stored as JSON, answered as
//! protobuf; and entity keys, encoded so that composite keys never collide.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt8Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use mlops_proto::featurestore::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::defs::ValueType;

/// A non-null value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Val {
    /// int64.
    #[serde(rename = "i")]
    Int64(i64),
    /// int32.
    #[serde(rename = "i32")]
    Int32(i32),
    /// float64.
    #[serde(rename = "d")]
    Float64(f64),
    /// float32.
    #[serde(rename = "f")]
    Float32(f32),
    /// string.
    #[serde(rename = "s")]
    Str(String),
    /// bytes.
    #[serde(rename = "b")]
    Bytes(Vec<u8>),
    /// bool.
    #[serde(rename = "t")]
    Bool(bool),
    /// An instant, nanoseconds since the epoch.
    #[serde(rename = "ts")]
    Time(i64),
}

impl Val {
    /// As the API answers it.
    pub fn to_pb(&self) -> pb::Value {
        use pb::value::Kind;
        let kind = match self {
            Val::Int64(v) => Kind::Int64Value(*v),
            Val::Int32(v) => Kind::Int32Value(*v),
            Val::Float64(v) => Kind::DoubleValue(*v),
            Val::Float32(v) => Kind::FloatValue(*v),
            Val::Str(v) => Kind::StringValue(v.clone()),
            Val::Bytes(v) => Kind::BytesValue(v.clone().into()),
            Val::Bool(v) => Kind::BoolValue(*v),
            Val::Time(v) => Kind::UnixTimestampNanos(*v),
        };
        pb::Value { kind: Some(kind) }
    }
}

/// Row `i` of `array` as a value (`None` for null), for the types a view's features may
/// have; `Err` names a type the online store does not hold.
pub fn value_at(array: &ArrayRef, i: usize) -> Result<Option<Val>, String> {
    if array.is_null(i) {
        return Ok(None);
    }
    let v = match array.data_type() {
        DataType::Int64 => Val::Int64(array.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Val::Int32(array.as_primitive::<Int32Type>().value(i)),
        DataType::Float64 => Val::Float64(array.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Val::Float32(array.as_primitive::<Float32Type>().value(i)),
        DataType::Utf8 => Val::Str(array.as_string::<i32>().value(i).to_owned()),
        DataType::LargeUtf8 => Val::Str(array.as_string::<i64>().value(i).to_owned()),
        DataType::Utf8View => Val::Str(array.as_string_view().value(i).to_owned()),
        DataType::Binary => Val::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        DataType::LargeBinary => Val::Bytes(array.as_binary::<i64>().value(i).to_vec()),
        DataType::Boolean => Val::Bool(array.as_boolean().value(i)),
        DataType::Timestamp(unit, _) => {
            use arrow_array::types::{
                TimestampMicrosecondType as Us, TimestampMillisecondType as Ms,
                TimestampNanosecondType as Ns, TimestampSecondType as S,
            };
            Val::Time(match unit {
                TimeUnit::Second => array
                    .as_primitive::<S>()
                    .value(i)
                    .saturating_mul(1_000_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<Ms>()
                    .value(i)
                    .saturating_mul(1_000_000),
                TimeUnit::Microsecond => array.as_primitive::<Us>().value(i).saturating_mul(1_000),
                TimeUnit::Nanosecond => array.as_primitive::<Ns>().value(i),
            })
        }
        other => return Err(format!("the online store does not hold {other} values")),
    };
    Ok(Some(v))
}

/// One part of an entity key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum KeyPart {
    /// An integer key (any width).
    Int(i64),
    /// A string key.
    Str(String),
}

/// Row `i` of a key column; `None` for null (a null key matches nothing and is never
/// stored).
pub fn key_part_at(array: &ArrayRef, i: usize) -> Option<KeyPart> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int64 => KeyPart::Int(array.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => KeyPart::Int(array.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int16 => KeyPart::Int(array.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int8 => KeyPart::Int(array.as_primitive::<Int8Type>().value(i).into()),
        DataType::UInt32 => KeyPart::Int(array.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt16 => KeyPart::Int(array.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt8 => KeyPart::Int(array.as_primitive::<UInt8Type>().value(i).into()),
        DataType::Utf8 => KeyPart::Str(array.as_string::<i32>().value(i).to_owned()),
        DataType::LargeUtf8 => KeyPart::Str(array.as_string::<i64>().value(i).to_owned()),
        DataType::Utf8View => KeyPart::Str(array.as_string_view().value(i).to_owned()),
        _ => return None,
    })
}

/// A request's key value, checked against the entity's declared type.
pub fn key_part_of(v: &pb::Value, declared: ValueType) -> Result<Option<KeyPart>, String> {
    use pb::value::Kind;
    match (&v.kind, declared) {
        (None, _) => Ok(None),
        (Some(Kind::Int64Value(i)), ValueType::Int64 | ValueType::Int32) => {
            Ok(Some(KeyPart::Int(*i)))
        }
        (Some(Kind::Int32Value(i)), ValueType::Int64 | ValueType::Int32) => {
            Ok(Some(KeyPart::Int((*i).into())))
        }
        (Some(Kind::StringValue(s)), ValueType::String) => Ok(Some(KeyPart::Str(s.clone()))),
        (Some(other), _) => Err(format!(
            "a {} value where the entity's key type is {}",
            match other {
                Kind::Int64Value(_) => "int64",
                Kind::Int32Value(_) => "int32",
                Kind::DoubleValue(_) => "double",
                Kind::FloatValue(_) => "float",
                Kind::StringValue(_) => "string",
                Kind::BytesValue(_) => "bytes",
                Kind::BoolValue(_) => "bool",
                Kind::UnixTimestampNanos(_) => "timestamp",
            },
            declared.as_str()
        )),
    }
}

/// The stored form of a key: its parts as a JSON array (`[1001]`, `["a",5]`), so that
/// parts are delimited and typed and two keys never share a form.
pub fn encode_key(parts: &[KeyPart]) -> String {
    serde_json::to_string(parts).expect("key parts serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_never_collide() {
        let a = encode_key(&[KeyPart::Str("a".into()), KeyPart::Str("bc".into())]);
        let b = encode_key(&[KeyPart::Str("ab".into()), KeyPart::Str("c".into())]);
        let c = encode_key(&[KeyPart::Str("1".into())]);
        let d = encode_key(&[KeyPart::Int(1)]);
        assert_ne!(a, b);
        assert_ne!(c, d, "a string key and an int key differ");
        assert_eq!(encode_key(&[KeyPart::Int(1001)]), "[1001]");
    }

    #[test]
    fn values_survive_their_stored_form() {
        let vals = vec![
            Some(Val::Float32(0.1)),
            Some(Val::Float64(0.1)),
            Some(Val::Int64(-7)),
            Some(Val::Str("x\"y".into())),
            Some(Val::Bytes(vec![0, 255])),
            Some(Val::Bool(true)),
            Some(Val::Time(1_700_000_000_123_456_789)),
            None,
        ];
        let json = serde_json::to_string(&vals).unwrap();
        let back: Vec<Option<Val>> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vals);
    }
}
