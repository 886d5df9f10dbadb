//! The feature store: entities, feature views and feature services defined
//! declaratively; exact point-in-time joins for training data; an online store.

pub mod defs;
pub mod offline;
