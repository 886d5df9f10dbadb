//! Inference over HTTP/JSON: a request's JSON header and binary tensors decoded and checked
//! against the model, and the answer in JSON or as binary tensors (see [`super`]).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mlops_model::{Tensor, TensorData};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{read_body, Answer, HttpError, ModelPath, Shared, HEADER_LENGTH};
use crate::error::{invalid, InferenceError, Result};
use crate::grpc;
use crate::models::{Call, Loaded};
use crate::tensors::{
    datatype_name, decode_raw, element_count, element_size, encode_raw, parse_datatype, tensor,
};

/// An inference request's JSON header.
#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, Value>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: HashMap<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: HashMap<String, Value>,
}

/// Splits a body into its JSON header and the binary tensor data after it.
fn split_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Answer<(&'b [u8], &'b [u8])> {
    let Some(value) = headers.get(&HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("Inference-Header-Content-Length must be a byte count, not {value:?}"),
            )
        })?;
    if length > body.len() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Inference-Header-Content-Length is {length} but the body has only {} bytes",
                body.len()
            ),
        ));
    }
    Ok(body.split_at(length))
}

pub(super) async fn infer(
    State(api): Shared,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        if encoding.as_bytes() != b"identity" {
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {encoding:?} is not supported: send the body uncompressed"
                ),
            ));
        }
    }
    let body = read_body(body, api.max_body_bytes).await?;
    let (header_part, binary) = split_body(&headers, &body)?;
    let route = api.manager.route(&p.name, &p.version, |h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })?;
    let loaded = route.loaded;
    let prepared = serde_json::from_slice::<InferRequest>(header_part)
        .map_err(|e| {
            invalid(format!(
                "the inference request is not the JSON expected: {e}"
            ))
        })
        .and_then(|req| prepare(&loaded, req, binary));
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            loaded.rejected(&e);
            return Err(e.into());
        }
    };
    let id = loaded.request_id(prepared.id.as_deref().unwrap_or_default());
    let call = Call {
        request_id: &id,
        fault: route.fault,
    };
    let outputs = loaded
        .infer_shadowed(
            &call,
            prepared.rows,
            prepared.inputs,
            prepared.timeout,
            route.shadow,
        )
        .await?;
    let names: Vec<String> = prepared.wanted.iter().map(|(n, _)| n.clone()).collect();
    let outputs = grpc::select_outputs(&loaded, outputs, &names)?;
    let binary: Vec<bool> = if prepared.wanted.is_empty() {
        vec![prepared.all_binary; outputs.len()]
    } else {
        prepared.wanted.iter().map(|(_, b)| *b).collect()
    };
    let id = (!id.is_empty()).then_some(id);
    Ok(respond(&loaded, id.as_deref(), &outputs, &binary))
}

/// A request checked against the model and decoded, ready to run.
struct Prepared {
    id: Option<String>,
    timeout: Option<std::time::Duration>,
    /// The outputs asked for, each with whether it is wanted as binary data.
    wanted: Vec<(String, bool)>,
    /// Whether outputs not asked for by name are answered as binary data.
    all_binary: bool,
    rows: usize,
    inputs: Vec<Tensor>,
}

fn flag(params: &HashMap<String, Value>, key: &str) -> Result<Option<bool>> {
    params
        .get(key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| invalid(format!("parameter {key:?} must be true or false, not {v}")))
        })
        .transpose()
}

fn unsupported_parameters(what: &str, params: &HashMap<String, Value>) -> Result<()> {
    if params.contains_key("shared_memory_region") {
        return Err(invalid(format!(
            "{what}: shared memory is not supported by this server; send the tensor in the request"
        )));
    }
    Ok(())
}

