//! Training data: which views and features a query wants, their sources read from the
//! offline store, and the point-in-time join prepared over them.

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};

use super::files::OfflineStore;
use super::join::spill::MAX_PARTITIONS;
use super::join::{Join, JoinError, JoinKey, JoinView, KeyType, SpillJoin};
use crate::defs::{Definitions, FeatureView, Source, SourceKind, ValueType};
use crate::error::{FeatureStoreError, Result};

/// One view a query reads: its definition, the Parquet path of its history, its keys and
/// the features to take (feature, output column name).
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The view.
    pub view: FeatureView,
    /// The Parquet source that holds its history.
    pub source: Source,
    /// That source's path; `None` for a push or kafka source without a batch source,
    /// which has no history (online reads need none).
    pub path: Option<String>,
    /// Its join keys, from its entities.
    pub keys: Vec<JoinKey>,
    /// (feature, output column).
    pub features: Vec<(String, String)>,
}

impl Wanted {
    /// The Parquet path of the view's history, or why it has none.
    pub fn history(&self) -> Result<&str> {
        self.path.as_deref().ok_or_else(|| {
            FeatureStoreError::FailedPrecondition(format!(
                "feature view `{}` has no history to read: its source `{}` has no batch source",
                self.view.name, self.source.name
            ))
        })
    }
}

fn invalid(msg: String) -> FeatureStoreError {
    FeatureStoreError::InvalidArgument(msg)
}

