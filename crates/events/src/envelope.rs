//! The CloudEvents envelope of every event, and its Kafka binary-mode headers.

use std::collections::HashMap;

/// One event: a protobuf payload and its CloudEvents attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id (`ce_id`); consumers deduplicate on it.
    pub id: String,
    /// The topic, `mlops.<service>.<stream>`.
    pub topic: String,
    /// The partitioning key: the aggregate's id, so its events stay in order.
    pub key: String,
    /// The protobuf message's full name (`ce_type`), e.g. `mlops.events.v1.RunCreated`.
    pub ce_type: String,
    /// Who produced it (`ce_source`), e.g. `/mlops/tracking`.
    pub source: String,
    /// What it is about (`ce_subject`), e.g. `runs/<run id>`.
    pub subject: String,
    /// When it happened (`ce_time`, RFC 3339).
    pub time: String,
    /// The payload's encoding, `application/protobuf`.
    pub content_type: String,
    /// The encoded protobuf message.
    pub payload: Vec<u8>,
    /// Trace context (`traceparent`, `tracestate`) of the operation that produced it.
    pub trace: HashMap<String, String>,
}

/// The content type of protobuf payloads.
pub const PROTOBUF: &str = "application/protobuf";

impl Envelope {
    /// A new event with a fresh id, the current time and the current trace context.
    pub fn new(
        topic: &str,
        source: &str,
        ce_type: &str,
        key: &str,
        subject: String,
        payload: Vec<u8>,
    ) -> Self {
        let mut trace = HashMap::new();
        mlops_runtime::telemetry::inject_current(&mut trace);
        Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            topic: topic.to_owned(),
            key: key.to_owned(),
            ce_type: ce_type.to_owned(),
            source: source.to_owned(),
            subject,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            content_type: PROTOBUF.to_owned(),
            payload,
            trace,
        }
    }

    /// Decodes the payload as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_slice())
    }

    /// The Kafka headers of the CloudEvents binary binding, plus trace context.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", self.id.clone()),
            ("ce_type", self.ce_type.clone()),
            ("ce_source", self.source.clone()),
            ("ce_time", self.time.clone()),
            ("ce_subject", self.subject.clone()),
            ("content-type", self.content_type.clone()),
        ];
        for key in ["traceparent", "tracestate"] {
            if let Some(v) = self.trace.get(key) {
                h.push((key, v.clone()));
            }
        }
        h
    }

    /// Rebuilds an envelope from Kafka headers, key and payload.
    pub fn from_headers<'a>(
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, String> {
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in headers {
            map.insert(k.to_owned(), String::from_utf8_lossy(v).into_owned());
        }
        let mut take = |k: &str| map.remove(k);
        let id = take("ce_id").ok_or("event without a ce_id header")?;
        let ce_type = take("ce_type").ok_or("event without a ce_type header")?;
        let mut trace = HashMap::new();
        for k in ["traceparent", "tracestate"] {
            if let Some(v) = take(k) {
                trace.insert(k.to_owned(), v);
            }
        }
        Ok(Envelope {
            id,
            topic: topic.to_owned(),
            key: key.to_owned(),
            ce_type,
            source: take("ce_source").unwrap_or_default(),
            subject: take("ce_subject").unwrap_or_default(),
            time: take("ce_time").unwrap_or_default(),
            content_type: take("content-type").unwrap_or_else(|| PROTOBUF.to_owned()),
            payload: payload.to_vec(),
            trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let e = Envelope::new(
            "mlops.t.x",
            "/mlops/t",
            "mlops.events.v1.X",
            "k1",
            "x/k1".into(),
            vec![1, 2, 3],
        );
        let headers = e.headers();
        let back = Envelope::from_headers(
            "mlops.t.x",
            "k1",
            &[1, 2, 3],
            headers.iter().map(|(k, v)| (*k, v.as_bytes())),
        )
        .unwrap();
        assert_eq!(back, e);
        assert!(headers
            .iter()
            .any(|(k, v)| *k == "ce_specversion" && v == "1.0"));
        assert!(Envelope::from_headers("t", "k", &[], []).is_err());
    }
}
