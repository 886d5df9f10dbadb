//! Windows cut from the prediction log: a monitor's source (which deployment, how windows
//! close, how tensors name columns), the rows of one `PredictionLogged` event as columns,
//! and an open window's state — one sketch per reference column, bounded whatever the
//! number of rows — with its compact encoding for the database.

use mlops_proto::events::v1::{PredictionLogged, PredictionTensor};
use serde::{Deserialize, Serialize};

use crate::sketch::ColumnSketch;
use crate::store::ColumnProfile;

/// The longest window, in seconds (30 days).
pub const MAX_WINDOW_SECONDS: i64 = 30 * 24 * 3600;
/// The most rows in one window.
pub const MAX_WINDOW_ROWS: i64 = 100_000_000;
/// The most rows of a reference taken from the log.
pub const MAX_REFERENCE_ROWS: i64 = 1_000_000;

/// Where a monitor's windows come from besides PushWindow: the inference service's
/// prediction log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictionLogSpec {
    /// The deployment followed; empty: the monitor's model.
    pub deployment: String,
    /// A window closes at this many rows (0: no count limit).
    pub window_rows: i64,
    /// A window closes after this many seconds of prediction time (0: no time limit).
    pub window_seconds: i64,
    /// The inputs' feature names in order over every input; empty: the tensors' names.
    pub input_columns: Vec<String>,
    /// The first this many logged rows become the reference of a new monitor (0: none).
    #[serde(default)]
    pub reference_rows: i64,
}

impl PredictionLogSpec {
    /// Why the spec cannot be followed, if it cannot.
    pub fn check(&self, model: &str) -> Result<(), String> {
        if self.deployment.is_empty() && model.is_empty() {
            return Err(
                "prediction_log needs a deployment to follow: set its deployment or the monitor's model".into(),
            );
        }
        if !(0..=MAX_WINDOW_ROWS).contains(&self.window_rows) {
            return Err(format!(
                "prediction_log.window_rows {} is not between 0 and {MAX_WINDOW_ROWS}",
                self.window_rows
            ));
        }
        if !(0..=MAX_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err(format!(
                "prediction_log.window_seconds {} is not between 0 and {MAX_WINDOW_SECONDS} (30 days)",
                self.window_seconds
            ));
        }
        if self.window_rows == 0 && self.window_seconds == 0 {
            return Err(
                "prediction_log needs window_rows or window_seconds (or both): when does a window close?".into(),
            );
        }
        check_reference_rows(self.reference_rows, "prediction_log.reference_rows", true)?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.input_columns {
            if c.is_empty() || !seen.insert(c) {
                return Err(format!(
                    "prediction_log.input_columns has an empty or repeated name: {c:?}"
                ));
            }
        }
        Ok(())
    }

    /// The deployment followed.
    pub fn deployment<'a>(&'a self, model: &'a str) -> &'a str {
        if self.deployment.is_empty() {
            model
        } else {
            &self.deployment
        }
    }

    /// The time window an event at `time_ms` falls in: its start and end (ms since the
    /// epoch, aligned to it); `None` without a time limit.
    pub fn time_window(&self, time_ms: i64) -> Option<(i64, i64)> {
        (self.window_seconds > 0).then(|| {
            let len = self.window_seconds * 1000;
            let start = time_ms.div_euclid(len) * len;
            (start, start + len)
        })
    }
}

/// Why `rows` cannot be the size of a reference taken from the log (`field` names it;
/// `zero_ok`: 0 means none).
pub fn check_reference_rows(rows: i64, field: &str, zero_ok: bool) -> Result<(), String> {
    let low = if zero_ok { 0 } else { 1 };
    if (low..=MAX_REFERENCE_ROWS).contains(&rows) {
        Ok(())
    } else {
        Err(format!(
            "{field} {rows} is not between {low} and {MAX_REFERENCE_ROWS}"
        ))
    }
}

/// One column of a prediction's rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Numbers(Vec<f64>),
    /// From an integer tensor (the values as numbers): a reference taken from the log
    /// keeps them as integers, which Evidently's type rule treats apart.
    Integers(Vec<f64>),
    Texts(Vec<Option<String>>),
}

impl Values {
    /// The numbers, for either numeric kind.
    pub fn numbers(&self) -> Option<&[f64]> {
        match self {
            Values::Numbers(v) | Values::Integers(v) => Some(v),
            Values::Texts(_) => None,
        }
    }
}

