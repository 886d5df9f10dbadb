//! What every MLflow endpoint reads and writes the same way.
//!
//! - [`Params`]: a request's parameters, from the query string of a GET or the JSON
//!   body of a POST, read leniently the way MLflow's server (protobuf's `ParseDict`)
//!   reads them: int64 as numbers or strings, doubles as numbers or `"NaN"`,
//!   `"Infinity"`, `"-Infinity"`, enums as names or numbers, a repeated field given
//!   once in a query string as a single value, `null` as unset, unknown fields ignored;
//! - [`float`]: doubles written as MLflow writes them (non-finite ones as strings);
//! - [`KeyValue`]: the `{"key", "value"}` pairs of tags and params.

use axum::body::Body;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, Method, StatusCode};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{ApiError, Result};
use crate::state::AppState;

/// The parameters of one request, as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    map: Map<String, Value>,
    /// Where this object sits in the request (`metrics[2].`), for error messages.
    path: String,
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 100 {
        format!("{}...", s.chars().take(100).collect::<String>())
    } else {
        s
    }
}

/// A double from a JSON value: a number, or a string as protobuf's JSON mapping
/// writes doubles (`"NaN"`, `"Infinity"`, `"-Infinity"`, `"1.5"`).
pub fn parse_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        },
        _ => None,
    }
}

/// Why a JSON value is not an int64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntError {
    /// Not a number without fraction, nor a decimal string.
    #[error("an integer")]
    NotAnInteger,
    /// An integer that an int64 cannot hold: MLflow's server refuses it rather than
    /// storing a neighbouring value.
    #[error("an integer from {} to {}", i64::MIN, i64::MAX)]
    OutOfRange,
}

/// 2^63 as a double: the first integral double past `i64::MAX` (which a double
/// cannot hold exactly), and minus it is `i64::MIN`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// An integer from a JSON value: a number without fraction, or a decimal string,
/// that fits an int64 (`f as i64` would saturate, storing a value nobody sent).
pub fn parse_int(v: &Value) -> std::result::Result<i64, IntError> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            if n.as_u64().is_some() {
                return Err(IntError::OutOfRange);
            }
            let f = n.as_f64().ok_or(IntError::NotAnInteger)?;
            if !f.is_finite() || f.fract() != 0.0 {
                Err(IntError::NotAnInteger)
            } else if !(-TWO_POW_63..TWO_POW_63).contains(&f) {
                Err(IntError::OutOfRange)
            } else {
                // In range and integral: the cast is exact.
                Ok(f as i64)
            }
        }
        Value::String(s) => s.trim().parse::<i64>().map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                IntError::OutOfRange
            }
            _ => IntError::NotAnInteger,
        }),
        _ => Err(IntError::NotAnInteger),
    }
}

