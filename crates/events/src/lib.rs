//! Events between services: nothing lost, nothing done twice.
//!
//! - [`Envelope`]: a protobuf payload with its CloudEvents attributes;
//! - [`EventBus`] / [`Subscription`]: the bus, as [`kafka::KafkaBus`] or [`memory::InProcessBus`];
//! - [`outbox`]: events written in the same transaction as the change, and the relay;
//! - [`consumer`]: consumers that record applied event ids.

pub mod bus;
pub mod consumer;
pub mod envelope;
pub mod kafka;
pub mod memory;
pub mod outbox;

use std::sync::Arc;

pub use bus::{BusError, Delivery, EventBus, Subscription};
pub use envelope::Envelope;

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
