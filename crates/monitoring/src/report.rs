//! A drift report over two tables, column by column: each worker reads one column of the
//! reference and of the current window, tests it and drops it, so the memory a report
//! needs is a few columns' whatever the table's width.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::drift::{self, ColumnDrift, ColumnType, DatasetDrift, DriftOptions};
use crate::table::{self, Columns, TableError};

/// A column to monitor, with its type (inferred from the reference when `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(default)]
    pub column_type: Option<ColumnType>,
}

/// Every column of `names`, its type to be inferred.
pub fn inferred(names: Vec<String>) -> Vec<ColumnSpec> {
    names
        .into_iter()
        .map(|name| ColumnSpec {
            name,
            column_type: None,
        })
        .collect()
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Drift(#[from] drift::DriftError),
    #[error("the reference and the current window share no column to compare")]
    NoColumns,
}

/// The drift of `current` against `reference` over `columns` (every column the reference
/// has when empty; a named column missing from either table is an error), with
/// `workers` columns tested at once.
pub fn drift_report(
    reference: &dyn Columns,
    current: &dyn Columns,
    columns: &[ColumnSpec],
    options: &DriftOptions,
    workers: usize,
) -> Result<DatasetDrift, ReportError> {
    let specs = if columns.is_empty() {
        inferred(table::shared_columns(&reference.names(), &current.names()))
    } else {
        columns.to_vec()
    };
    if specs.is_empty() {
        return Err(ReportError::NoColumns);
    }
    options.check()?;
    let next = Mutex::new(0usize);
    let tested: Mutex<Vec<Result<(String, ColumnDrift), ReportError>>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, specs.len()) {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(spec) = specs.get(i) else { break };
                let one = one_column(reference, current, spec, options);
                tested.lock().unwrap_or_else(|p| p.into_inner()).push(one);
            });
        }
    });
    // each column was tested alone; the dataset verdict (and any correction) over all
    let columns = tested
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(drift::summarize(columns, options))
}

/// One column read from both tables, typed, tested and dropped.
fn one_column(
    reference: &dyn Columns,
    current: &dyn Columns,
    spec: &ColumnSpec,
    options: &DriftOptions,
) -> Result<(String, ColumnDrift), ReportError> {
    let r = reference.column(&spec.name, "reference")?;
    let c = current.column(&spec.name, "current window")?;
    let ty = match spec.column_type {
        Some(t) => t,
        None => table::infer_type(&spec.name, r.as_ref())?,
    };
    let (rs, cs) = (
        table::to_sample(&spec.name, r.as_ref(), ty)?,
        table::to_sample(&spec.name, c.as_ref(), ty)?,
    );
    drop((r, c));
    let d = drift::column_drift(
        &spec.name,
        ty,
        &rs,
        &cs,
        options.method_for(&spec.name, ty),
        options.threshold_for(&spec.name, ty),
    )?;
    Ok((spec.name.clone(), d))
}
