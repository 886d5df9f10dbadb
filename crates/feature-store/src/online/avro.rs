//! Avro's binary encoding, for the Kafka sources whose producers write Avro: a minimal
//! decoder that turns one message value into the JSON object the JSON path of
//! [`super::ingest`] reads, so that both formats share its rules for keys, times and
//! feature values.
//!
//! A schema is a flat record of primitives (`null`, `boolean`, `int`, `long`, `float`,
//! `double`, `bytes`, `string`), enums, the logical types `timestamp-millis`,
//! `timestamp-micros` and `timestamp-nanos` on `long`, and unions of `null` with one of
//! these, in either order. Anything else (arrays, maps, fixed, nested records, references
//! to named types, other unions) is refused when the schema is parsed, with a message that
//! names the field, rather than when the first message arrives.
//!
//! Logical types: the timestamps are decoded to RFC 3339 text. The other logical types of
//! the Avro specification (`date`, `time-*`, `local-timestamp-*`, `decimal`, `duration`,
//! `big-decimal`) are refused, because their base type's value would be a number or bytes
//! whose meaning the online store cannot tell from an ordinary one, except `uuid` on
//! `string`, whose value is the string itself. A logical type that the specification does
//! not define is ignored and the base type used, as the specification asks of readers.
//!
//! Values in JSON: null → null; boolean → bool; int and long → an integer; float and
//! double → a number, or null when not finite (JSON has no NaN); string and enum symbol →
//! a string; bytes → standard base64 with padding, as the JSON path reads bytes features;
//! timestamps → RFC 3339 with nine fractional digits and `Z`.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Number, Value as Json};

#[cfg(test)]
mod tests;

/// The two bytes that start Avro's single-object encoding.
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// The marker and the 8-byte schema fingerprint that follows it.
const SINGLE_OBJECT_HEADER: usize = 10;

/// An Avro record schema, parsed from its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct AvroSchema {
    fields: Vec<Field>,
}

/// A field of the record.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    shape: Shape,
}

/// A field's type: one type, or a union of null and one type.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    One(Type),
    /// `null_first`: null is branch 0 (`["null", t]`), else branch 1 (`[t, "null"]`).
    OrNull {
        null_first: bool,
        value: Type,
    },
}

/// A type the decoder reads.
#[derive(Debug, Clone, PartialEq)]
enum Type {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    /// The symbols, by index.
    Enum(Vec<String>),
    /// A `long` of units since the epoch: the nanoseconds in one unit.
    Timestamp(i64),
}

impl AvroSchema {
    /// Parses a schema's JSON text; the top level must be a record. Error: a message a
    /// person can act on (which field, which type is not supported).
    pub fn parse(text: &str) -> Result<AvroSchema, String> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| format!("the Avro schema is not JSON: {e}"))?;
        let record = match &json {
            Json::Object(o) if o.get("type").and_then(Json::as_str) == Some("record") => o,
            other => {
                return Err(format!(
                    "the Avro schema's top level must be a record, not {}",
                    describe(other)
                ))
            }
        };
        let Some(Json::Array(raw_fields)) = record.get("fields") else {
            return Err("the Avro record has no \"fields\" array".to_owned());
        };
        let mut fields: Vec<Field> = Vec::with_capacity(raw_fields.len());
        for (i, raw) in raw_fields.iter().enumerate() {
            let Some(name) = raw.get("name").and_then(Json::as_str) else {
                return Err(format!("field {} of the Avro record has no name", i + 1));
            };
            if fields.iter().any(|f| f.name == name) {
                return Err(format!("field `{name}` appears twice in the Avro record"));
            }
            let Some(ty) = raw.get("type") else {
                return Err(format!("field `{name}` has no type"));
            };
            let shape = parse_shape(ty).map_err(|why| format!("field `{name}`: {why}"))?;
            fields.push(Field {
                name: name.to_owned(),
                shape,
            });
        }
        Ok(AvroSchema { fields })
    }

    /// The record's field names, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }
}

/// A field's type, as JSON, for an error message.
fn describe(v: &Json) -> String {
    match v {
        Json::String(s) => format!("type {s}"),
        Json::Array(_) => "a union".to_owned(),
        Json::Object(o) => match o.get("type") {
            Some(Json::String(s)) => format!("type {s}"),
            _ => "an object without a type name".to_owned(),
        },
        other => format!("`{other}`"),
    }
}

/// A field's type: a union, or one type.
fn parse_shape(v: &Json) -> Result<Shape, String> {
    let Json::Array(branches) = v else {
        return parse_type(v).map(Shape::One);
    };
    const RULE: &str = "a union must be of null and one other type, e.g. [\"null\", \"double\"]";
    let [a, b] = branches.as_slice() else {
        return Err(format!("{RULE}, not {} branches", branches.len()));
    };
    if a.is_array() || b.is_array() {
        return Err(format!("{RULE}; a union cannot hold a union"));
    }
    match (parse_type(a)?, parse_type(b)?) {
        (Type::Null, Type::Null) => Err(format!("{RULE}, not null twice")),
        (Type::Null, value) => Ok(Shape::OrNull {
            null_first: true,
            value,
        }),
        (value, Type::Null) => Ok(Shape::OrNull {
            null_first: false,
            value,
        }),
        _ => Err(format!("{RULE}; this one has no null")),
    }
}

