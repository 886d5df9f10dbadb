//! The in-process bus, for `mlops up` and unit tests: one append-only log per
//! topic, consumer groups with committed offsets, bounded retention.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::bus::{BusError, Delivery, EventBus, Subscription};
use crate::Envelope;

/// Events kept per topic; older ones are dropped (a slow in-process consumer
/// can fall behind by this much before it misses events).
const RETENTION: usize = 100_000;

#[derive(Default)]
struct Topic {
    events: VecDeque<Envelope>,
    /// The offset of `events[0]`.
    base: i64,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    /// (group, topic) -> next offset to read.
    committed: HashMap<(String, String), i64>,
}

/// An event bus inside the process.
#[derive(Clone, Default)]
pub struct InProcessBus {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl InProcessBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, events: &[Envelope]) -> (usize, Result<(), BusError>) {
        {
            let mut state = self.lock();
            for e in events {
                let topic = state.topics.entry(e.topic.clone()).or_default();
                topic.events.push_back(e.clone());
                while topic.events.len() > RETENTION {
                    topic.events.pop_front();
                    topic.base += 1;
                }
            }
        }
        self.notify.notify_waiters();
        (events.len(), Ok(()))
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
            bus: self.clone(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            positions: HashMap::new(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct InProcessSubscription {
    bus: InProcessBus,
    group: String,
    topics: Vec<String>,
    /// Read position per topic; starts at the group's committed offset.
    positions: HashMap<String, i64>,
}

impl InProcessSubscription {
    fn poll(&mut self) -> Option<Delivery> {
        let state = self.bus.lock();
        for t in &self.topics {
            let pos = *self.positions.entry(t.clone()).or_insert_with(|| {
                state
                    .committed
                    .get(&(self.group.clone(), t.clone()))
                    .copied()
                    .unwrap_or(0)
            });
            if let Some(topic) = state.topics.get(t) {
                let pos = pos.max(topic.base);
                if let Some(e) = topic.events.get((pos - topic.base) as usize) {
                    self.positions.insert(t.clone(), pos + 1);
                    return Some(Delivery {
                        envelope: e.clone(),
                        partition: 0,
                        offset: pos,
                    });
                }
            }
        }
        None
    }
}

#[async_trait]
impl Subscription for InProcessSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let notify = self.bus.notify.clone();
            let notified = notify.notified();
            if let Some(d) = self.poll() {
                return Ok(d);
            }
            notified.await;
        }
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut state = self.bus.lock();
        let key = (self.group.clone(), delivery.envelope.topic.clone());
        let next = delivery.offset + 1;
        let entry = state.committed.entry(key).or_insert(0);
        *entry = (*entry).max(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(topic: &str, key: &str) -> Envelope {
        Envelope::new(
            topic,
            "/test",
            "T",
            key,
            String::new(),
            key.as_bytes().to_vec(),
        )
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
        let mut keys = vec![];
        for _ in 0..3 {
            keys.push(other.next().await.unwrap().envelope.key);
        }
        assert_eq!(keys, ["1", "2", "3"]);
        // a waiting consumer wakes on publish
        let waiter = tokio::spawn(async move { s.next().await.unwrap().envelope.key });
        tokio::task::yield_now().await;
        bus.publish(&[ev("a", "4")]).await.1.unwrap();
        assert_eq!(waiter.await.unwrap(), "4");
    }
}