fn prepare(loaded: &Loaded, req: InferRequest, mut binary: &[u8]) -> Result<Prepared> {
    let timeout = grpc::timeout_of(&req.parameters)?;
    let all_binary = flag(&req.parameters, "binary_data_output")?.unwrap_or(false);
    let mut wanted = Vec::with_capacity(req.outputs.len());
    for out in &req.outputs {
        if out.parameters.contains_key("classification") {
            return Err(invalid(
                "the classification extension is not supported: request the output itself",
            ));
        }
        unsupported_parameters(&format!("output {:?}", out.name), &out.parameters)?;
        if !loaded.model.outputs().iter().any(|s| s.name == out.name) {
            return Err(
                grpc::select_outputs(loaded, vec![], std::slice::from_ref(&out.name))
                    .err()
                    .unwrap_or_else(|| invalid("unknown output")),
            );
        }
        let b = flag(&out.parameters, "binary_data")?.unwrap_or(all_binary);
        wanted.push((out.name.clone(), b));
    }
    let mut named = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let name = &input.name;
        let dtype = parse_datatype(&input.datatype).ok_or_else(|| {
            invalid(format!(
                "input {name:?}: unknown or unsupported datatype {:?}; use one of BOOL, UINT8..UINT64, INT8..INT64, FP32, FP64, BYTES",
                input.datatype
            ))
        })?;
        // The type first: a wrong datatype also makes the byte count wrong, and the type is
        // the mistake to report.
        loaded.check_datatype(name, dtype)?;
        unsupported_parameters(&format!("input {name:?}"), &input.parameters)?;
        let count = element_count(name, &input.shape)?;
        let size = input
            .parameters
            .get("binary_data_size")
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    invalid(format!(
                        "input {name:?}: binary_data_size must be a byte count, not {v}"
                    ))
                })
            })
            .transpose()?;
        let data = match (size, &input.data) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "input {name:?} has both data and binary_data_size; send one"
                )))
            }
            (Some(size), None) => {
                loaded.check_size(name, size)?;
                let size = size as usize;
                if size > binary.len() {
                    return Err(invalid(format!(
                        "input {name:?}: binary_data_size is {size} but only {} bytes of binary data follow (the JSON header's length is in Inference-Header-Content-Length; inputs take the bytes after it in order)",
                        binary.len()
                    )));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                decode_raw(name, dtype, count, raw)?
            }
            (None, Some(data)) => {
                if let Some(width) = element_size(dtype) {
                    loaded.check_size(name, count as u64 * width as u64)?;
                }
                from_json(name, dtype, count, data)?
            }
            (None, None) => {
                return Err(invalid(format!(
                    "input {name:?} has no data: set its data, or its binary_data_size and the bytes after the JSON header"
                )))
            }
        };
        named.push((input.name, tensor(&input.shape, data)));
    }
    if !binary.is_empty() {
        return Err(invalid(format!(
            "{} bytes of binary data follow the inputs' binary_data_size; each byte must belong to an input",
            binary.len()
        )));
    }
    let (rows, inputs) = loaded.arrange(named)?;
    Ok(Prepared {
        id: req.id,
        timeout,
        wanted,
        all_binary,
        rows,
        inputs,
    })
}

/// Collects the elements of a flat or nested JSON array, row-major.
fn flatten<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// Decodes `count` elements of `dtype` from JSON `data`.
fn from_json(
    name: &str,
    dtype: mlops_model::DataType,
    count: usize,
    data: &Value,
) -> Result<TensorData> {
    use mlops_model::DataType as D;
    let mut flat = Vec::with_capacity(count.min(1 << 20));
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(invalid(format!(
            "input {name:?}: data holds {} elements; its shape needs {count}",
            flat.len()
        )));
    }
    let wrong = |i: usize, v: &Value, takes: &str| {
        invalid(format!(
            "input {name:?}: data element {i} is {v}; {} takes {takes}",
            datatype_name(dtype)
        ))
    };
    fn each<T>(flat: &[&Value], f: impl Fn(usize, &Value) -> Result<T>) -> Result<Vec<T>> {
        flat.iter().enumerate().map(|(i, v)| f(i, v)).collect()
    }
    let int = |i: usize, v: &Value| -> Result<i64> {
        v.as_i64()
            .ok_or_else(|| wrong(i, v, "integers in its range"))
    };
    macro_rules! narrow {
        ($t:ty) => {
            each(&flat, |i, v| {
                <$t>::try_from(int(i, v)?).map_err(|_| wrong(i, v, "integers in its range"))
            })?
        };
    }
    let float = |i: usize, v: &Value| -> Result<f64> {
        match v {
            Value::Null => Ok(f64::NAN),
            v => v
                .as_f64()
                .ok_or_else(|| wrong(i, v, "numbers (null for NaN)")),
        }
    };
    Ok(match dtype {
        D::Bool => TensorData::Bool(each(&flat, |i, v| {
            v.as_bool().ok_or_else(|| wrong(i, v, "true or false"))
        })?),
        D::U8 => TensorData::U8(narrow!(u8)),
        D::U16 => TensorData::U16(narrow!(u16)),
        D::U32 => TensorData::U32(narrow!(u32)),
        D::U64 => TensorData::U64(each(&flat, |i, v| {
            v.as_u64()
                .ok_or_else(|| wrong(i, v, "integers in its range"))
        })?),
        D::I8 => TensorData::I8(narrow!(i8)),
        D::I16 => TensorData::I16(narrow!(i16)),
        D::I32 => TensorData::I32(narrow!(i32)),
        D::I64 => TensorData::I64(each(&flat, int)?),
        D::F32 => TensorData::F32(each(&flat, |i, v| float(i, v).map(|f| f as f32))?),
        D::F64 => TensorData::F64(each(&flat, float)?),
        D::String => TensorData::String(each(&flat, |i, v| {
            v.as_str()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| wrong(i, v, "strings"))
        })?),
    })
}

