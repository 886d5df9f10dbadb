//! The offline side: training data from feature sources, joined point in time.

pub mod join;
