//! A drift report over two tables, column by column: each worker reads one column of the
//! reference and of the current window, tests it and drops it, so the memory a report
//! needs is a few columns' whatever the table's width.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::drift::{self, ColumnDrift, ColumnType, DatasetDrift, DriftOptions, Sample};
use crate::histogram::{histogram, Histogram};
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
    let columns = in_parallel(specs.len(), workers, |i| {
        one_column(reference, current, &specs[i], options)
    })?;
    Ok(finish(columns, options))
}

/// The drift of `current` against a reference already read: `reference` holds each
/// column's name, type and sample (as `references::Loaded` keeps them).
pub fn drift_against(
    reference: &[(&str, ColumnType, &Sample)],
    current: &dyn Columns,
    options: &DriftOptions,
    workers: usize,
) -> Result<DatasetDrift, ReportError> {
    if reference.is_empty() {
        return Err(ReportError::NoColumns);
    }
    options.check()?;
    let columns = in_parallel(reference.len(), workers, |i| {
        let (name, ty, rs) = reference[i];
        let c = current.column(name, "current window")?;
        let cs = table::to_sample(name, c.as_ref(), ty)?;
        drop(c);
        let d = drift::column_drift(
            name,
            ty,
            rs,
            &cs,
            options.method_for(name, ty),
            options.threshold_for(name, ty),
        )?;
        Ok((name.to_owned(), d, histogram(rs, &cs)))
    })?;
    Ok(finish(columns, options))
}

/// One tested column: its name, drift and chart.
type Tested = (String, ColumnDrift, Option<Histogram>);

/// The dataset verdict over tested columns, with their charts.
pub fn finish(tested: Vec<Tested>, options: &DriftOptions) -> DatasetDrift {
    let mut columns = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (name, d, h) in tested {
        if let Some(h) = h {
            histograms.insert(name.clone(), h);
        }
        columns.insert(name, d);
    }
    let mut d = drift::summarize(columns, options);
    d.histograms = histograms;
    d
}

/// `test(i)` for every `i < n`, `workers` at once; the results in the order of `i`, so a
/// window with several faults always reports the first column's, whichever worker met it
/// first.
fn in_parallel<F>(n: usize, workers: usize, test: F) -> Result<Vec<Tested>, ReportError>
where
    F: Fn(usize) -> Result<Tested, ReportError> + Sync,
{
    let next = Mutex::new(0usize);
    let tested: Mutex<Vec<(usize, Result<Tested, ReportError>)>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            scope.spawn(|| loop {
                let i = {
                    let mut at = next.lock().unwrap_or_else(|p| p.into_inner());
                    let i = *at;
                    *at += 1;
                    i
                };
                if i >= n {
                    break;
                }
                let one = test(i);
                tested
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, one));
            });
        }
    });
    // each column was tested alone; the dataset verdict (and any correction) over all
    let mut tested = tested.into_inner().unwrap_or_else(|p| p.into_inner());
    tested.sort_unstable_by_key(|(i, _)| *i);
    tested.into_iter().map(|(_, one)| one).collect()
}

/// One column read from both tables, typed, tested and dropped.
fn one_column(
    reference: &dyn Columns,
    current: &dyn Columns,
    spec: &ColumnSpec,
    options: &DriftOptions,
) -> Result<Tested, ReportError> {
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
    Ok((spec.name.clone(), d, histogram(&rs, &cs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(i: usize) -> ReportError {
        ReportError::Table(TableError::Missing {
            column: format!("c{i}"),
            side: "current window",
        })
    }

    #[test]
    fn of_several_faulty_columns_the_first_is_reported_whichever_fails_first() {
        // Later columns fail sooner: workers meet columns 1 to 3's faults before column 0's.
        for _ in 0..5 {
            let err = in_parallel(8, 4, |i| {
                std::thread::sleep(std::time::Duration::from_millis(3 * (8 - i as u64)));
                Err(missing(i))
            })
            .unwrap_err();
            assert!(
                matches!(&err, ReportError::Table(TableError::Missing { column, .. }) if column == "c0"),
                "{err}"
            );
        }
    }
}
