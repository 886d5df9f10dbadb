//! The service kit: what makes a service out of its domain code.
//!
//! - [`runner`]: one [`Runner`] for every service, gRPC or HTTP, with or without a
//!   database, a bus and an outbox: readiness that the service extends with its
//!   own checks, background tasks that are supervised (a failure is logged,
//!   counted, and turns readiness false or stops the process), and the ordered
//!   drain on SIGTERM;
//! - [`service`]: the [`Service`] trait a service implements once (its config,
//!   bind, addresses, run), from which come its binary's `main` ([`main`]) and its
//!   place in every composition;
//! - [`follow`]: a topic followed on every replica (a broadcast subscription made before
//!   serving, and the loop that applies its events and resubscribes);
//! - [`compose`]: services in one process ([`Composition`]): `mlops up`, the test
//!   sandbox and the benchmarks start each service with one line, and stop them in
//!   reverse order (callers before callees).
//!
//! The settings every service shares are flattened into its config:
//! [`mlops_runtime::config::ServerArgs`], [`mlops_storage::DbArgs`] and
//! [`mlops_events::BusArgs`]. Adding a service: `docs/adding-a-service.md`.

pub mod compose;
pub mod follow;
pub mod runner;
pub mod service;

pub use compose::{entry, Composition, Entry, Local};
pub use mlops_events::EventBus;
pub use runner::{OnFailure, Runner};
pub use service::{main, open_bus, open_database, Addresses, Service};