/// The rows of one prediction: its columns (each `rows` long), by name.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRows {
    pub rows: usize,
    pub columns: Vec<(String, Values)>,
}

/// The rows of `event`: every input then every output tensor, split along the first
/// (batch) dimension; `input_columns` names the inputs' features when given. An error
/// says why the event cannot be read (it is skipped and counted).
pub fn logged_rows(
    event: &PredictionLogged,
    input_columns: &[String],
) -> Result<LoggedRows, String> {
    let rows = match event.inputs.first().or(event.outputs.first()) {
        None => return Err("the prediction has no tensors".into()),
        Some(t) => t.shape.first().copied().unwrap_or(1),
    };
    let rows = usize::try_from(rows).map_err(|_| format!("a negative batch size {rows}"))?;
    let mut columns = Vec::new();
    let mut named = input_columns.iter();
    for (i, t) in event.inputs.iter().chain(&event.outputs).enumerate() {
        let is_input = i < event.inputs.len();
        let features = features_of(t, rows)?;
        let values = decode(t, rows * features)?;
        for j in 0..features {
            let name = match (is_input && !input_columns.is_empty(), features) {
                (true, _) => named.next().cloned().ok_or_else(|| {
                    format!(
                        "the inputs have more features than the {} names of input_columns",
                        input_columns.len()
                    )
                })?,
                (false, 1) => t.name.clone(),
                (false, _) => format!("{}_{j}", t.name),
            };
            columns.push((name, column(&values, j, features, rows)));
        }
    }
    if named.next().is_some() {
        return Err(format!(
            "input_columns names {} features but the inputs have fewer",
            input_columns.len()
        ));
    }
    Ok(LoggedRows { rows, columns })
}

/// Features per row of `t`, whose first dimension must be `rows`.
fn features_of(t: &PredictionTensor, rows: usize) -> Result<usize, String> {
    let (first, rest) = match t.shape.split_first() {
        None => (1, &[][..]),
        Some((f, rest)) => (*f, rest),
    };
    if first != rows as i64 {
        return Err(format!(
            "tensor {:?} has {first} rows, the first tensor {rows}",
            t.name
        ));
    }
    rest.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d)
            .ok()
            .and_then(|d| n.checked_mul(d))
            .ok_or_else(|| format!("tensor {:?} has a bad shape {:?}", t.name, t.shape))
    })
}

/// The elements of a tensor, row-major.
enum Elements {
    Numbers(Vec<f64>),
    Integers(Vec<f64>),
    Texts(Vec<String>),
}

fn column(values: &Elements, j: usize, features: usize, rows: usize) -> Values {
    match values {
        Elements::Numbers(v) => Values::Numbers((0..rows).map(|r| v[r * features + j]).collect()),
        Elements::Integers(v) => Values::Integers((0..rows).map(|r| v[r * features + j]).collect()),
        Elements::Texts(v) => Values::Texts(
            (0..rows)
                .map(|r| Some(v[r * features + j].clone()))
                .collect(),
        ),
    }
}

/// Decodes `count` elements of the raw contents of `t` (little-endian; BYTES framed by a
/// 4-byte length).
fn decode(t: &PredictionTensor, count: usize) -> Result<Elements, String> {
    let raw = &t.raw[..];
    let size = match t.datatype.as_str() {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" | "FP16" | "BF16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        "BYTES" => return decode_bytes(t, count).map(Elements::Texts),
        other => {
            return Err(format!(
                "tensor {:?} has an unknown datatype {other:?}",
                t.name
            ))
        }
    };
    if raw.len() != count * size {
        return Err(format!(
            "tensor {:?} holds {} bytes, its shape {:?} needs {}",
            t.name,
            raw.len(),
            t.shape,
            count * size
        ));
    }
    let chunks = raw.chunks_exact(size);
    let v: Vec<f64> = match t.datatype.as_str() {
        "BOOL" => {
            let texts = raw.iter().map(|&b| if b != 0 { "True" } else { "False" });
            return Ok(Elements::Texts(texts.map(str::to_owned).collect()));
        }
        "UINT8" => raw.iter().map(|&b| f64::from(b)).collect(),
        "INT8" => raw.iter().map(|&b| f64::from(b as i8)).collect(),
        "UINT16" => chunks
            .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "INT16" => chunks
            .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "FP16" => chunks
            .map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "BF16" => chunks
            .map(|c| {
                f64::from(f32::from_bits(
                    u32::from(u16::from_le_bytes([c[0], c[1]])) << 16,
                ))
            })
            .collect(),
        "UINT32" => chunks
            .map(|c| f64::from(u32::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        "INT32" => chunks
            .map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        "FP32" => chunks
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        "UINT64" => chunks
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()) as f64)
            .collect(),
        "INT64" => chunks
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()) as f64)
            .collect(),
        _ => chunks
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect(),
    };
    Ok(match t.datatype.as_str() {
        "FP16" | "BF16" | "FP32" | "FP64" => Elements::Numbers(v),
        _ => Elements::Integers(v),
    })
}