/// One type: a name, or an object with a type name and maybe a logical type.
fn parse_type(v: &Json) -> Result<Type, String> {
    match v {
        Json::String(name) => named(name),
        Json::Object(o) => {
            let Some(Json::String(name)) = o.get("type") else {
                return Err(
                    "a type object's \"type\" must be a type name, e.g. {\"type\": \"long\"}"
                        .to_owned(),
                );
            };
            if name == "enum" {
                return parse_enum(o);
            }
            let base = named(name)?;
            match o.get("logicalType") {
                None => Ok(base),
                Some(Json::String(logical)) => with_logical(base, name, logical),
                Some(other) => Err(format!("logicalType must be a string, not {other}")),
            }
        }
        other => Err(format!("{other} is not an Avro type")),
    }
}

/// A type given by its name alone.
fn named(name: &str) -> Result<Type, String> {
    Ok(match name {
        "null" => Type::Null,
        "boolean" => Type::Boolean,
        "int" => Type::Int,
        "long" => Type::Long,
        "float" => Type::Float,
        "double" => Type::Double,
        "bytes" => Type::Bytes,
        "string" => Type::String,
        "record" | "error" | "array" | "map" | "fixed" => {
            return Err(format!(
                "type {name} is not supported; use a flat record of primitives"
            ))
        }
        "enum" => return Err("an enum must be an object with its symbols".to_owned()),
        other => {
            return Err(format!(
                "type `{other}` is a reference to a named type, which is not supported; \
                 declare each field's type in the field"
            ))
        }
    })
}

/// An enum type: its symbols, which must be distinct strings.
fn parse_enum(o: &Map<String, Json>) -> Result<Type, String> {
    const RULE: &str = "an enum's symbols must be a non-empty array of distinct strings";
    let Some(Json::Array(raw)) = o.get("symbols") else {
        return Err(RULE.to_owned());
    };
    let mut symbols: Vec<String> = Vec::with_capacity(raw.len());
    for s in raw {
        match s.as_str() {
            Some(s) if !symbols.iter().any(|x| x == s) => symbols.push(s.to_owned()),
            _ => return Err(RULE.to_owned()),
        }
    }
    if symbols.is_empty() {
        return Err(RULE.to_owned());
    }
    Ok(Type::Enum(symbols))
}

/// `base` (named `base_name`) with the logical type `logical`.
fn with_logical(base: Type, base_name: &str, logical: &str) -> Result<Type, String> {
    let unit = match logical {
        "timestamp-millis" => 1_000_000,
        "timestamp-micros" => 1_000,
        "timestamp-nanos" => 1,
        "uuid" if base == Type::String => return Ok(base),
        "date"
        | "time-millis"
        | "time-micros"
        | "local-timestamp-millis"
        | "local-timestamp-micros"
        | "local-timestamp-nanos"
        | "decimal"
        | "big-decimal"
        | "duration"
        | "uuid" => {
            return Err(format!(
                "logical type {logical} on {base_name} is not supported; \
                 the supported ones are timestamp-millis, timestamp-micros and \
                 timestamp-nanos on long, and uuid on string"
            ))
        }
        // Unknown to the specification: read as the base type.
        _ => return Ok(base),
    };
    if base != Type::Long {
        return Err(format!(
            "logical type {logical} must annotate a long, not {base_name}"
        ));
    }
    Ok(Type::Timestamp(unit))
}

/// Decodes one message: an Avro binary datum of `schema`, optionally preceded by Avro's
/// single-object encoding header (the two bytes 0xC3 0x01 then an 8-byte schema
/// fingerprint, which is skipped, not checked). Bytes left over after the datum are an
/// error, as is a truncated datum.
///
/// A raw datum may itself start with 0xC3 0x01 (a first field of type long equal to -98,
/// for one), so a message that starts with them and does not decode after a header is
/// decoded again as a raw datum; the error, when neither decodes, gives both reasons.
pub fn decode(schema: &AvroSchema, bytes: &[u8]) -> Result<Map<String, Json>, String> {
    if !bytes.starts_with(&SINGLE_OBJECT_MARKER) {
        return decode_from(schema, bytes, 0);
    }
    let framed = if bytes.len() < SINGLE_OBJECT_HEADER {
        Err(format!(
            "truncated: a single-object header is {SINGLE_OBJECT_HEADER} bytes, \
             the message has {}",
            bytes.len()
        ))
    } else {
        decode_from(schema, bytes, SINGLE_OBJECT_HEADER)
    };
    framed.or_else(|framed_err| {
        decode_from(schema, bytes, 0).map_err(|raw_err| {
            format!("as a single-object message: {framed_err}; as a raw datum: {raw_err}")
        })
    })
}

