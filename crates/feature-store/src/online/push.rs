//! Push (Feast's): rows the caller sends, written into the online values of every view
//! whose source is the push source (the materialization's monotonic rule, one transaction
//! per view), and, when asked, appended to the push source's batch source as a Parquet file.

use arrow_array::RecordBatch;
use mlops_proto::events::v1 as events;

use super::materialize::{envelope, newest_rows};
use super::OnlineStore;
use crate::defs::{Definitions, SourceKind, ValueType};
use crate::error::{FeatureStoreError, Result};
use crate::offline::historical::{holds, wanted_view};

/// One view's share of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The view.
    pub view: String,
    /// Rows with a key and a time.
    pub rows: i64,
    /// Keys whose online value they replaced.
    pub keys_written: i64,
}

impl OnlineStore {
    /// Pushes `batches` to the online values of the views of `push_source` (`online`) and
    /// to its batch source (`offline`); returns each view's share and the file written.
    pub async fn push(
        &self,
        defs: &Definitions,
        push_source: &str,
        batches: &[RecordBatch],
        online: bool,
        offline: bool,
    ) -> Result<(Vec<Pushed>, Option<String>)> {
        let invalid = FeatureStoreError::InvalidArgument;
        let source = defs.sources.get(push_source).ok_or_else(|| {
            FeatureStoreError::NotFound(format!("source `{push_source}` is not defined"))
        })?;
        let SourceKind::Push { batch_source } = &source.kind else {
            return Err(invalid(format!(
                "source `{push_source}` is not a push source"
            )));
        };
        let views: Vec<_> = defs
            .feature_views
            .values()
            .filter(|v| v.source == source.name)
            .collect();
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Err(invalid(
                "no rows: the push carries an Arrow IPC stream with its schema and rows".into(),
            ));
        };
        // Every column every view needs, of the declared types, before anything is written.
        let need = |name: &str, what: &str| {
            schema
                .field_with_name(name)
                .map_err(|_| invalid(format!("the pushed rows have no column `{name}` ({what})")))
        };
        let ts = need(&source.timestamp_field, "the source's timestamp field")?;
        if !matches!(ts.data_type(), arrow_schema::DataType::Timestamp(_, _)) {
            return Err(invalid(format!(
                "column `{}` is {}, not a timestamp",
                ts.name(),
                ts.data_type()
            )));
        }
        for view in &views {
            for e in &view.entities {
                for k in &defs.entities[e].join_keys {
                    let f = need(&k.name, "a join key")?;
                    let ok = match k.value_type {
                        ValueType::String => holds(ValueType::String, f.data_type()),
                        _ => f.data_type().is_integer(),
                    };
                    if !ok {
                        return Err(invalid(format!(
                            "column `{}` is {}, but entity `{e}`'s key type is {}",
                            k.name,
                            f.data_type(),
                            k.value_type.as_str()
                        )));
                    }
                }
            }
            for feature in &view.schema {
                let f = need(&feature.name, &format!("a feature of view `{}`", view.name))?;
                if !holds(feature.dtype, f.data_type()) {
                    return Err(invalid(format!(
                        "column `{}` is {}, but view `{}` declares {}",
                        feature.name,
                        f.data_type(),
                        view.name,
                        feature.dtype.as_str()
                    )));
                }
            }
        }
        let mut file = None;
        if offline {
            let Some(batch_source) = batch_source else {
                return Err(FeatureStoreError::FailedPrecondition(format!(
                    "push source `{push_source}` has no batch source to append to"
                )));
            };
            let SourceKind::Parquet { path } = &defs.sources[batch_source].kind else {
                return Err(FeatureStoreError::Internal(format!(
                    "batch source `{batch_source}` is not a parquet source"
                )));
            };
            // Files of a directory are read by name: this one sorts after earlier pushes.
            let name = format!(
                "{}/push-{:020}-{}.parquet",
                path.trim_end_matches('/'),
                mlops_storage::now_millis(),
                uuid::Uuid::new_v4().simple()
            );
            self.offline.write(&name, &schema, batches).await?;
            file = Some(name);
        }
        let mut out = Vec::with_capacity(views.len());
        if online {
            for view in views.into_iter().filter(|v| v.online) {
                let keys: Vec<String> = wanted_view(defs, view)?
                    .keys
                    .into_iter()
                    .map(|k| k.name)
                    .collect();
                let picked = newest_rows(
                    view,
                    &keys,
                    &source.timestamp_field,
                    source.created_timestamp_column.as_deref(),
                    batches,
                    (i64::MIN, i64::MAX),
                )
                .map_err(invalid)?;
                let (rows, newest) = (picked.rows, picked.newest);
                let keys_written = self
                    .write(&view.name, &picked.writes, |keys_written| {
                        let event = events::FeaturesPushed {
                            name: view.name.clone(),
                            push_source: push_source.to_owned(),
                            rows,
                            keys_written,
                            newest_event_nanos: newest.unwrap_or(0),
                        };
                        (None, envelope(&view.name, &event))
                    })
                    .await?;
                if let Some(newest) = newest {
                    let gauge = self.metrics.newest_event.with_label_values(&[&view.name]);
                    gauge.set(gauge.get().max(newest.div_euclid(1_000_000_000)));
                }
                self.invalidate(&view.name);
                out.push(Pushed {
                    view: view.name.clone(),
                    rows,
                    keys_written,
                });
            }
        }
        Ok((out, file))
    }
}