impl Params {
    /// Parameters from a JSON object (anything else is `INVALID_PARAMETER_VALUE`).
    pub fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Params {
                map,
                path: String::new(),
            }),
            Value::Null => Ok(Params::default()),
            other => Err(ApiError::invalid(format!(
                "the request body must be a JSON object, not {}",
                describe(&other)
            ))),
        }
    }

    /// Parameters from a query string's pairs: a key given more than once is a list.
    pub fn from_query(pairs: Vec<(String, String)>) -> Self {
        let mut map = Map::new();
        for (k, v) in pairs {
            match map.get_mut(&k) {
                None => {
                    map.insert(k, Value::String(v));
                }
                Some(Value::Array(list)) => list.push(Value::String(v)),
                Some(first) => {
                    let first = first.take();
                    map.insert(k, Value::Array(vec![first, Value::String(v)]));
                }
            }
        }
        Params {
            map,
            path: String::new(),
        }
    }

    /// Parameters from a JSON body. An empty body is no parameters; a body that is a
    /// JSON string holding an object is decoded twice, as MLflow's server does for
    /// old clients that double-encode.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
        match v {
            Value::String(inner) => {
                let v: Value = serde_json::from_str(&inner).map_err(|e| {
                    ApiError::invalid(format!("the request body is not valid JSON: {e}"))
                })?;
                Params::from_value(v)
            }
            v => Params::from_value(v),
        }
    }

    /// The value of `key`, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, v: &Value, expected: &str) -> ApiError {
        ApiError::invalid(format!(
            "Invalid value {} for parameter '{}{key}' supplied: expected {expected}.",
            describe(v),
            self.path
        ))
    }

    /// A string parameter; empty when absent.
    pub fn string(&self, key: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.bad(key, v, "a string")),
        }
    }

    /// MLflow's error for the required parameter `key` of this object.
    pub fn missing(&self, key: &str) -> ApiError {
        ApiError::missing(&format!("{}{key}", self.path))
    }

    /// A string parameter that must be present and not empty.
    pub fn required_string(&self, key: &str) -> Result<String> {
        let s = self.string(key)?;
        if s.is_empty() {
            return Err(self.missing(key));
        }
        Ok(s)
    }

    /// A run id given as `run_id` or as its old name `run_uuid` (both must agree).
    pub fn run_id(&self) -> Result<String> {
        let id = self.string("run_id")?;
        let uuid = self.string("run_uuid")?;
        let id = match (id.is_empty(), uuid.is_empty()) {
            (true, true) => return Err(self.missing("run_id")),
            (false, false) if id != uuid => {
                return Err(ApiError::invalid(format!(
                    "run_id `{id}` and run_uuid `{uuid}` name different runs; give one of them"
                )))
            }
            (false, _) => id,
            (true, false) => uuid,
        };
        // No run has an id of another form: MLflow answers such an id as any unknown
        // one (404), and clients that catch "not found" rely on it.
        if id.len() != 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let shown: String = id.chars().take(64).collect();
            return Err(ApiError::not_found(format!(
                "Run with id={shown} not found"
            )));
        }
        Ok(id)
    }

    /// An integer parameter, `None` when absent; one an int64 cannot hold is
    /// `INVALID_PARAMETER_VALUE` naming the parameter.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_int(v)
                .map(Some)
                .map_err(|e| self.bad(key, v, &e.to_string())),
        }
    }

    /// An integer parameter that must fit an `i32`, `None` when absent.
    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let out_of_range = || {
            self.bad(
                key,
                v,
                &format!("an integer from {} to {}", i32::MIN, i32::MAX),
            )
        };
        match parse_int(v) {
            Ok(n) => i32::try_from(n).map(Some).map_err(|_| out_of_range()),
            Err(IntError::OutOfRange) => Err(out_of_range()),
            Err(e) => Err(self.bad(key, v, &e.to_string())),
        }
    }

    /// `max_results`, refused above `limit` with the words of MLflow's request
    /// validation (the check its handlers make before the store's own).
    pub fn max_results(&self, limit: i64) -> Result<Option<i32>> {
        let n = self.opt_i32("max_results")?;
        match (n, self.get("max_results")) {
            (Some(n), Some(raw)) if i64::from(n) > limit => {
                let kind = if raw.is_string() { "str" } else { "int" };
                Err(ApiError::invalid(format!(
                    "Invalid value {raw} for parameter 'max_results' supplied:  Hint: Value was of \
                     type '{kind}'. See the API docs for more information about request parameters."
                )))
            }
            _ => Ok(n),
        }
    }

    /// A double parameter, `None` when absent.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_float(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, v, "a number")),
        }
    }

    /// A repeated string parameter: a list, or one string (a query string's single value).
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.bad(key, other, "a list of strings")),
                })
                .collect(),
            Some(v) => Err(self.bad(key, v, "a list of strings")),
        }
    }

    /// A repeated message parameter: a list of objects.
    pub fn objects(&self, key: &str) -> Result<Vec<Params>> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(map) => Ok(Params {
                        map: map.clone(),
                        path: format!("{}{key}[{i}].", self.path),
                    }),
                    other => Err(self.bad(key, other, "a list of objects")),
                })
                .collect(),
            Some(v) => Err(self.bad(key, v, "a list of objects")),
        }
    }

    /// A message parameter, `None` when absent.
    pub fn object(&self, key: &str) -> Result<Option<Params>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Params {
                map: map.clone(),
                path: format!("{}{key}.", self.path),
            })),
            Some(v) => Err(self.bad(key, v, "an object")),
        }
    }

    /// An enum parameter given by name or number, looked up in `table`
    /// (`(name, number, value)`), `None` when absent.
    pub fn opt_enum<T: Copy>(&self, key: &str, table: &[(&str, i64, T)]) -> Result<Option<T>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let found = match v {
            Value::String(s) => table
                .iter()
                .find(|(name, n, _)| name == s || s.parse::<i64>().ok() == Some(*n)),
            Value::Number(_) => {
                let n = parse_int(v).ok();
                table.iter().find(|(_, num, _)| Some(*num) == n)
            }
            _ => None,
        };
        match found {
            Some((_, _, t)) => Ok(Some(*t)),
            None => {
                let names: Vec<&str> = table.iter().map(|(n, _, _)| *n).collect();
                Err(self.bad(key, v, &format!("one of {}", names.join(", "))))
            }
        }
    }
}

