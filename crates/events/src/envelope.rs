//! The CloudEvents envelope of every event, and its Kafka binary-mode headers.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Why an event could not be read as the message a consumer expects.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The event is of another type.
    #[error("event {id} is a {actual}, not a {expected}")]
    WrongType {
        /// The event id.
        id: String,
        /// The type asked for (`M::full_name()`).
        expected: String,
        /// The event's `ce_type`.
        actual: String,
    },
    /// The payload is not a valid encoding of its type.
    #[error("event {id}: the payload is not a valid {ce_type}: {source}")]
    Payload {
        /// The event id.
        id: String,
        /// The event's `ce_type`.
        ce_type: String,
        /// What protobuf decoding said.
        source: prost::DecodeError,
    },
}

/// The content type of protobuf payloads.
pub const PROTOBUF: &str = "application/protobuf";

impl Envelope {
    /// The event carrying `msg`: its `ce_type` is `M::full_name()` (e.g.
    /// `mlops.events.v1.RunCreated`), with a fresh id, the current time and the
    /// current trace context. `topic` is one of `mlops_proto::events::topics`.
    pub fn of<M: prost::Name + prost::Message>(
        topic: &str,
        source: &str,
        key: &str,
        subject: impl Into<String>,
        msg: &M,
    ) -> Self {
        Self::encoded::<M>(topic, source, key, subject, msg.encode_to_vec())
    }

