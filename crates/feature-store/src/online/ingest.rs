//! Ingestion from Kafka topics that users' own producers write (no CloudEvents headers):
//! for every source of type kafka, a consumer of its topic (the kit's raw subscription, one
//! group per source, shared by the replicas) writes each message's row into the online
//! values of the source's views, with the materialization's monotonic rule, and commits
//! the offsets after the write (redelivered messages change nothing). A message that is not
//! a row of the source (not JSON, a missing key or time, a value of another type) is
//! counted and skipped. Consumers follow the definitions: a source added starts one, a
//! source removed or changed stops its own.
//!
//! A message's value is one JSON object: the join keys, the source's timestamp field (and
//! created column) as RFC 3339 text or seconds since the epoch, and the features of its
//! views (null, or a value of the declared type; bytes as base64). For a source of format
//! avro, one Avro binary datum of its `avro_schema` (a flat record; Avro's single-object
//! header allowed), read into the same row (`avro`): a timestamp logical type is an
//! instant, a plain number seconds since the epoch, as in JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mlops_events::{EventBus, RawRecord};
use mlops_proto::events::v1 as events;
use mlops_runtime::shutdown::CancellationToken;
use serde_json::Value as Json;

use super::avro::{self, AvroSchema};
use super::materialize::{envelope, Write};
use super::value::{encode_key, KeyPart, Val};
use crate::defs::{Definitions, FeatureView, MessageFormat, Source, SourceKind, ValueType};
use crate::service::FeatureStoreApi;

/// How often the running consumers are compared with the definitions.
const RECONCILE: Duration = Duration::from_secs(2);
/// At most this many messages are written in one transaction.
const BATCH: usize = 500;
/// A batch waits at most this long for more messages.
const LINGER: Duration = Duration::from_millis(20);