/// Reads the parameters of a request: the query string of a GET (or its JSON body
/// when it has no query string, as MLflow's server does), else the JSON body, which
/// must be declared `application/json` like MLflow's server requires.
impl FromRequest<AppState> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        if req.method() == Method::GET || req.method() == Method::DELETE {
            if req.uri().query().is_some_and(|q| !q.is_empty()) {
                let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
                    .map_err(|e| {
                        ApiError::invalid(format!("the query string is not valid: {e}"))
                    })?;
                return Ok(Params::from_query(pairs));
            }
        } else {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            match content_type {
                None => {
                    return Err(ApiError::invalid(
                        "Bad Request. Content-Type header is missing.",
                    ))
                }
                Some(ct)
                    if !ct
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .eq_ignore_ascii_case("application/json") =>
                {
                    return Err(ApiError::invalid(
                        "Bad Request. Content-Type must be one of ['application/json'].",
                    ))
                }
                Some(_) => {}
            }
        }
        let limit = state.max_body_bytes();
        let bytes = read_body(req.into_body(), limit).await?;
        Params::from_json_bytes(&bytes)
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond).
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.to_string().contains("length limit"))
            || e.to_string().contains("length limit");
        if too_big {
            ApiError::invalid(format!(
                "the request body is larger than {limit} bytes (max_body_bytes)"
            ))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::invalid(format!("reading the request body failed: {e}"))
        }
    })
}

/// Writes a double as MLflow does: finite ones as JSON numbers, the others as the
/// strings `"NaN"`, `"Infinity"`, `"-Infinity"` (protobuf's JSON mapping).
pub fn float<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v == f64::INFINITY {
        s.serialize_str("Infinity")
    } else if *v == f64::NEG_INFINITY {
        s.serialize_str("-Infinity")
    } else {
        s.serialize_f64(*v)
    }
}

/// A tag or param as MLflow writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

impl KeyValue {
    /// Reads `{"key", "value"}` (the key is required).
    pub fn read(p: &Params) -> Result<(String, String)> {
        Ok((p.required_string("key")?, p.string("value")?))
    }
}