    /// [`Envelope::of`] with the message already encoded: `payload` must be an `M`'s
    /// encoding (for a producer that writes it without building the message first).
    pub fn encoded<M: prost::Name>(
        topic: &str,
        source: &str,
        key: &str,
        subject: impl Into<String>,
        payload: Vec<u8>,
    ) -> Self {
        let mut trace = HashMap::new();
        mlops_runtime::telemetry::inject_current(&mut trace);
        Envelope {
            id: uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned(),
            topic: topic.to_owned(),
            key: key.to_owned(),
            ce_type: M::full_name(),
            source: source.to_owned(),
            subject: subject.into(),
            time: rfc3339_millis(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            content_type: PROTOBUF.to_owned(),
            payload,
            trace,
        }
    }

    /// Whether this event carries an `M` (its `ce_type` is `M::full_name()`).
    pub fn is<M: prost::Name>(&self) -> bool {
        self.ce_type == M::full_name()
    }

    /// Decodes the payload as `M`, after checking that the event is an `M`.
    ///
    /// A consumer that gets [`DecodeError`] (directly, or as the source of its own
    /// error) from an [`crate::consumer::IdempotentConsumer`] handler has the event
    /// counted as malformed and skipped rather than retried.
    pub fn decode<M: prost::Name + prost::Message + Default>(&self) -> Result<M, DecodeError> {
        if !self.is::<M>() {
            return Err(DecodeError::WrongType {
                id: self.id.clone(),
                expected: M::full_name(),
                actual: self.ce_type.clone(),
            });
        }
        M::decode(self.payload.as_slice()).map_err(|source| DecodeError::Payload {
            id: self.id.clone(),
            ce_type: self.ce_type.clone(),
            source,
        })
    }

    /// The Kafka headers of the CloudEvents binary binding, plus trace context.
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        let mut h = Vec::with_capacity(9);
        h.extend([
            ("ce_specversion", "1.0"),
            ("ce_id", self.id.as_str()),
            ("ce_type", self.ce_type.as_str()),
            ("ce_source", self.source.as_str()),
            ("ce_time", self.time.as_str()),
            ("ce_subject", self.subject.as_str()),
            ("content-type", self.content_type.as_str()),
        ]);
        for key in ["traceparent", "tracestate"] {
            if let Some(v) = self.trace.get(key) {
                h.push((key, v.as_str()));
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

/// `t` after the Unix epoch in RFC 3339, UTC, to the millisecond (`2026-12-07T06:52:01.123Z`),
/// as chrono's `to_rfc3339_opts(SecondsFormat::Millis, true)` writes it for years up to
/// 9999, without a formatter: every event is stamped with one, and chrono's formatting
/// was a tenth of a logged prediction's cost.
fn rfc3339_millis(t: Duration) -> String {
    let secs = t.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days on or after 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, day_secs / 3_600);
    put(14, 2, day_secs / 60 % 60);
    put(17, 2, day_secs % 60);
    put(20, 3, u64::from(t.subsec_millis()));
    String::from_utf8(out.to_vec()).expect("digits and separators are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of our own, named like the generated ones.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(string, tag = "1")]
        text: String,
    }
    impl prost::Name for Ping {
        const NAME: &'static str = "Ping";
        const PACKAGE: &'static str = "mlops.test.v1";
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Pong {
        #[prost(int64, tag = "1")]
        n: i64,
    }
    impl prost::Name for Pong {
        const NAME: &'static str = "Pong";
        const PACKAGE: &'static str = "mlops.test.v1";
    }

    #[test]
    fn event_times_are_written_as_chrono_writes_rfc_3339() {
        let written = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let ours = |ms: i64| rfc3339_millis(Duration::from_millis(ms as u64));
        let day = 86_400_000;
        // The epoch, leap days (2000 is a leap year, 2100 is not), the ends of days and
        // years, and the last millisecond of 9999.
        let edges = [
            0,
            day - 1,
            951_782_400_000,   // 2000-02-29
            951_868_799_999,   // 2000-02-29T23:59:59.999
            4_107_542_400_000, // 2100-03-01
            4_107_542_399_999,
            1_798_761_599_999, // 2026-12-31T23:59:59.999
            253_402_300_799_999,
        ];
        for ms in edges {
            assert_eq!(ours(ms), written(ms), "{ms} ms");
        }
        assert_eq!(ours(951_782_400_000), "2000-02-29T00:00:00.000Z");
        // Spread over every year to 9999, by a fixed stride coprime with a day.
        let mut ms = 0i64;
        while ms < 253_402_300_799_999 {
            assert_eq!(ours(ms), written(ms), "{ms} ms");
            ms += 2_534_023_007_993;
        }
        for ms in (0..400 * 366).map(|d| d * day + 12_345_678 + d % 1000) {
            assert_eq!(ours(ms), written(ms), "{ms} ms");
        }
    }

    #[test]
    fn headers_round_trip() {
        let e = Envelope::of(
            "mlops.t.x",
            "/mlops/t",
            "k1",
            "x/k1",
            &Ping { text: "hi".into() },
        );
        let headers = e.headers();
        let back = Envelope::from_headers(
            "mlops.t.x",
            "k1",
            &e.payload,
            headers.iter().map(|(k, v)| (*k, v.as_bytes())),
        )
        .unwrap();
        assert_eq!(back, e);
        assert!(headers
            .iter()
            .any(|(k, v)| *k == "ce_specversion" && *v == "1.0"));
        assert!(Envelope::from_headers("t", "k", &[], []).is_err());
    }

    #[test]
    fn a_record_carries_the_envelope_in_the_binding_headers() {
        let mut e = Envelope::of(
            "mlops.t.x",
            "/mlops/t",
            "k1",
            "x/k1",
            &Ping { text: "hi".into() },
        );
        e.trace.insert(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        e.trace.insert("tracestate".into(), "a=b".into());
        let record = crate::RawRecord::from_owned_envelope(e.clone());
        let headers: Vec<_> = e
            .headers()
            .into_iter()
            .map(|(k, v)| (k.into(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(record.headers, headers, "the binding's headers, in order");
        assert_eq!(record.headers.len(), 9);
        assert_eq!(
            (record.topic.as_str(), record.key.as_deref()),
            ("mlops.t.x", Some(&b"k1"[..]))
        );
        assert_eq!(record.to_delivery().unwrap().envelope, e);
    }

    #[test]
    fn the_type_comes_from_the_message_and_decoding_checks_it() {
        let e = Envelope::of("t", "/s", "k", "s", &Ping { text: "hi".into() });
        assert_eq!(e.ce_type, "mlops.test.v1.Ping");
        assert!(e.is::<Ping>() && !e.is::<Pong>());
        assert_eq!(e.decode::<Ping>().unwrap().text, "hi");
        assert!(matches!(
            e.decode::<Pong>(),
            Err(DecodeError::WrongType { expected, actual, .. })
                if expected == "mlops.test.v1.Pong" && actual == "mlops.test.v1.Ping"
        ));
        let garbage = Envelope {
            payload: vec![0xff, 0xff, 0xff],
            ..e
        };
        assert!(matches!(
            garbage.decode::<Ping>(),
            Err(DecodeError::Payload { .. })
        ));
    }
}
