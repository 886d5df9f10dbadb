//! Events between services: nothing lost, nothing done twice.
//!
//! - [`Envelope`]: a protobuf payload with its CloudEvents attributes. Its type is
//!   the message's: [`Envelope::of`] sets `ce_type` to `M::full_name()` (every
//!   message of `mlops_proto::events::v1` has `prost::Name`), and
//!   [`Envelope::decode`] checks it. The topics are `mlops_proto::events::topics`,
//!   documented there with their producer, event types and key;
//! - [`EventBus`]: the bus, as [`kafka::KafkaBus`] or [`memory::InProcessBus`];
//! - [`outbox`]: events written in the same transaction as the change, and the
//!   relay that publishes them; [`outbox::Outbox::enqueue`] returns a guard that
//!   wakes the relay once it is dropped after the commit;
//! - [`consumer`]: consumers that record applied event ids, and the pruning of
//!   those ids by age;
//! - [`metrics`]: `mlops_events_malformed_total{topic, consumer}`.
//!
//! # Consuming
//!
//! **A consumer group** ([`EventBus::subscribe`], usually driven by
//! [`consumer::IdempotentConsumer::run`]): the replicas of a service join one group,
//! and each event goes to one of them. A group new to a topic starts at the oldest
//! retained event; afterwards it resumes from its committed offsets, so nothing is
//! missed across restarts. Delivery is at least once (an event handled but not yet
//! committed is redelivered after a restart or a rebalance), so the consumer
//! records applied event ids in `<service>_applied_events` in the transaction of
//! the effect and skips ids it has seen. Use it for work done once per event:
//! projections, registrations, triggering a job.
//!
//! **A broadcast subscription** ([`EventBus::subscribe_broadcast`]): every
//! subscriber, in every replica, sees every event; use it for state each replica
//! keeps for itself (the model an alias points to, a cache to invalidate).
//! - Starting point: the events published after `subscribe_broadcast` returned;
//!   none from before. On Kafka the subscriber is assigned every partition of its
//!   topics at the high watermark read during the call (no group, nothing
//!   committed); in-process it starts at the end of each topic's log.
//! - Replay rule: none. A restarted replica does not get the events it missed; it
//!   first subscribes, then rebuilds its state from the source of truth (its own
//!   tables, or the producing service's API), then applies the broadcast events,
//!   which are idempotent updates of that state. Subscribing before rebuilding
//!   means an event arriving during the rebuild is applied after it, not lost.
//!
//! **External topics** ([`EventBus::subscribe_raw`]): a consumer group on topics
//! whose messages are not our CloudEvents (feature ingestion, labels). It returns
//! [`RawRecord`]s (key, payload, headers, partition, offset, timestamp) and
//! commits as a group does. [`EventBus::publish_raw`] writes such records, for
//! in-process setups and tests.
//!
//! **Malformed messages** are never retried forever: a message without CloudEvents
//! headers on an event subscription, or an event whose handler fails with an
//! [`envelope::DecodeError`], is counted in `mlops_events_malformed_total` with its
//! topic and consumer (the group, the broadcast subscriber's name, or the
//! idempotent consumer's name), logged and skipped.

pub mod bus;
pub mod consumer;
pub mod envelope;
pub mod kafka;
pub mod memory;
pub mod metrics;
pub mod outbox;

use std::sync::Arc;

pub use bus::{BusError, Delivery, EventBus, RawRecord, RawSubscription, Subscription};
pub use envelope::{DecodeError, Envelope};

/// Which bus implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BusKind {
    /// Inside this process (`mlops up`, tests); nothing leaves the process.
    InProcess,
    /// A Kafka cluster (or any broker speaking the Kafka protocol).
    Kafka,
}

/// Event-bus settings shared by every service.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    /// Which event bus to publish to: in-process (one process) or kafka.
    #[arg(long, value_enum, default_value = "in-process")]
    pub bus: BusKind,
    /// Kafka bootstrap servers, comma separated.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Partitions of the topics this service creates.
    #[arg(long, default_value_t = 3)]
    pub kafka_partitions: i32,
    /// Consumer-group session timeout.
    #[arg(long, default_value_t = 10_000)]
    pub kafka_session_timeout_ms: u32,
    /// How long the producer retries an event before the relay tries again.
    #[arg(long, default_value_t = 30_000)]
    pub kafka_message_timeout_ms: u32,
}

/// Creates the configured bus; `in_process` is the shared bus of a single-process setup.
pub fn connect(
    args: &BusArgs,
    in_process: Option<&memory::InProcessBus>,
) -> Result<Arc<dyn EventBus>, BusError> {
    Ok(match args.bus {
        BusKind::InProcess => Arc::new(in_process.cloned().unwrap_or_default()),
        BusKind::Kafka => Arc::new(kafka::KafkaBus::new(args)?),
    })
}

/// A message for the crate's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Some text.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Note {
        /// The text.
        #[prost(string, tag = "1")]
        pub text: String,
    }

    impl prost::Name for Note {
        const NAME: &'static str = "Note";
        const PACKAGE: &'static str = "mlops.test.v1";
    }
}