/// An empty JSON object, the answer of MLflow's calls that return nothing.
pub fn empty() -> axum::Json<Value> {
    axum::Json(Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Params {
        Params::from_value(v).unwrap()
    }

    #[test]
    fn numbers_are_read_as_protobufs_json_mapping_allows() {
        let q = p(json!({"a": 5, "b": "6", "c": 7.0, "d": 1.5, "e": "x", "n": null}));
        assert_eq!(q.opt_i64("a").unwrap(), Some(5));
        assert_eq!(q.opt_i64("b").unwrap(), Some(6));
        assert_eq!(q.opt_i64("c").unwrap(), Some(7));
        assert_eq!(q.opt_i64("n").unwrap(), None);
        assert_eq!(q.opt_i64("missing").unwrap(), None);
        let err = q.opt_i64("d").unwrap_err();
        assert_eq!(err.code.name(), "INVALID_PARAMETER_VALUE");
        assert!(err.message.contains("'d'"), "{}", err.message);
        assert!(q.opt_i64("e").is_err());
        assert!(p(json!({"x": 3_000_000_000i64})).opt_i32("x").is_err());

        let f = p(
            json!({"a": 0.5, "b": "NaN", "c": "Infinity", "d": "-Infinity", "e": "2.5", "f": 3, "g": true}),
        );
        assert_eq!(f.opt_f64("a").unwrap(), Some(0.5));
        assert!(f.opt_f64("b").unwrap().unwrap().is_nan());
        assert_eq!(f.opt_f64("c").unwrap(), Some(f64::INFINITY));
        assert_eq!(f.opt_f64("d").unwrap(), Some(f64::NEG_INFINITY));
        assert_eq!(f.opt_f64("e").unwrap(), Some(2.5));
        assert_eq!(f.opt_f64("f").unwrap(), Some(3.0));
        assert!(f.opt_f64("g").is_err());
    }

    #[test]
    fn integers_an_int64_cannot_hold_are_refused_not_saturated() {
        let huge: Value = serde_json::from_str("99999999999999999999999").unwrap();
        let q = p(json!({
            "step": huge.clone(), "timestamp": -1e23,
            "s": "99999999999999999999999", "t": "-100000000000000000000000",
            "u64": u64::MAX, "two_pow_63": 9_223_372_036_854_775_808.0,
            "max": i64::MAX, "min": i64::MIN, "min_f": -9_223_372_036_854_775_808.0,
            "e18": 1e18, "e18s": "1000000000000000000",
        }));
        for key in ["step", "timestamp", "s", "t", "u64", "two_pow_63"] {
            let err = q.opt_i64(key).unwrap_err();
            assert_eq!(
                (err.code.name(), err.http_status().as_u16()),
                ("INVALID_PARAMETER_VALUE", 400),
                "{key}"
            );
            assert!(err.message.contains(&format!("'{key}'")), "{}", err.message);
            assert!(
                err.message
                    .contains("from -9223372036854775808 to 9223372036854775807"),
                "{}",
                err.message
            );
            assert_eq!(parse_int(q.get(key).unwrap()), Err(IntError::OutOfRange));
        }
        assert_eq!(q.opt_i64("max").unwrap(), Some(i64::MAX));
        assert_eq!(q.opt_i64("min").unwrap(), Some(i64::MIN));
        assert_eq!(q.opt_i64("min_f").unwrap(), Some(i64::MIN));
        assert_eq!(q.opt_i64("e18").unwrap(), Some(1_000_000_000_000_000_000));
        assert_eq!(q.opt_i64("e18s").unwrap(), Some(1_000_000_000_000_000_000));
        assert_eq!(parse_int(&json!(1.5)), Err(IntError::NotAnInteger));
        assert_eq!(parse_int(&json!("-1e23")), Err(IntError::NotAnInteger));

        // Inside a list the message names the element's field.
        let batch = p(json!({"metrics": [{"step": 1}, {"step": huge.clone()}]}));
        let metrics = batch.objects("metrics").unwrap();
        assert_eq!(metrics[0].opt_i64("step").unwrap(), Some(1));
        let err = metrics[1].opt_i64("step").unwrap_err();
        assert!(err.message.contains("'metrics[1].step'"), "{}", err.message);

        // int32 fields name their own range, whatever the size of the value.
        for v in [huge, json!(-3_000_000_000i64), json!("2147483648")] {
            let err = p(json!({ "max_results": v }))
                .opt_i32("max_results")
                .unwrap_err();
            assert!(
                err.message.contains("'max_results'")
                    && err.message.contains("from -2147483648 to 2147483647"),
                "{}",
                err.message
            );
        }
        assert_eq!(
            p(json!({"max_results": "-2147483648"}))
                .opt_i32("max_results")
                .unwrap(),
            Some(i32::MIN)
        );
    }

    #[test]
    fn query_strings_make_repeated_keys_lists() {
        let q = Params::from_query(vec![
            ("order_by".into(), "name ASC".into()),
            ("order_by".into(), "creation_time DESC".into()),
            ("order_by".into(), "x".into()),
            ("max_results".into(), "10".into()),
            ("run_ids".into(), "abc".into()),
        ]);
        assert_eq!(
            q.strings("order_by").unwrap(),
            vec!["name ASC", "creation_time DESC", "x"]
        );
        assert_eq!(q.strings("run_ids").unwrap(), vec!["abc"]);
        assert_eq!(q.opt_i32("max_results").unwrap(), Some(10));
        assert_eq!(q.strings("none").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bodies_empty_double_encoded_and_malformed() {
        assert_eq!(Params::from_json_bytes(b"").unwrap(), Params::default());
        assert_eq!(Params::from_json_bytes(b"  \n").unwrap(), Params::default());
        let twice = serde_json::to_vec(&Value::String(r#"{"name":"x"}"#.into())).unwrap();
        assert_eq!(
            Params::from_json_bytes(&twice)
                .unwrap()
                .string("name")
                .unwrap(),
            "x"
        );
        let bad = Params::from_json_bytes(b"{\"name\": ").unwrap_err();
        assert_eq!(
            (bad.code.name(), bad.http_status().as_u16()),
            ("INVALID_PARAMETER_VALUE", 400)
        );
        assert!(Params::from_json_bytes(b"[1, 2]").is_err());
    }

    #[test]
    fn required_strings_nested_paths_and_run_id_aliases() {
        let q =
            p(json!({"name": "", "tags": [{"key": "a", "value": "1"}, {"value": "2"}], "n": 3}));
        let err = q.required_string("name").unwrap_err();
        assert!(
            err.message
                .starts_with("Missing value for required parameter 'name'"),
            "{}",
            err.message
        );
        let tags = q.objects("tags").unwrap();
        assert_eq!(KeyValue::read(&tags[0]).unwrap(), ("a".into(), "1".into()));
        let err = KeyValue::read(&tags[1]).unwrap_err();
        assert!(err.message.contains("'tags[1].key'"), "{}", err.message);
        assert!(q.string("n").is_err());

        let (r1, r2) = ("a".repeat(32), "b".repeat(32));
        assert_eq!(p(json!({"run_uuid": r1})).run_id().unwrap(), r1);
        assert_eq!(
            p(json!({"run_id": r1, "run_uuid": r1})).run_id().unwrap(),
            r1
        );
        assert!(p(json!({"run_id": r1, "run_uuid": r2})).run_id().is_err());
        assert!(p(json!({})).run_id().is_err());
        let err = p(json!({"max_results": 50_001}))
            .max_results(50_000)
            .unwrap_err();
        assert_eq!(
            err.message,
            "Invalid value 50001 for parameter 'max_results' supplied:  Hint: Value was of type \
             'int'. See the API docs for more information about request parameters."
        );
        let err = p(json!({"max_results": "1001"}))
            .max_results(1000)
            .unwrap_err();
        assert!(err.message.starts_with("Invalid value \"1001\" for parameter 'max_results' supplied:  Hint: Value was of type 'str'."), "{}", err.message);
        assert_eq!(
            p(json!({"max_results": 50_000}))
                .max_results(50_000)
                .unwrap(),
            Some(50_000)
        );
        // An id no run can have is an unknown run, as MLflow answers it.
        for bad in ["r1", "A".repeat(32).as_str(), "../etc"] {
            let err = p(json!({ "run_id": bad })).run_id().unwrap_err();
            assert_eq!(err.code, crate::error::ErrorCode::ResourceDoesNotExist);
            assert_eq!(err.message, format!("Run with id={bad} not found"));
        }
    }

    #[test]
    fn enums_by_name_or_number() {
        let table = [
            ("ACTIVE_ONLY", 1, 'a'),
            ("DELETED_ONLY", 2, 'd'),
            ("ALL", 3, 'x'),
        ];
        assert_eq!(
            p(json!({"v": "ALL"})).opt_enum("v", &table).unwrap(),
            Some('x')
        );
        assert_eq!(p(json!({"v": 2})).opt_enum("v", &table).unwrap(), Some('d'));
        assert_eq!(
            p(json!({"v": "1"})).opt_enum("v", &table).unwrap(),
            Some('a')
        );
        assert_eq!(p(json!({})).opt_enum("v", &table).unwrap(), None);
        let err = p(json!({"v": "SOME"})).opt_enum("v", &table).unwrap_err();
        assert!(
            err.message.contains("ACTIVE_ONLY, DELETED_ONLY, ALL"),
            "{}",
            err.message
        );
    }

    #[test]
    fn floats_are_written_like_mlflow() {
        #[derive(Serialize)]
        struct M {
            #[serde(serialize_with = "float")]
            v: f64,
        }
        let s = |v| serde_json::to_string(&M { v }).unwrap();
        assert_eq!(s(0.5), r#"{"v":0.5}"#);
        assert_eq!(s(f64::NAN), r#"{"v":"NaN"}"#);
        assert_eq!(s(f64::INFINITY), r#"{"v":"Infinity"}"#);
        assert_eq!(s(f64::NEG_INFINITY), r#"{"v":"-Infinity"}"#);
    }
}
