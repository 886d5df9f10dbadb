//! Labels from Kafka topics the user's own systems write (no CloudEvents headers): for
//! every monitor whose performance spec names a `labels_topic`, a consumer of that topic
//! (the kit's raw subscription, one group per monitor, shared by the replicas) stores
//! each message's label as PushLabels does and computes its window's realised
//! performance again, then commits the offsets (a redelivered label replaces itself:
//! nothing changes). A message that is not a label is counted and skipped. Consumers
//! follow the monitors: a topic added starts one, a topic removed or changed stops its own.
//!
//! A message's value is one JSON object: `{"request_id": "...", "row": 0, "label": 1}`
//! (`row` optional, 0 when absent; the label a string, a number or a boolean).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mlops_events::{EventBus, RawRecord};
use mlops_kit::follow::{consume_raw, BatchConsumer};
use mlops_runtime::shutdown::CancellationToken;
use serde_json::Value as Json;

use crate::metrics::Metrics;
use crate::store::{Monitor, Store};
use crate::tracker::Tracker;

/// How often the running consumers are compared with the monitors.
const RECONCILE: Duration = Duration::from_secs(2);
/// At most this many labels are stored in one call.
const BATCH: usize = 1000;
/// A batch waits at most this long for more messages.
const LINGER: Duration = Duration::from_millis(50);

/// Runs a consumer per monitor with a labels topic until `stop`; `group` prefixes the
/// consumer groups.
pub async fn run(
    store: Store,
    metrics: Metrics,
    bus: Arc<dyn EventBus>,
    group: String,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = Tracker::new(store.clone(), metrics.clone());
    // monitor → (its topic, the consumer's stop)
    let mut running: HashMap<String, (String, CancellationToken)> = HashMap::new();
    loop {
        match store.monitors().await {
            Ok(monitors) => {
                let wanted: HashMap<String, String> = monitors
                    .iter()
                    .filter_map(|m| {
                        let p = m.spec.performance.as_ref()?;
                        (!p.labels_topic.is_empty())
                            .then(|| (m.name.clone(), p.labels_topic.clone()))
                    })
                    .collect();
                running.retain(|name, (topic, token)| {
                    let keep = wanted.get(name) == Some(topic);
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for (name, topic) in wanted {
                    if running.contains_key(&name) {
                        continue;
                    }
                    let token = stop.child_token();
                    let consumer = Consumer {
                        store: store.clone(),
                        tracker: tracker.clone(),
                        metrics: metrics.clone(),
                        monitor: name.clone(),
                    };
                    let (bus, group, followed, stop) = (
                        bus.clone(),
                        format!("{group}-labels-{name}"),
                        topic.clone(),
                        token.clone(),
                    );
                    tokio::spawn(async move {
                        let name = consumer.monitor.clone();
                        let batches = (BATCH, LINGER);
                        consume_raw(consumer, bus, &name, &group, &followed, batches, stop).await
                    });
                    running.insert(name, (topic, token));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the monitors to follow label topics"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RECONCILE) => {}
        }
    }
}

struct Consumer {
    store: Store,
    tracker: Tracker,
    metrics: Metrics,
    monitor: String,
}

impl BatchConsumer for Consumer {
    async fn apply(&mut self, records: &[RawRecord]) -> anyhow::Result<()> {
        let mut labels = Vec::with_capacity(records.len());
        for r in records {
            match label_of(&r.payload) {
                Ok(l) => labels.push(l),
                Err(why) => {
                    self.metrics
                        .labels_malformed
                        .with_label_values(&[&self.monitor])
                        .inc();
                    tracing::debug!(monitor = %self.monitor, offset = r.offset, reason = %why, "skipped a label message");
                }
            }
        }
        if labels.is_empty() {
            return Ok(());
        }
        let m: Monitor = self.store.monitor(&self.monitor).await?;
        let (_, windows) = self.store.put_labels(&m.name, &labels).await?;
        for w in &windows {
            self.tracker.labelled(&m, w).await?;
        }
        Ok(())
    }
}

/// A label message: `{"request_id": "...", "row": 0, "label": ...}`.
fn label_of(payload: &[u8]) -> Result<(String, i64, String), String> {
    let Json::Object(o) =
        serde_json::from_slice::<Json>(payload).map_err(|e| format!("not JSON: {e}"))?
    else {
        return Err("not a JSON object".into());
    };
    let request_id = match o.get("request_id") {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("no request_id string".into()),
    };
    let row = match o.get("row") {
        None | Some(Json::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|r| *r >= 0)
            .ok_or("row is not an integer >= 0")?,
    };
    let label = match o.get("label") {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        Some(Json::Bool(b)) => if *b { "True" } else { "False" }.to_owned(),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n
                .as_f64()
                .and_then(crate::table::number_text)
                .ok_or("label is not a finite number")?,
        },
        _ => return Err("no label (a string, a number or a boolean)".into()),
    };
    Ok((request_id, row, label))
}

#[cfg(test)]
mod tests {
    use super::label_of;

    #[test]
    fn label_messages_are_read_or_refused() {
        let ok = |s: &str| label_of(s.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"request_id":"a","row":2,"label":1}"#),
            ("a".into(), 2, "1".into())
        );
        assert_eq!(
            ok(r#"{"request_id":"a","label":"cat"}"#),
            ("a".into(), 0, "cat".into())
        );
        assert_eq!(ok(r#"{"request_id":"a","label":2.5}"#).2, "2.5");
        assert_eq!(ok(r#"{"request_id":"a","label":true}"#).2, "True");
        for bad in [
            "nope",
            "[1]",
            r#"{"label":1}"#,
            r#"{"request_id":"a"}"#,
            r#"{"request_id":"a","row":-1,"label":1}"#,
            r#"{"request_id":"a","label":null}"#,
        ] {
            assert!(label_of(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