/// Runs a consumer per kafka source until `stop`.
pub async fn run(
    api: FeatureStoreApi,
    bus: Arc<dyn EventBus>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // Source name → (its definition, the consumer's stop).
    let mut running: HashMap<String, (Source, CancellationToken)> = HashMap::new();
    loop {
        match api.definitions().await {
            Ok(defs) => {
                let wanted: HashMap<&String, &Source> = defs
                    .sources
                    .iter()
                    .filter(|(_, s)| matches!(s.kind, SourceKind::Kafka { .. }))
                    .collect();
                running.retain(|name, (source, token)| {
                    let keep = wanted.get(name).is_some_and(|w| *w == source);
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for (name, source) in wanted {
                    if running.contains_key(name) {
                        continue;
                    }
                    let token = stop.child_token();
                    tokio::spawn(consume(
                        api.clone(),
                        bus.clone(),
                        source.clone(),
                        token.clone(),
                    ));
                    running.insert(name.clone(), (source.clone(), token));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the definitions to follow kafka sources")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RECONCILE) => {}
        }
    }
}

/// One source's consumer, until `stop`.
async fn consume(
    api: FeatureStoreApi,
    bus: Arc<dyn EventBus>,
    source: Source,
    stop: CancellationToken,
) {
    let SourceKind::Kafka { topic, .. } = &source.kind else {
        return;
    };
    let (topic, name) = (topic.clone(), source.name.clone());
    let group = format!("feature-store-ingest-{name}");
    let avro = match &source.kind {
        SourceKind::Kafka {
            format: MessageFormat::Avro,
            avro_schema: Some(text),
            ..
        } => match AvroSchema::parse(text) {
            Ok(s) => Some(s),
            Err(e) => {
                // refused when the definitions were applied: not reached
                tracing::error!(source = %name, error = %e, "its avro_schema does not parse; not ingesting");
                return;
            }
        },
        _ => None,
    };
    let ingest = Ingest { api, source, avro };
    mlops_kit::follow::consume_raw(ingest, bus, &name, &group, &topic, (BATCH, LINGER), stop).await;
}

/// Writes a source's batches into the online values of its views.
struct Ingest {
    api: FeatureStoreApi,
    source: Source,
    /// The writer's schema of an Avro source; `None`: JSON values.
    avro: Option<AvroSchema>,
}

impl mlops_kit::follow::BatchConsumer for Ingest {
    async fn apply(&mut self, records: &[RawRecord]) -> anyhow::Result<()> {
        let parsed: Vec<serde_json::Map<String, Json>> = records
            .iter()
            .filter_map(|r| {
                let row = match &self.avro {
                    Some(schema) => avro::decode(schema, &r.payload)
                        .map_err(|e| format!("not an Avro datum of the source's schema: {e}")),
                    None => match serde_json::from_slice::<Json>(&r.payload) {
                        Ok(Json::Object(m)) => Ok(m),
                        _ => Err("not a JSON object".to_owned()),
                    },
                };
                row.map_err(|why| count_malformed(&self.api, &self.source, 1, &why))
                    .ok()
            })
            .collect();
        Ok(write(&self.api, &self.source, &parsed).await?)
    }
}

fn count_malformed(api: &FeatureStoreApi, source: &Source, n: usize, why: &str) {
    api.online
        .metrics
        .ingest_malformed
        .with_label_values(&[&source.name])
        .inc_by(n as u64);
    tracing::warn!(source = %source.name, skipped = n, reason = why, "malformed messages skipped");
}

/// Writes the rows of a batch into the online values of `source`'s views.
async fn write(
    api: &FeatureStoreApi,
    source: &Source,
    parsed: &[serde_json::Map<String, Json>],
) -> crate::error::Result<()> {
    let defs = api.definitions().await?;
    let views: Vec<&FeatureView> = defs
        .feature_views
        .values()
        .filter(|v| v.source == source.name && v.online)
        .collect();
    let m = &api.online.metrics;
    m.ingested_rows
        .with_label_values(&[&source.name])
        .inc_by(parsed.len() as u64);
    for view in views {
        let mut best: HashMap<String, Write> = HashMap::new();
        let mut newest: Option<i64> = None;
        for row in parsed {
            match row_of(&defs, view, source, row) {
                Ok(w) => {
                    newest = Some(newest.map_or(w.event_ts, |n: i64| n.max(w.event_ts)));
                    let better = best
                        .get(&w.key)
                        .is_none_or(|b| (w.event_ts, w.created_ts) >= (b.event_ts, b.created_ts));
                    if better {
                        best.insert(w.key.clone(), w);
                    }
                }
                Err(why) => count_malformed(api, source, 1, &why),
            }
        }
        if best.is_empty() {
            continue;
        }
        let writes: Vec<Write> = best.into_values().collect();
        let rows = writes.len() as i64;
        api.online
            .write(&view.name, &writes, |keys_written| {
                let event = events::FeaturesPushed {
                    name: view.name.clone(),
                    push_source: source.name.clone(),
                    rows,
                    keys_written,
                    newest_event_nanos: newest.unwrap_or(0),
                };
                (None, envelope(&view.name, &event))
            })
            .await?;
        if let Some(newest) = newest {
            let gauge = m.newest_event.with_label_values(&[&view.name]);
            gauge.set(gauge.get().max(newest.div_euclid(1_000_000_000)));
        }
        api.online.invalidate(&view.name);
    }
    Ok(())
}

/// A time: RFC 3339 text, or seconds since the epoch (a fraction allowed).
fn time_of(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt()),
        Json::Number(n) => n
            .as_i64()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .or_else(|| n.as_f64().map(|f| (f * 1e9) as i64)),
        _ => None,
    }
}

/// One message as a row of `view`, or why it is not one.
fn row_of(
    defs: &Definitions,
    view: &FeatureView,
    source: &Source,
    row: &serde_json::Map<String, Json>,
) -> Result<Write, String> {
    let mut parts = Vec::new();
    for e in &view.entities {
        for k in &defs.entities[e].join_keys {
            let part = match (row.get(&k.name), k.value_type) {
                (Some(Json::Number(n)), ValueType::Int64 | ValueType::Int32) => {
                    n.as_i64().map(KeyPart::Int)
                }
                (Some(Json::String(s)), ValueType::String) => Some(KeyPart::Str(s.clone())),
                _ => None,
            };
            parts.push(part.ok_or_else(|| {
                format!(
                    "no {} value for the join key `{}`",
                    k.value_type.as_str(),
                    k.name
                )
            })?);
        }
    }
    let event_ts = row
        .get(&source.timestamp_field)
        .and_then(time_of)
        .ok_or_else(|| format!("no time in `{}`", source.timestamp_field))?;
    let created_ts = source
        .created_timestamp_column
        .as_ref()
        .and_then(|c| row.get(c))
        .and_then(time_of);
    let mut values: HashMap<&str, Option<Val>> = HashMap::with_capacity(view.schema.len());
    for f in &view.schema {
        let v = match row.get(&f.name) {
            None | Some(Json::Null) => None,
            Some(v) => Some(
                value_of(v, f.dtype)
                    .ok_or_else(|| format!("`{}` is not a {} value", f.name, f.dtype.as_str()))?,
            ),
        };
        values.insert(&f.name, v);
    }
    Ok(Write {
        key: encode_key(&parts),
        event_ts,
        created_ts,
        payload: serde_json::to_string(&values).expect("values serialize"),
    })
}

fn value_of(v: &Json, dtype: ValueType) -> Option<Val> {
    Some(match dtype {
        ValueType::Int64 => Val::Int64(v.as_i64()?),
        ValueType::Int32 => Val::Int32(i32::try_from(v.as_i64()?).ok()?),
        ValueType::Float64 => Val::Float64(v.as_f64()?),
        ValueType::Float32 => Val::Float32(v.as_f64()? as f32),
        ValueType::String => Val::Str(v.as_str()?.to_owned()),
        ValueType::Bool => Val::Bool(v.as_bool()?),
        ValueType::Bytes => Val::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?,
        ),
        ValueType::UnixTimestamp => Val::Time(time_of(v)?),
    })
}