/// The views and features of a query: `features` (`view:feature` references) or the
/// feature service `service`, exactly one of them.
pub fn resolve(
    defs: &Definitions,
    features: &[String],
    service: &str,
    full_feature_names: bool,
) -> Result<Vec<Wanted>> {
    let refs: Vec<(String, String)> = match (features.is_empty(), service.is_empty()) {
        (true, true) => {
            return Err(invalid(
                "name the features (`view:feature`) or a feature service".into(),
            ))
        }
        (false, false) => {
            return Err(invalid(
                "name features or a feature service, not both".into(),
            ))
        }
        (false, true) => {
            let mut out = Vec::with_capacity(features.len());
            for r in features {
                let Some((view, feature)) = r.split_once(':') else {
                    return Err(invalid(format!(
                        "`{r}` is not a feature reference: write `view:feature`"
                    )));
                };
                out.push((view.to_owned(), feature.to_owned()));
            }
            out
        }
        (true, false) => {
            let s = defs.feature_services.get(service).ok_or_else(|| {
                FeatureStoreError::NotFound(format!("feature service `{service}` is not defined"))
            })?;
            let mut out = Vec::new();
            for p in &s.projections {
                let view = defs.feature_views.get(&p.view).ok_or_else(|| {
                    FeatureStoreError::Internal(format!(
                        "feature service `{service}` names view `{}`, which is gone",
                        p.view
                    ))
                })?;
                if p.features.is_empty() {
                    out.extend(view.schema.iter().map(|f| (p.view.clone(), f.name.clone())));
                } else {
                    out.extend(p.features.iter().map(|f| (p.view.clone(), f.clone())));
                }
            }
            out
        }
    };
    let mut wanted: Vec<Wanted> = Vec::new();
    for (view_name, feature) in refs {
        let Some(view) = defs.feature_views.get(&view_name) else {
            let known: Vec<&str> = defs.feature_views.keys().map(String::as_str).collect();
            return Err(invalid(format!(
                "feature view `{view_name}` is not defined (defined: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        if !view.schema.iter().any(|f| f.name == feature) {
            return Err(invalid(format!(
                "feature view `{view_name}` has no feature `{feature}` (it has: {})",
                view.schema
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let out = if full_feature_names {
            format!("{view_name}__{feature}")
        } else {
            feature.clone()
        };
        let i = match wanted.iter().position(|w| w.view.name == view_name) {
            Some(i) => i,
            None => {
                wanted.push(wanted_view(defs, view)?);
                wanted.len() - 1
            }
        };
        let w = &mut wanted[i];
        if w.features.iter().any(|(f, _)| *f == feature) {
            return Err(invalid(format!(
                "`{view_name}:{feature}` is asked for twice"
            )));
        }
        w.features.push((feature, out));
    }
    Ok(wanted)
}

/// What reading `view` needs: its history's source and path, its keys; no features yet.
pub fn wanted_view(defs: &Definitions, view: &FeatureView) -> Result<Wanted> {
    let internal = |m: String| FeatureStoreError::Internal(m);
    let source = defs
        .sources
        .get(&view.source)
        .ok_or_else(|| internal(format!("view `{}` names a source that is gone", view.name)))?;
    let (source, path) = match &source.kind {
        SourceKind::Parquet { path } => (source.clone(), Some(path.clone())),
        SourceKind::Push {
            batch_source: Some(b),
        }
        | SourceKind::Kafka {
            batch_source: Some(b),
            ..
        } => {
            let batch = defs.sources.get(b).ok_or_else(|| {
                internal(format!(
                    "source `{}` names a batch source that is gone",
                    source.name
                ))
            })?;
            let SourceKind::Parquet { path } = &batch.kind else {
                return Err(internal(format!(
                    "batch source `{b}` is not a parquet source"
                )));
            };
            (batch.clone(), Some(path.clone()))
        }
        _ => (source.clone(), None),
    };
    let mut keys = Vec::new();
    for e in &view.entities {
        let entity = defs.entities.get(e).ok_or_else(|| {
            internal(format!(
                "view `{}` names entity `{e}`, which is gone",
                view.name
            ))
        })?;
        for k in &entity.join_keys {
            keys.push(JoinKey {
                name: k.name.clone(),
                kind: match k.value_type {
                    ValueType::String => KeyType::String,
                    _ => KeyType::Int64,
                },
            });
        }
    }
    Ok(Wanted {
        view: view.clone(),
        source,
        path,
        keys,
        features: Vec::new(),
    })
}

/// Whether a column of type `found` holds values of the declared `dtype`.
pub(crate) fn holds(dtype: ValueType, found: &DataType) -> bool {
    match dtype {
        ValueType::Int32 => *found == DataType::Int32,
        ValueType::Int64 => *found == DataType::Int64,
        ValueType::Float32 => *found == DataType::Float32,
        ValueType::Float64 => *found == DataType::Float64,
        ValueType::String => matches!(
            found,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        ValueType::Bytes => matches!(
            found,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ),
        ValueType::Bool => *found == DataType::Boolean,
        ValueType::UnixTimestamp => matches!(found, DataType::Timestamp(_, _)),
    }
}

/// How a training-data join holds the views' history.
#[derive(Debug, Clone)]
pub struct JoinBudget {
    /// The most memory the views' history (Arrow data and index) may take; above it the
    /// join spills.
    pub memory_bytes: u64,
    /// Where a spilled join keeps its files (a directory of its own, removed after).
    pub spill_dir: std::path::PathBuf,
}

/// The in-memory join holds about twice the views' data (the data, then its index).
const INDEX_FACTOR: u64 = 2;

/// A join ready for the entity table: in memory, or spilled to disk.
pub enum Prepared {
    /// The views' history held and indexed.
    Memory(std::sync::Arc<Join>),
    /// The views' history split into partitions on disk.
    Spill(Box<SpillJoin>),
}

impl Prepared {
    /// The output's schema.
    pub fn schema(&self) -> &SchemaRef {
        match self {
            Prepared::Memory(j) => j.schema(),
            Prepared::Spill(j) => j.schema(),
        }
    }
}

/// How many partitions a view estimated at `bytes` is split into so that one partition,
/// indexed, takes at most half of `budget`.
pub fn partitions_for(bytes: u64, budget: u64) -> usize {
    let per_part = (budget / 2).max(1);
    let wanted = bytes.saturating_mul(INDEX_FACTOR).div_ceil(per_part).max(1);
    (wanted as usize)
        .checked_next_power_of_two()
        .unwrap_or(MAX_PARTITIONS)
        .min(MAX_PARTITIONS)
}

/// Opens the history of every wanted view on the offline store, and prepares the join
/// for an entity table of `entity_schema` with its event time in `timestamp_column`
/// (`filter_by_created`: only rows created by then, see `join`): in memory when the
/// views' history, indexed, fits in `budget`, else spilled.
pub async fn prepare(
    store: &OfflineStore,
    wanted: &[Wanted],
    entity_schema: &SchemaRef,
    timestamp_column: &str,
    filter_by_created: bool,
    budget: &JoinBudget,
) -> Result<Prepared> {
    let mut sources = Vec::with_capacity(wanted.len());
    let mut views = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut columns: Vec<String> = w.keys.iter().map(|k| k.name.clone()).collect();
        columns.push(w.source.timestamp_field.clone());
        columns.extend(w.source.created_timestamp_column.clone());
        columns.extend(w.features.iter().map(|(f, _)| f.clone()));
        let what = format!(
            "source `{}` of feature view `{}`",
            w.source.name, w.view.name
        );
        let source = store
            .open_parquet(w.history()?, Some(&columns), &what)
            .await?;
        for (feature, _) in &w.features {
            let declared = w
                .view
                .schema
                .iter()
                .find(|f| &f.name == feature)
                .map(|f| f.dtype);
            let found = source
                .schema
                .field_with_name(feature)
                .map(|f| f.data_type().clone());
            if let (Some(declared), Ok(found)) = (declared, found) {
                if !holds(declared, &found) {
                    return Err(FeatureStoreError::FailedPrecondition(format!(
                        "{what}: column `{feature}` is {found}, but the view declares {}",
                        declared.as_str()
                    )));
                }
            }
        }
        views.push(JoinView {
            name: w.view.name.clone(),
            join_keys: w.keys.clone(),
            ttl_nanos: (w.view.ttl_nanos > 0).then_some(w.view.ttl_nanos),
            timestamp_field: w.source.timestamp_field.clone(),
            created_field: w.source.created_timestamp_column.clone(),
            filter_by_created,
            features: w.features.clone(),
            batches: vec![RecordBatch::new_empty(source.schema.clone())],
        });
        sources.push(source);
    }
    let estimated: u64 = sources.iter().map(|s| s.estimated_bytes()).sum();
    let (schema, ts) = (entity_schema.clone(), timestamp_column.to_owned());
    let rt = tokio::runtime::Handle::current();
    if estimated.saturating_mul(INDEX_FACTOR) <= budget.memory_bytes {
        return tokio::task::spawn_blocking(move || {
            for (view, source) in views.iter_mut().zip(&sources) {
                source.read_blocking(&rt, |b| {
                    view.batches.push(b);
                    Ok(())
                })?;
                if view.batches.len() > 1 {
                    view.batches.remove(0);
                }
            }
            let join = Join::prepare(&schema, &ts, &views).map_err(join_error)?;
            Ok(Prepared::Memory(std::sync::Arc::new(join)))
        })
        .await
        .map_err(|e| FeatureStoreError::Internal(format!("preparing the join: {e}")))?;
    }
    let parts: Vec<usize> = sources
        .iter()
        .map(|s| partitions_for(s.estimated_bytes(), budget.memory_bytes))
        .collect();
    tracing::info!(
        estimated_bytes = estimated,
        budget = budget.memory_bytes,
        ?parts,
        "the views' history exceeds the join's memory: joining in partitions on disk"
    );
    let dir = budget.spill_dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut join =
            SpillJoin::prepare(&schema, &ts, &views, &parts, &dir).map_err(join_error)?;
        for (i, source) in sources.iter().enumerate() {
            source.read_blocking(&rt, |b| join.add_source(i, &b).map_err(join_error))?;
        }
        Ok(Prepared::Spill(Box::new(join)))
    })
    .await
    .map_err(|e| FeatureStoreError::Internal(format!("preparing the join: {e}")))?
}

/// A join error as the caller should see it: the entity table's faults are the
/// caller's (INVALID_ARGUMENT); a source's are its data's (FAILED_PRECONDITION).
pub fn join_error(e: JoinError) -> FeatureStoreError {
    let msg = e.to_string();
    match &e {
        JoinError::MissingColumn { table, .. }
        | JoinError::WrongType { table, .. }
        | JoinError::OutOfRange { table, .. } => {
            if table == "the entity table" {
                FeatureStoreError::InvalidArgument(msg)
            } else {
                FeatureStoreError::FailedPrecondition(msg)
            }
        }
        JoinError::DuplicateColumn(_) => FeatureStoreError::InvalidArgument(msg),
        JoinError::Arrow(_) => FeatureStoreError::Internal(msg),
        // Its message holds the server's paths: for the log, not for the caller.
        JoinError::Spill(_) => {
            tracing::error!(error = %msg, "a spilled join failed");
            FeatureStoreError::Unavailable(
                "the views did not fit in the join's memory, and spilling the join to disk \
                 failed: the feature store's log says why (a full or missing spill directory?)"
                    .into(),
            )
        }
    }
}
