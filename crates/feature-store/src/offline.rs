//! The offline side: training data from feature sources, joined point in time.

pub mod files;
pub mod historical;
pub mod ipc;
pub mod join;