/// The datum of `schema` at `bytes[start..]`, which must end at the end of `bytes`.
fn decode_from(
    schema: &AvroSchema,
    bytes: &[u8],
    start: usize,
) -> Result<Map<String, Json>, String> {
    let mut r = Reader { bytes, pos: start };
    let mut row = Map::new();
    for f in &schema.fields {
        let v = r
            .shape(&f.shape)
            .map_err(|why| format!("field `{}`: {why}", f.name))?;
        row.insert(f.name.clone(), v);
    }
    if r.pos != bytes.len() {
        return Err(format!(
            "bytes left over after the record: it ends at byte {} of {}",
            r.pos,
            bytes.len()
        ));
    }
    Ok(row)
}

/// A position in a message.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes, for a value described by `what`.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(format!(
                "truncated: {what} at byte {} needs {n} bytes, {left} left",
                self.pos
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A zigzag varint of at most 10 bytes, as a long.
    fn long(&mut self) -> Result<i64, String> {
        let start = self.pos;
        let mut n: u64 = 0;
        for i in 0..10 {
            let b = self.take(1, "a varint")?[0];
            if i == 9 && b > 1 {
                return Err(if b & 0x80 != 0 {
                    format!("the varint at byte {start} is longer than 10 bytes")
                } else {
                    format!("the varint at byte {start} overflows 64 bits")
                });
            }
            n |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
            }
        }
        unreachable!("the tenth byte returns or fails")
    }

    /// A zigzag varint in the range of an int (written with more bytes than it needs or
    /// not, as other readers accept it).
    fn int(&mut self) -> Result<i32, String> {
        let start = self.pos;
        let n = self.long()?;
        i32::try_from(n).map_err(|_| format!("the int at byte {start} is out of range: {n}"))
    }

    /// The bytes of a `bytes` or `string`: a length, then that many bytes.
    fn sized(&mut self, what: &str) -> Result<&'a [u8], String> {
        let start = self.pos;
        let n = self.long()?;
        let n = usize::try_from(n)
            .map_err(|_| format!("the {what} at byte {start} has a negative length: {n}"))?;
        self.take(n, what)
    }

    /// A value of a field's shape.
    fn shape(&mut self, shape: &Shape) -> Result<Json, String> {
        match shape {
            Shape::One(t) => self.value(t),
            Shape::OrNull { null_first, value } => {
                let start = self.pos;
                let null: i64 = if *null_first { 0 } else { 1 };
                match self.long()? {
                    b if b == null => Ok(Json::Null),
                    b if b == 1 - null => self.value(value),
                    b => Err(format!(
                        "the union branch at byte {start} is {b}; the union has branches 0 and 1"
                    )),
                }
            }
        }
    }

    /// A value of type `t`.
    fn value(&mut self, t: &Type) -> Result<Json, String> {
        Ok(match t {
            Type::Null => Json::Null,
            Type::Boolean => {
                let start = self.pos;
                match self.take(1, "a boolean")?[0] {
                    0 => Json::Bool(false),
                    1 => Json::Bool(true),
                    b => {
                        return Err(format!(
                            "the boolean at byte {start} is {b:#04x}, neither 0 nor 1"
                        ))
                    }
                }
            }
            Type::Int => Json::from(self.int()?),
            Type::Long => Json::from(self.long()?),
            Type::Float => {
                let b = self.take(4, "a float")?;
                let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                number(f64::from(f))
            }
            Type::Double => {
                let b = self.take(8, "a double")?;
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                number(f64::from_le_bytes(le))
            }
            Type::Bytes => {
                let b = self.sized("bytes")?;
                Json::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Type::String => {
                let start = self.pos;
                let b = self.sized("string")?;
                let s = std::str::from_utf8(b)
                    .map_err(|e| format!("the string at byte {start} is not UTF-8: {e}"))?;
                Json::String(s.to_owned())
            }
            Type::Enum(symbols) => {
                let start = self.pos;
                let i = self.int()?;
                let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                match symbol {
                    Some(s) => Json::String(s.clone()),
                    None => {
                        return Err(format!(
                            "the enum index at byte {start} is {i}; the enum has {} symbols",
                            symbols.len()
                        ))
                    }
                }
            }
            Type::Timestamp(unit) => {
                let start = self.pos;
                let n = self.long()?;
                let nanos = n.checked_mul(*unit).ok_or_else(|| {
                    format!(
                        "the timestamp at byte {start} ({n} units of {unit} ns) is out of \
                         the range of nanoseconds since the epoch in 64 bits \
                         (1677-09-21 to 2262-04-11)"
                    )
                })?;
                Json::String(
                    DateTime::<Utc>::from_timestamp_nanos(nanos)
                        .to_rfc3339_opts(SecondsFormat::Nanos, true),
                )
            }
        })
    }
}

/// A finite number, or null: JSON has no NaN or infinity.
fn number(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}