/// An inference response's JSON header.
#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// A tensor's elements as a flat JSON array: floats in their shortest form (`null` when not
/// finite), BYTES as strings (invalid UTF-8 replaced).
struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::U8(v) => v.serialize(s),
            TensorData::U16(v) => v.serialize(s),
            TensorData::U32(v) => v.serialize(s),
            TensorData::U64(v) => v.serialize(s),
            TensorData::I8(v) => v.serialize(s),
            TensorData::I16(v) => v.serialize(s),
            TensorData::I32(v) => v.serialize(s),
            TensorData::I64(v) => v.serialize(s),
            TensorData::F32(v) => v.serialize(s),
            TensorData::F64(v) => v.serialize(s),
            TensorData::String(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

/// The response: JSON alone, or JSON then each binary output's bytes in order, with the JSON's
/// length in `Inference-Header-Content-Length`.
fn respond(
    loaded: &Loaded,
    id: Option<&str>,
    outputs: &[(String, Tensor)],
    binary: &[bool],
) -> Response {
    let raw: Vec<Option<Bytes>> = outputs
        .iter()
        .zip(binary)
        .map(|((_, t), &b)| b.then(|| encode_raw(&t.data)))
        .collect();
    let header = InferResponse {
        model_name: &loaded.name,
        model_version: loaded.version.to_string(),
        id: id.filter(|i| !i.is_empty()),
        outputs: outputs
            .iter()
            .zip(&raw)
            .map(|((name, t), raw)| OutputTensor {
                name,
                datatype: datatype_name(t.dtype()),
                shape: &t.shape,
                parameters: raw.as_ref().map(|r| BinarySize {
                    binary_data_size: r.len(),
                }),
                data: raw.is_none().then_some(JsonData(&t.data)),
            })
            .collect(),
    };
    let mut body = match serde_json::to_vec(&header) {
        Ok(b) => b,
        Err(e) => {
            return HttpError::from(InferenceError::Internal(format!(
                "writing the response: {e}"
            )))
            .into_response()
        }
    };
    if raw.iter().all(Option::is_none) {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let json_length = body.len();
    body.reserve(raw.iter().flatten().map(Bytes::len).sum());
    for r in raw.iter().flatten() {
        body.extend_from_slice(r);
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (HEADER_LENGTH, HeaderValue::from(json_length)),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_model::DataType as D;
    use serde_json::json;

    #[test]
    fn nested_and_flat_data_decode_alike() {
        let flat = from_json("x", D::F32, 4, &json!([1, 2.5, 0, -1])).unwrap();
        let nested = from_json("x", D::F32, 4, &json!([[1, 2.5], [0, -1]])).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, 0.0, -1.0]));
        let TensorData::F64(v) = from_json("x", D::F64, 1, &json!([null])).unwrap() else {
            panic!("f64")
        };
        assert!(v[0].is_nan());
        assert_eq!(
            from_json("x", D::String, 2, &json!(["a", "bé"])).unwrap(),
            TensorData::String(vec![b"a".to_vec(), "bé".as_bytes().to_vec()])
        );
        assert_eq!(
            from_json("x", D::Bool, 2, &json!([true, false])).unwrap(),
            TensorData::Bool(vec![true, false])
        );
    }

    #[test]
    fn bad_data_says_which_element_and_what_was_expected() {
        let err = from_json("x", D::F32, 3, &json!([1, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 2 elements; its shape needs 3"), "{err}");
        let err = from_json("x", D::I8, 2, &json!([1, 300]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("element 1 is 300; INT8 takes integers"),
            "{err}"
        );
        let err = from_json("x", D::F32, 1, &json!(["a"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FP32 takes numbers"), "{err}");
        let err = from_json("x", D::String, 1, &json!([1]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BYTES takes strings"), "{err}");
    }

    #[test]
    fn outputs_write_floats_short_and_non_finite_as_null() {
        let data = TensorData::F32(vec![0.1, f32::NAN, f32::INFINITY]);
        assert_eq!(
            serde_json::to_string(&JsonData(&data)).unwrap(),
            "[0.1,null,null]"
        );
        let data = TensorData::String(vec![b"ok".to_vec(), vec![0xff]]);
        assert_eq!(
            serde_json::to_string(&JsonData(&data)).unwrap(),
            "[\"ok\",\"\u{fffd}\"]"
        );
    }

    #[test]
    fn the_header_length_splits_the_body() {
        let mut h = HeaderMap::new();
        assert_eq!(split_body(&h, b"{}ab").unwrap(), (&b"{}ab"[..], &b""[..]));
        h.insert(HEADER_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(split_body(&h, b"{}ab").unwrap(), (&b"{}"[..], &b"ab"[..]));
        h.insert(HEADER_LENGTH, HeaderValue::from_static("9"));
        let err = split_body(&h, b"{}ab").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("only 4 bytes"), "{}", err.message);
        h.insert(HEADER_LENGTH, HeaderValue::from_static("two"));
        assert!(split_body(&h, b"{}").is_err());
    }
}
