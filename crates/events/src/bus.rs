//! The event bus: one trait, two implementations ([`crate::kafka`], [`crate::memory`]).

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;

use crate::Envelope;

/// A bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker did not take the event (it is retried later; nothing is lost).
    #[error("publishing to {topic} failed: {message}")]
    Publish {
        /// The topic.
        topic: String,
        /// The broker's or client's error.
        message: String,
    },
    /// The broker is unreachable or refused an admin or consumer call.
    #[error("event bus error: {0}")]
    Broker(String),
    /// A received message is not an event of ours.
    #[error("malformed event on {topic}: {message}")]
    Malformed {
        /// The topic.
        topic: String,
        /// What is wrong.
        message: String,
    },
    /// The subscription was closed.
    #[error("the subscription is closed")]
    Closed,
}

/// An event received from a subscription, with where it sits in its topic.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub envelope: Envelope,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}

/// A message as it is on the topic, CloudEvents headers or not: what an external
/// producer (feature ingestion, labels) writes, and what [`EventBus::subscribe_raw`]
/// returns. [`EventBus::publish_raw`] ignores `partition` and `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The topic.
    pub topic: String,
    /// The message key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload bytes (empty for a tombstone).
    pub payload: Vec<u8>,
    /// The headers, in order (a key may repeat). Keys are most often the CloudEvents
    /// binding's own, which are not copied for each record.
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
    /// Its partition (0 in-process).
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The producer's or broker's timestamp, in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl RawRecord {
    /// A record to publish on `topic` (no headers, the publish time as timestamp).
    pub fn new(topic: &str, key: Option<&[u8]>, payload: impl Into<Vec<u8>>) -> Self {
        RawRecord {
            topic: topic.to_owned(),
            key: key.map(<[u8]>::to_vec),
            payload: payload.into(),
            headers: vec![],
            partition: -1,
            offset: -1,
            timestamp: None,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push((Cow::Owned(key.to_owned()), value.into()));
        self
    }

    /// The record of an event (CloudEvents binary binding), as the bus carries it.
    pub fn from_envelope(e: &Envelope) -> Self {
        Self::from_owned_envelope(e.clone())
    }

    /// [`RawRecord::from_envelope`] taking the event: its strings move into the record
    /// instead of being copied. The headers are [`Envelope::headers`], in the same order.
    pub fn from_owned_envelope(e: Envelope) -> Self {
        let Envelope {
            id,
            topic,
            key,
            ce_type,
            source,
            subject,
            time,
            content_type,
            payload,
            mut trace,
        } = e;
        let mut headers = Vec::with_capacity(9);
        for (k, v) in [
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", id),
            ("ce_type", ce_type),
            ("ce_source", source),
            ("ce_time", time),
            ("ce_subject", subject),
            ("content-type", content_type),
        ] {
            headers.push((Cow::Borrowed(k), v.into_bytes()));
        }
        // Most events carry no trace context, and hashing a key to find nothing costs more
        // than the rest of this conversion.
        if !trace.is_empty() {
            for k in ["traceparent", "tracestate"] {
                if let Some(v) = trace.remove(k) {
                    headers.push((Cow::Borrowed(k), v.into_bytes()));
                }
            }
        }
        RawRecord {
            topic,
            key: Some(key.into_bytes()),
            payload,
            headers,
            partition: -1,
            offset: -1,
            timestamp: None,
        }
    }

    /// The event this record carries, if it has the CloudEvents headers of one.
    pub fn to_delivery(&self) -> Result<Delivery, String> {
        let key = self
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let envelope = Envelope::from_headers(
            &self.topic,
            &key,
            &self.payload,
            self.headers.iter().map(|(k, v)| (k.as_ref(), v.as_slice())),
        )?;
        Ok(Delivery {
            envelope,
            partition: self.partition,
            offset: self.offset,
        })
    }
}

/// Publishes and subscribes to events.
///
/// Three ways to consume, described in the crate docs: [`EventBus::subscribe`] (a
/// consumer group: one member applies each event), [`EventBus::subscribe_broadcast`]
/// (every replica sees every event from the moment it subscribed) and
/// [`EventBus::subscribe_raw`] (a consumer group on an external topic whose messages
/// are not CloudEvents).
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `events` in order; returns how many of the first ones were
    /// delivered before an error (all of them on `Ok`).
    async fn publish(&self, events: &[Envelope]) -> (usize, Result<(), BusError>);
    /// [`EventBus::publish`] taking the events: those delivered are removed from the
    /// front of `events`, so after an error what is left is what was not delivered. The
    /// in-process bus moves them into its log rather than copying them.
    async fn publish_taking(&self, events: &mut Vec<Envelope>) -> Result<(), BusError> {
        let (sent, result) = self.publish(events).await;
        events.drain(..sent);
        result
    }
    /// Publishes `records` as they are, in order (external producers' messages, in
    /// tests and in-process setups).
    async fn publish_raw(&self, records: &[RawRecord]) -> Result<(), BusError>;
    /// Creates the topics if they do not exist yet.
    async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError>;
    /// Joins consumer group `group` on `topics`; committed offsets are shared by the
    /// group, and each event goes to one member of the group. A group new to a topic
    /// starts at its oldest retained event. Messages without CloudEvents headers are
    /// counted in `mlops_events_malformed_total{topic, consumer=group}` and skipped.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;
    /// A broadcast subscription to `topics` (which must exist): every subscriber,
    /// in every replica, gets every event published after this call returned, and
    /// none from before. Nothing is committed: [`Subscription::commit`] does nothing,
    /// and a new subscription (a restart) starts again from the end of the topics,
    /// without replay. `name` says who subscribes (e.g. `inference-aliases`), for
    /// metrics and logs; replicas use the same name.
    async fn subscribe_broadcast(
        &self,
        name: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;
    /// Joins consumer group `group` on external `topics`, returning messages as they
    /// are (no CloudEvents headers required); offsets are committed as in
    /// [`EventBus::subscribe`].
    async fn subscribe_raw(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn RawSubscription>, BusError>;
    /// Checks the bus answers (for readiness).
    async fn ping(&self) -> Result<(), BusError>;
}

/// A consumer group member's (or a broadcast subscriber's) stream of events.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next event.
    async fn next(&mut self) -> Result<Delivery, BusError>;
    /// Records that `delivery` and everything before it in its partition is handled
    /// (nothing to record for a broadcast subscription).
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// A batch, for consumers that apply events in one transaction: waits for the next
    /// event, then [`Subscription::fill_batch`]. Cancelled after its first event (raced
    /// against a timer, say), it drops what it took, which the subscription does not
    /// deliver again: race `next` and call `fill_batch` instead, or race it only against
    /// shutdown.
    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let first = self.next().await?;
        Ok(self.fill_batch(first, max, linger).await)
    }

    /// A batch from its `first` event: what arrives within `linger`, up to `max` in all
    /// (an error ends the batch; the next call meets it).
    async fn fill_batch(&mut self, first: Delivery, max: usize, linger: Duration) -> Vec<Delivery> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Ok(d)) => batch.push(d),
                _ => break,
            }
        }
        batch
    }

    /// Commits a handled batch: the last event of each of its partitions.
    async fn commit_batch(&mut self, batch: &[Delivery]) -> Result<(), BusError> {
        for d in last_per_partition(batch, |d| d.partition) {
            self.commit(d).await?;
        }
        Ok(())
    }
}

/// A consumer group member's stream of raw messages.
#[async_trait]
pub trait RawSubscription: Send {
    /// Waits for the next message.
    async fn next(&mut self) -> Result<RawRecord, BusError>;
    /// Records that `record` and everything before it in its partition is handled.
    async fn commit(&mut self, record: &RawRecord) -> Result<(), BusError>;

    /// [`Subscription::next_batch`] for raw messages (the same caveat on cancellation).
    async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<RawRecord>, BusError> {
        let mut batch = vec![self.next().await?];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Ok(r)) => batch.push(r),
                _ => break,
            }
        }
        Ok(batch)
    }

    /// [`Subscription::commit_batch`] for raw messages.
    async fn commit_batch(&mut self, batch: &[RawRecord]) -> Result<(), BusError> {
        for r in last_per_partition(batch, |r| r.partition) {
            self.commit(r).await?;
        }
        Ok(())
    }
}

/// The last item of each partition in `batch`, in partition order.
fn last_per_partition<T>(batch: &[T], partition: impl Fn(&T) -> i32) -> Vec<&T> {
    let mut last = std::collections::BTreeMap::new();
    for item in batch {
        last.insert(partition(item), item);
    }
    last.into_values().collect()
}
