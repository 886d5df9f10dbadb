//! `GetOnlineFeatures`: the newest value of each requested feature for each entity row,
//! with Feast's statuses, from the cached online rows.

use mlops_proto::featurestore::v1 as pb;

use super::value::{encode_key, key_part_of, KeyPart};
use super::OnlineStore;
use crate::defs::{Definitions, ValueType};
use crate::error::{FeatureStoreError, Result};
use crate::offline::historical;

/// Nanoseconds since the epoch as a protobuf timestamp.
pub(crate) fn timestamp(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

impl OnlineStore {
    /// Answers `req` against `defs`, enforcing TTLs against `now` (nanoseconds).
    pub async fn get(
        &self,
        defs: &Definitions,
        req: &pb::GetOnlineFeaturesRequest,
        now: i64,
    ) -> Result<pb::GetOnlineFeaturesResponse> {
        let invalid = FeatureStoreError::InvalidArgument;
        let wanted = historical::resolve(
            defs,
            &req.features,
            &req.feature_service,
            req.full_feature_names,
        )?;
        let rows = match req.entities.values().next() {
            Some(v) => v.values.len(),
            None => {
                return Err(invalid(
                    "no entity rows: give each join key a column of values".into(),
                ))
            }
        };
        if let Some((k, v)) = req.entities.iter().find(|(_, v)| v.values.len() != rows) {
            return Err(invalid(format!(
                "every entity column must have the same length: `{k}` has {} values, another {rows}",
                v.values.len()
            )));
        }
        let mut names = Vec::new();
        let mut results = Vec::new();
        // The join keys first, echoed, in the order the views need them.
        let mut key_names: Vec<(String, ValueType)> = Vec::new();
        for w in &wanted {
            for e in &w.view.entities {
                let entity = defs
                    .entities
                    .get(e)
                    .ok_or_else(|| FeatureStoreError::Internal(format!("entity `{e}` is gone")))?;
                for k in &entity.join_keys {
                    if !key_names.iter().any(|(n, _)| *n == k.name) {
                        key_names.push((k.name.clone(), k.value_type));
                    }
                }
            }
        }
        for (name, _) in &key_names {
            let column = req.entities.get(name).ok_or_else(|| {
                invalid(format!(
                    "the entity rows have no column `{name}`, a join key of the features asked for"
                ))
            })?;
            names.push(name.clone());
            results.push(pb::FeatureVector {
                values: column.values.clone(),
                statuses: vec![pb::FieldStatus::Present as i32; rows],
                event_timestamps: vec![prost_types::Timestamp::default(); rows],
            });
        }
        for w in &wanted {
            // Each row's key for this view.
            let mut keys: Vec<Option<String>> = Vec::with_capacity(rows);
            let mut columns = Vec::new();
            for e in &w.view.entities {
                for k in &defs.entities[e].join_keys {
                    columns.push((&req.entities[&k.name], k.value_type, &k.name));
                }
            }
            for i in 0..rows {
                let mut parts: Vec<KeyPart> = Vec::with_capacity(columns.len());
                let mut null = false;
                for (column, declared, name) in &columns {
                    match key_part_of(&column.values[i], *declared)
                        .map_err(|m| invalid(format!("entity row {i}, `{name}`: {m}")))?
                    {
                        Some(p) => parts.push(p),
                        None => null = true,
                    }
                }
                keys.push((!null).then(|| encode_key(&parts)));
            }
            let stored = self.rows(&w.view.name).await?;
            let ttl = w.view.ttl_nanos;
            for (feature, out) in &w.features {
                let mut vector = pb::FeatureVector {
                    values: Vec::with_capacity(rows),
                    statuses: Vec::with_capacity(rows),
                    event_timestamps: Vec::with_capacity(rows),
                };
                for key in &keys {
                    let found = key.as_ref().and_then(|k| stored.rows.get(k));
                    let (value, status, ts) = match found {
                        None => (None, pb::FieldStatus::NotFound, None),
                        Some(row) if ttl > 0 && now.saturating_sub(row.event_ts) > ttl => {
                            (None, pb::FieldStatus::OutsideMaxAge, Some(row.event_ts))
                        }
                        Some(row) => match row.values.get(feature.as_str()).cloned().flatten() {
                            Some(v) => (
                                Some(v.to_pb()),
                                pb::FieldStatus::Present,
                                Some(row.event_ts),
                            ),
                            None => (None, pb::FieldStatus::NullValue, Some(row.event_ts)),
                        },
                    };
                    vector.values.push(value.unwrap_or_default());
                    vector.statuses.push(status as i32);
                    vector
                        .event_timestamps
                        .push(ts.map(timestamp).unwrap_or_default());
                }
                names.push(out.clone());
                results.push(vector);
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(invalid(format!(
                "the answer would have two columns named `{dup}`: use full feature names (view__feature) or select fewer features"
            )));
        }
        Ok(pb::GetOnlineFeaturesResponse {
            feature_names: names,
            results,
        })
    }
}
