//! Following a topic on every replica: a broadcast subscription (every replica gets every
//! event), subscribed before the service serves so nothing after that is missed, and a
//! loop that hands each event to the service and resubscribes when the bus fails. And
//! consuming a topic the user's systems write ([`consume_raw`]): a consumer group shared
//! by the replicas, in batches committed after the service applied them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mlops_events::{Envelope, EventBus, RawRecord, RawSubscription, Subscription};
use mlops_runtime::shutdown::CancellationToken;

/// A broadcast subscription to `topics` named `subscriber` (replicas share the name);
/// `None`, logged, when the bus cannot be reached now ([`follow`] then keeps trying).
pub async fn subscribe(
    bus: &Arc<dyn EventBus>,
    subscriber: &str,
    topics: &[&str],
) -> Option<Box<dyn Subscription>> {
    match bus.subscribe_broadcast(subscriber, topics).await {
        Ok(s) => Some(s),
        Err(err) => {
            tracing::warn!(%subscriber, error = %err, "cannot follow the bus yet; retrying");
            None
        }
    }
}

/// What the service does with what it follows.
pub trait Follower: Send {
    /// One event. Failures are the service's to report; following goes on.
    fn apply(&mut self, event: &Envelope) -> impl Future<Output = ()> + Send;
    /// Events may have been missed (a failed read, or a subscription made late): a
    /// service that caches drops what it cached.
    fn gap(&mut self) {}
}

/// Hands every event of `sub` (subscribed by [`subscribe`]; `None`: subscribe here, with
/// backoff) to `follower` until `stop`; resubscribes after a failed read.
pub async fn follow(
    mut follower: impl Follower,
    bus: Arc<dyn EventBus>,
    subscriber: &str,
    topics: &[&str],
    mut sub: Option<Box<dyn Subscription>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut wait = Duration::from_millis(200);
    loop {
        let Some(s) = sub.as_mut() else {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
            sub = subscribe(&bus, subscriber, topics).await;
            if sub.is_some() {
                follower.gap();
            }
            continue;
        };
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            next = s.next() => next,
        };
        match next {
            Ok(delivery) => {
                wait = Duration::from_millis(200);
                follower.apply(&delivery.envelope).await;
            }
            Err(err) => {
                tracing::warn!(%subscriber, error = %err, "reading the bus failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
                follower.gap();
            }
        }
    }
}

/// What the service does with the batches of an external topic.
pub trait BatchConsumer: Send {
    /// One batch. An error leaves it uncommitted: the consumer resubscribes after a
    /// backoff and the batch comes again (so applying must be idempotent).
    fn apply(&mut self, batch: &[RawRecord]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Consumes the external `topic` (messages without CloudEvents headers) as consumer group
/// `group` until `stop`: batches of up to `max` messages (those arriving within `linger`
/// of the first) go to `consumer`, and each is committed once applied; a failed read or
/// apply resubscribes with backoff. `name` says whose consumer it is in logs.
pub async fn consume_raw(
    mut consumer: impl BatchConsumer,
    bus: Arc<dyn EventBus>,
    name: &str,
    group: &str,
    topic: &str,
    (max, linger): (usize, Duration),
    stop: CancellationToken,
) {
    let mut wait = Duration::from_millis(200);
    let mut sub: Option<Box<dyn RawSubscription>> = None;
    while !stop.is_cancelled() {
        let Some(s) = sub.as_mut() else {
            match bus.subscribe_raw(group, &[topic]).await {
                Ok(s) => {
                    tracing::info!(%name, %topic, "consuming");
                    sub = Some(s);
                }
                Err(e) => {
                    tracing::warn!(%name, %topic, error = %e, "cannot consume the topic yet; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
            continue;
        };
        // raced only against shutdown: a batch cut short would lose what it took
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            next = s.next_batch(max, linger) => next,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%name, %topic, error = %e, "reading the topic failed; resubscribing");
                sub = None;
                continue;
            }
        };
        if let Err(e) = consumer.apply(&batch).await {
            // not committed: the batch comes again
            tracing::warn!(%name, %topic, error = %e, "applying a batch failed; retrying");
            sub = None;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
            continue;
        }
        // every partition's last message: a batch may hold several partitions
        if let Err(e) = s.commit_batch(&batch).await {
            tracing::warn!(%name, %topic, error = %e, "committing offsets failed");
        }
        wait = Duration::from_millis(200);
    }
}
