//! The event bus: one trait, two implementations ([`crate::kafka`], [`crate::memory`]).

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

/// Publishes and subscribes to events.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `events` in order; returns how many of the first ones were
    /// delivered before an error (all of them on `Ok`).
    async fn publish(&self, events: &[Envelope]) -> (usize, Result<(), BusError>);
    /// Creates the topics if they do not exist yet.
    async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError>;
    /// Joins consumer group `group` on `topics`; committed offsets are shared by the group.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;
    /// Checks the bus answers (for readiness).
    async fn ping(&self) -> Result<(), BusError>;
}

/// A consumer group member's stream of events.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next event.
    async fn next(&mut self) -> Result<Delivery, BusError>;
    /// Records that `delivery` and everything before it in its partition is handled.
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;
}
