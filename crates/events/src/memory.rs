//! The in-process bus, for `mlops up` and tests: one append-only log per topic
//! (a topic is one partition), consumer groups with committed offsets, broadcast
//! subscriptions, retention bounded in messages and in bytes. Messages are kept as
//! the Kafka bus carries them ([`RawRecord`]s, events in the CloudEvents binary
//! binding), so both buses read them the same way.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::bus::{BusError, Delivery, EventBus, RawRecord, RawSubscription, Subscription};
use crate::Envelope;

/// How much each topic keeps: the newest messages up to both limits, older ones dropped
/// (a slow in-process consumer can fall behind by this much before it misses messages).
/// The bytes bound memory where messages are large, as a prediction log's can be.
#[derive(Clone, Copy, Debug)]
struct Retention {
    records: usize,
    /// Keys, payloads and headers.
    bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            records: 100_000,
            bytes: 32 << 20,
        }
    }
}

/// What a record holds, as counted against [`Retention::bytes`].
fn record_bytes(r: &RawRecord) -> usize {
    r.topic.len()
        + r.key.as_ref().map_or(0, Vec::len)
        + r.payload.len()
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

#[derive(Default)]
struct Topic {
    records: VecDeque<RawRecord>,
    /// The offset of `records[0]`.
    base: i64,
    /// What `records` hold ([`record_bytes`]).
    bytes: usize,
}

impl Topic {
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    /// (group, topic) -> next offset to read.
    committed: HashMap<(String, String), i64>,
    /// (group, topic) -> the member reading it. A topic is one partition, and like
    /// a Kafka partition it is read by one member of a group at a time; when that
    /// member leaves, the next one takes over from the committed offset.
    owners: HashMap<(String, String), u64>,
    /// The id of the next subscription.
    next_member: u64,
}

/// An event bus inside the process.
#[derive(Clone, Default)]
pub struct InProcessBus {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    retention: Retention,
}

impl InProcessBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, records: impl Iterator<Item = RawRecord>) {
        {
            let mut state = self.lock();
            let now = mlops_storage::now_millis();
            let mut records = records.peekable();
            while let Some(first) = records.next() {
                // Looked up once for a run of records to the same topic (a batch, most
                // often), and without the entry API, which would copy the name each time.
                if !state.topics.contains_key(&first.topic) {
                    state.topics.insert(first.topic.clone(), Topic::default());
                }
                let topic = state.topics.get_mut(&first.topic).expect("inserted above");
                let mut next = Some(first);
                while let Some(mut r) = next {
                    r.timestamp.get_or_insert(now);
                    r.partition = 0;
                    r.offset = topic.end();
                    topic.bytes += record_bytes(&r);
                    topic.records.push_back(r);
                    // The newest message is kept whatever its size, so `back` is `r`.
                    while topic.records.len() > self.retention.records
                        || (topic.bytes > self.retention.bytes && topic.records.len() > 1)
                    {
                        if let Some(old) = topic.records.pop_front() {
                            topic.bytes -= record_bytes(&old);
                            topic.base += 1;
                        }
                    }
                    let same =
                        |n: &RawRecord| topic.records.back().is_some_and(|b| b.topic == n.topic);
                    next = records.next_if(same);
                }
            }
        }
        self.notify.notify_waiters();
    }

    fn reader(&self, mode: Mode, topics: &[&str]) -> Reader {
        let mut state = self.lock();
        let member = state.next_member;
        state.next_member += 1;
        let mut positions = HashMap::new();
        if let Mode::Broadcast(_) = mode {
            // The starting point: the end of each topic as the subscription is made.
            for t in topics {
                let end = state.topics.get(*t).map(Topic::end).unwrap_or(0);
                positions.insert((*t).to_owned(), end);
            }
        }
        Reader {
            bus: self.clone(),
            mode,
            member,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            positions,
        }
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, events: &[Envelope]) -> (usize, Result<(), BusError>) {
        self.append(events.iter().map(RawRecord::from_envelope));
        (events.len(), Ok(()))
    }

    async fn publish_taking(&self, events: &mut Vec<Envelope>) -> Result<(), BusError> {
        self.append(events.drain(..).map(RawRecord::from_owned_envelope));
        Ok(())
    }

    async fn publish_raw(&self, records: &[RawRecord]) -> Result<(), BusError> {
        self.append(records.iter().cloned());
        Ok(())
    }

    async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        let mut state = self.lock();
        for t in topics {
            state.topics.entry((*t).to_owned()).or_default();
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(InProcessSubscription {
            reader: self.reader(Mode::Group(group.to_owned()), topics),
        }))
    }

    async fn subscribe_broadcast(
        &self,
        name: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(InProcessSubscription {
            reader: self.reader(Mode::Broadcast(name.to_owned()), topics),
        }))
    }

    async fn subscribe_raw(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn RawSubscription>, BusError> {
        Ok(Box::new(InProcessRawSubscription {
            reader: self.reader(Mode::Group(group.to_owned()), topics),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// How a reader reads.
enum Mode {
    /// As a member of this consumer group.
    Group(String),
    /// Everything from its start, on its own; the name is for metrics.
    Broadcast(String),
}

/// One subscription's reading of the log.
struct Reader {
    bus: InProcessBus,
    mode: Mode,
    member: u64,
    topics: Vec<String>,
    /// Read position per topic: a group member's starts at the group's committed
    /// offset when it takes the topic over, a broadcast's at the end of the topic.
    positions: HashMap<String, i64>,
}

impl Reader {
    /// The group, or the broadcast subscriber's name.
    fn label(&self) -> &str {
        match &self.mode {
            Mode::Group(g) | Mode::Broadcast(g) => g,
        }
    }

    fn poll(&mut self) -> Option<RawRecord> {
        let mut guard = self.bus.lock();
        let state = &mut *guard;
        for t in &self.topics {
            let pos = match &self.mode {
                Mode::Group(g) => {
                    let key = (g.clone(), t.clone());
                    if *state.owners.entry(key.clone()).or_insert(self.member) != self.member {
                        continue;
                    }
                    *self
                        .positions
                        .entry(t.clone())
                        .or_insert_with(|| state.committed.get(&key).copied().unwrap_or(0))
                }
                Mode::Broadcast(_) => self.positions.get(t).copied().unwrap_or(0),
            };
            if let Some(topic) = state.topics.get(t) {
                let pos = pos.max(topic.base);
                if let Some(r) = topic.records.get((pos - topic.base) as usize) {
                    self.positions.insert(t.clone(), pos + 1);
                    return Some(r.clone());
                }
            }
        }
        None
    }

    /// Waits for the next record.
    async fn next(&mut self) -> RawRecord {
        loop {
            let notify = self.bus.notify.clone();
            // Registered before polling, so a publish in between is not missed.
            let notified = notify.notified();
            if let Some(r) = self.poll() {
                return r;
            }
            notified.await;
        }
    }

    fn commit(&self, topic: &str, offset: i64) {
        if let Mode::Group(group) = &self.mode {
            let mut state = self.bus.lock();
            let entry = state
                .committed
                .entry((group.clone(), topic.to_owned()))
                .or_insert(0);
            *entry = (*entry).max(offset + 1);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Mode::Group(group) = &self.mode {
            let mut state = self.bus.lock();
            for t in &self.topics {
                let key = (group.clone(), t.clone());
                if state.owners.get(&key) == Some(&self.member) {
                    state.owners.remove(&key);
                }
            }
            drop(state);
            // Another member of the group may take the topics over.
            self.bus.notify.notify_waiters();
        }
    }
}

struct InProcessSubscription {
    reader: Reader,
}

#[async_trait]
impl Subscription for InProcessSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let record = self.reader.next().await;
            match record.to_delivery() {
                Ok(d) => return Ok(d),
                Err(error) => crate::metrics::count_malformed(
                    &record.topic,
                    self.reader.label(),
                    record.offset,
                    &error,
                ),
            }
        }
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        self.reader
            .commit(&delivery.envelope.topic, delivery.offset);
        Ok(())
    }
}

struct InProcessRawSubscription {
    reader: Reader,
}

#[async_trait]
impl RawSubscription for InProcessRawSubscription {
    async fn next(&mut self) -> Result<RawRecord, BusError> {
        Ok(self.reader.next().await)
    }

    async fn commit(&mut self, record: &RawRecord) -> Result<(), BusError> {
        self.reader.commit(&record.topic, record.offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::Note;

    fn ev(topic: &str, key: &str) -> Envelope {
        Envelope::of(topic, "/test", key, "", &Note { text: key.into() })
    }

    async fn keys(s: &mut Box<dyn Subscription>, n: usize) -> Vec<String> {
        let mut out = vec![];
        for _ in 0..n {
            out.push(s.next().await.unwrap().envelope.key);
        }
        out
    }

    async fn nothing_more(s: &mut Box<dyn Subscription>) -> bool {
        tokio::time::timeout(Duration::from_millis(100), s.next())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn groups_resume_from_their_commits() {
        let bus = InProcessBus::new();
        bus.publish(&[ev("a", "1"), ev("a", "2"), ev("b", "3")])
            .await
            .1
            .unwrap();
        let mut s = bus.subscribe("g", &["a"]).await.unwrap();
        let d1 = s.next().await.unwrap();
        assert_eq!(d1.envelope.key, "1");
        s.commit(&d1).await.unwrap();
        drop(s);
        let mut s = bus.subscribe("g", &["a"]).await.unwrap();
        assert_eq!(s.next().await.unwrap().envelope.key, "2");
        let mut other = bus.subscribe("h", &["a", "b"]).await.unwrap();
        assert_eq!(keys(&mut other, 3).await, ["1", "2", "3"]);
        // a waiting consumer wakes on publish
        let waiter = tokio::spawn(async move { s.next().await.unwrap().envelope.key });
        tokio::task::yield_now().await;
        bus.publish(&[ev("a", "4")]).await.1.unwrap();
        assert_eq!(waiter.await.unwrap(), "4");
    }

    #[tokio::test]
    async fn published_taking_arrives_as_published_and_leaves_nothing_behind() {
        let bus = InProcessBus::new();
        let sent = vec![ev("a", "1"), ev("a", "2")];
        let mut batch = sent.clone();
        bus.publish_taking(&mut batch).await.unwrap();
        assert!(batch.is_empty(), "what was delivered is taken");
        let mut s = bus.subscribe("g", &["a"]).await.unwrap();
        for e in sent {
            assert_eq!(s.next().await.unwrap().envelope, e);
        }
    }

    #[tokio::test]
    async fn a_batch_across_topics_lands_on_each_in_order() {
        let bus = InProcessBus::new();
        let batch = [
            ev("a", "1"),
            ev("a", "2"),
            ev("b", "3"),
            ev("a", "4"),
            ev("c", "5"),
            ev("c", "6"),
            ev("b", "7"),
        ];
        bus.publish(&batch).await.1.unwrap();
        for (topic, want) in [
            ("a", ["1", "2", "4"].as_slice()),
            ("b", &["3", "7"]),
            ("c", &["5", "6"]),
        ] {
            let mut s = bus.subscribe("g", &[topic]).await.unwrap();
            for (offset, key) in want.iter().enumerate() {
                let d = s.next().await.unwrap();
                assert_eq!(
                    (d.envelope.topic.as_str(), d.envelope.key.as_str()),
                    (topic, *key)
                );
                assert_eq!((d.partition, d.offset), (0, offset as i64), "{topic} {key}");
            }
            assert!(nothing_more(&mut s).await, "{topic} holds only its own");
        }
    }

    #[tokio::test]
    async fn a_group_gives_each_event_to_one_member_and_hands_over_on_leave() {
        let bus = InProcessBus::new();
        let mut first = bus.subscribe("g", &["a"]).await.unwrap();
        let mut second = bus.subscribe("g", &["a"]).await.unwrap();
        bus.publish(&[ev("a", "1"), ev("a", "2"), ev("a", "3")])
            .await
            .1
            .unwrap();
        let d1 = first.next().await.unwrap();
        first.commit(&d1).await.unwrap();
        assert_eq!(first.next().await.unwrap().envelope.key, "2");
        assert!(
            nothing_more(&mut second).await,
            "the topic is read by one member"
        );
        // The member leaves with "2" handled but not committed: the other one takes
        // over from the committed offset, as after a Kafka rebalance.
        drop(first);
        assert_eq!(keys(&mut second, 2).await, ["2", "3"]);
    }

    #[tokio::test]
    async fn broadcast_subscribers_each_get_every_event_after_they_subscribed() {
        let bus = InProcessBus::new();
        bus.publish(&[ev("a", "before")]).await.1.unwrap();
        let mut one = bus.subscribe_broadcast("cache", &["a"]).await.unwrap();
        let mut two = bus.subscribe_broadcast("cache", &["a"]).await.unwrap();
        let mut group = bus.subscribe("g", &["a"]).await.unwrap();
        bus.publish(&[ev("a", "1"), ev("a", "2")]).await.1.unwrap();
        for s in [&mut one, &mut two] {
            let d = s.next().await.unwrap();
            assert_eq!(d.envelope.key, "1");
            s.commit(&d).await.unwrap();
            assert_eq!(s.next().await.unwrap().envelope.key, "2");
            assert!(nothing_more(s).await);
        }
        assert_eq!(keys(&mut group, 3).await, ["before", "1", "2"]);
        // A new broadcast subscription (a restart) does not replay.
        drop(one);
        let mut again = bus.subscribe_broadcast("cache", &["a"]).await.unwrap();
        assert!(nothing_more(&mut again).await);
        bus.publish(&[ev("a", "3")]).await.1.unwrap();
        assert_eq!(keys(&mut again, 1).await, ["3"]);
        // A broadcast subscription to a topic not published to yet starts at its start.
        let mut fresh = bus.subscribe_broadcast("cache", &["new"]).await.unwrap();
        bus.publish(&[ev("new", "first")]).await.1.unwrap();
        assert_eq!(keys(&mut fresh, 1).await, ["first"]);
    }

    #[tokio::test]
    async fn a_topic_keeps_its_newest_messages_within_both_limits() {
        let record = |i: u8| RawRecord::new("t", None, vec![i; 100]);
        let one = record_bytes(&record(0));
        let oldest_kept = |bus: InProcessBus| async move {
            let mut raw = bus.subscribe_raw("g", &["t"]).await.unwrap();
            let r = raw.next().await.unwrap();
            (r.offset, r.payload[0])
        };
        // By count: 3 of 5.
        let bus = InProcessBus {
            retention: Retention {
                records: 3,
                bytes: usize::MAX,
            },
            ..InProcessBus::new()
        };
        bus.publish_raw(&(0..5).map(record).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(oldest_kept(bus.clone()).await, (2, 2));
        assert_eq!(bus.lock().topics["t"].records.len(), 3);
        // By bytes: what fits in two and a half records is two.
        let bus = InProcessBus {
            retention: Retention {
                records: 100,
                bytes: one * 5 / 2,
            },
            ..InProcessBus::new()
        };
        bus.publish_raw(&(0..5).map(record).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(oldest_kept(bus.clone()).await, (3, 3));
        assert_eq!(bus.lock().topics["t"].bytes, one * 2);
        // A message larger than the limit is still kept, alone.
        bus.publish_raw(&[RawRecord::new("t", None, vec![9; one * 10])])
            .await
            .unwrap();
        assert_eq!(oldest_kept(bus.clone()).await, (5, 9));
        assert_eq!(bus.lock().topics["t"].records.len(), 1);
    }

    #[tokio::test]
    async fn raw_records_are_received_and_committed_and_events_skip_them() {
        let bus = InProcessBus::new();
        bus.publish_raw(&[
            RawRecord::new("ext", Some(b"k1"), b"one".to_vec()).with_header("source", "labels"),
            RawRecord::new("ext", None, b"two".to_vec()),
        ])
        .await
        .unwrap();
        bus.publish(&[ev("ext", "event")]).await.1.unwrap();
        let mut raw = bus.subscribe_raw("ingest", &["ext"]).await.unwrap();
        let r = raw.next().await.unwrap();
        assert_eq!(
            (
                r.key.as_deref(),
                r.payload.as_slice(),
                r.partition,
                r.offset
            ),
            (Some(&b"k1"[..]), &b"one"[..], 0, 0)
        );
        assert_eq!(r.headers, [("source".into(), b"labels".to_vec())]);
        assert!(r.timestamp.unwrap() > 1_600_000_000_000);
        raw.commit(&r).await.unwrap();
        drop(raw);
        let mut raw = bus.subscribe_raw("ingest", &["ext"]).await.unwrap();
        let r = raw.next().await.unwrap();
        assert_eq!((r.key, r.payload, r.offset), (None, b"two".to_vec(), 1));
        // An event is a raw record too, with its CloudEvents headers.
        let r = raw.next().await.unwrap();
        assert!(r.headers.iter().any(|(k, _)| k == "ce_id"));

        // An event subscription skips and counts the two records that are not events.
        let before = crate::metrics::malformed_count("ext", "events-of-ext");
        let mut events = bus.subscribe("events-of-ext", &["ext"]).await.unwrap();
        let d = events.next().await.unwrap();
        assert_eq!((d.envelope.key.as_str(), d.offset), ("event", 2));
        assert_eq!(
            crate::metrics::malformed_count("ext", "events-of-ext") - before,
            2
        );
    }
}
