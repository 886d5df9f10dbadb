//! Following a topic on every replica: a broadcast subscription (every replica gets every
//! event), subscribed before the service serves so nothing after that is missed, and a
//! loop that hands each event to the service and resubscribes when the bus fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mlops_events::{Envelope, EventBus, Subscription};
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