fn decode_bytes(t: &PredictionTensor, count: usize) -> Result<Vec<String>, String> {
    let mut raw = &t.raw[..];
    let mut out = Vec::with_capacity(count);
    while !raw.is_empty() {
        let bad = || format!("tensor {:?}'s BYTES framing is broken", t.name);
        let len = raw.get(..4).ok_or_else(bad)?;
        let len = u32::from_le_bytes(len.try_into().map_err(|_| bad())?) as usize;
        let s = raw.get(4..4 + len).ok_or_else(bad)?;
        out.push(String::from_utf8_lossy(s).into_owned());
        raw = &raw[4 + len..];
    }
    if out.len() != count {
        return Err(format!(
            "tensor {:?} holds {} elements, its shape {:?} needs {count}",
            t.name,
            out.len(),
            t.shape
        ));
    }
    Ok(out)
}

/// An IEEE half as f64.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// An open window: its rows so far and one sketch per reference column (in the
/// reference profile's order).
#[derive(Debug, Clone)]
pub struct WindowState {
    pub rows: u64,
    /// The first and last prediction times seen, in ms since the epoch.
    pub first_ms: i64,
    pub last_ms: i64,
    pub columns: Vec<ColumnSketch>,
}

impl WindowState {
    /// An empty window over `profile`'s columns.
    pub fn new(profile: &[ColumnProfile]) -> Self {
        WindowState {
            rows: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            columns: profile
                .iter()
                .map(|c| ColumnSketch::new(c.column_type))
                .collect(),
        }
    }

    /// Adds row `r` of `rows` at `time_ms`; `index[i]` is where the reference's column
    /// `i` is in `rows` (`None`: the prediction does not have it, a missing value).
    pub fn add_row(&mut self, rows: &LoggedRows, index: &[Option<usize>], r: usize, time_ms: i64) {
        self.rows += 1;
        self.first_ms = self.first_ms.min(time_ms);
        self.last_ms = self.last_ms.max(time_ms);
        for (sketch, at) in self.columns.iter_mut().zip(index) {
            let value = at.map(|i| &rows.columns[i].1);
            match sketch {
                ColumnSketch::Numerical(s) => s.update(match value.and_then(Values::numbers) {
                    Some(v) => v[r],
                    // text in a numerical column: not a number, missing
                    None => f64::NAN,
                }),
                ColumnSketch::Categorical(s) => match value {
                    Some(Values::Texts(v)) => s.update(v[r].as_deref()),
                    Some(Values::Numbers(v) | Values::Integers(v)) => {
                        s.update(crate::table::number_text(v[r]).as_deref())
                    }
                    None => s.update(None),
                },
            }
        }
    }

    /// The state as bytes: rows, times, then each column's sketch with its length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(1u8);
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.first_ms.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&(self.columns.len() as u32).to_le_bytes());
        for c in &self.columns {
            let b = c.encode();
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&b);
        }
        out
    }

    /// A state from [`WindowState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = || "a stored window's state is corrupt".to_owned();
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = bytes.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        if take(1)? != [1u8] {
            return Err(bad());
        }
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let rows = u64_of(take(8)?);
        let first_ms = u64_of(take(8)?) as i64;
        let last_ms = u64_of(take(8)?) as i64;
        let n = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
        let mut columns = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
            columns.push(ColumnSketch::decode(take(len)?).map_err(|e| e.to_string())?);
        }
        Ok(WindowState {
            rows,
            first_ms,
            last_ms,
            columns,
        })
    }
}

#[cfg(test)]
mod tests;
