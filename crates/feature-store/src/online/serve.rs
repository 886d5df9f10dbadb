//! `GetOnlineFeatures`: the newest value of each requested feature for each entity row,
//! with Feast's statuses, from the cached online rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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

/// The most request plans kept (past it they are all dropped and built again).
const MAX_PLANS: usize = 1024;

/// What a feature list needs, resolved once per definitions: the views and features, the
/// join keys echoed first, and each view's key columns. A request with a plan does no
/// registry work: no reference resolution, no entity look-ups.
pub(crate) struct Plan {
    wanted: Vec<historical::Wanted>,
    /// The join keys echoed, in the order the views need them.
    key_names: Vec<(String, ValueType)>,
    /// Per wanted view: its key columns, in key order.
    view_keys: Vec<Vec<(String, ValueType)>>,
    /// Every output column's name, keys first.
    names: Vec<String>,
}

/// A feature list as a request gives it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PlanKey {
    features: Vec<String>,
    service: String,
    full_names: bool,
}

/// Plans of one definitions version: dropped when the definitions change (an apply here,
/// or another replica's through the broadcast events that drop the cached definitions).
#[derive(Default)]
pub(crate) struct Plans {
    defs: Option<std::sync::Weak<Definitions>>,
    plans: HashMap<PlanKey, Arc<Plan>>,
}

impl Plan {
    fn build(defs: &Definitions, req: &pb::GetOnlineFeaturesRequest) -> Result<Plan> {
        let wanted = historical::resolve(
            defs,
            &req.features,
            &req.feature_service,
            req.full_feature_names,
        )?;
        let mut key_names: Vec<(String, ValueType)> = Vec::new();
        let mut view_keys = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let mut keys = Vec::new();
            for e in &w.view.entities {
                let entity = defs
                    .entities
                    .get(e)
                    .ok_or_else(|| FeatureStoreError::Internal(format!("entity `{e}` is gone")))?;
                for k in &entity.join_keys {
                    if !key_names.iter().any(|(n, _)| *n == k.name) {
                        key_names.push((k.name.clone(), k.value_type));
                    }
                    keys.push((k.name.clone(), k.value_type));
                }
            }
            view_keys.push(keys);
        }
        let mut names: Vec<String> = key_names.iter().map(|(n, _)| n.clone()).collect();
        for w in &wanted {
            names.extend(w.features.iter().map(|(_, out)| out.clone()));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(FeatureStoreError::InvalidArgument(format!(
                "the answer would have two columns named `{dup}`: use full feature names (view__feature) or select fewer features"
            )));
        }
        Ok(Plan {
            wanted,
            key_names,
            view_keys,
            names,
        })
    }
}

impl Plans {
    /// The plan of `req`'s feature list under `defs`, built on first use; and whether it
    /// was built now.
    pub(crate) fn plan(
        cache: &std::sync::Mutex<Plans>,
        defs: &Arc<Definitions>,
        req: &pb::GetOnlineFeaturesRequest,
    ) -> Result<(Arc<Plan>, bool)> {
        let key = PlanKey {
            features: req.features.clone(),
            service: req.feature_service.clone(),
            full_names: req.full_feature_names,
        };
        let current = |plans: &Plans| {
            plans
                .defs
                .as_ref()
                .and_then(std::sync::Weak::upgrade)
                .is_some_and(|d| Arc::ptr_eq(&d, defs))
        };
        {
            let mut plans = cache.lock().unwrap_or_else(|p| p.into_inner());
            if !current(&plans) {
                plans.plans.clear();
                plans.defs = Some(Arc::downgrade(defs));
            } else if let Some(p) = plans.plans.get(&key) {
                return Ok((p.clone(), false));
            }
        }
        // built outside the lock; a race builds it twice, harmlessly
        let plan = Arc::new(Plan::build(defs, req)?);
        let mut plans = cache.lock().unwrap_or_else(|p| p.into_inner());
        if current(&plans) {
            if plans.plans.len() >= MAX_PLANS {
                plans.plans.clear();
            }
            plans.plans.insert(key, plan.clone());
        }
        Ok((plan, true))
    }
}

impl OnlineStore {
    /// Answers `req` against `defs`, enforcing TTLs against `now` (nanoseconds).
    pub async fn get(
        &self,
        defs: &Arc<Definitions>,
        req: &pb::GetOnlineFeaturesRequest,
        now: i64,
    ) -> Result<pb::GetOnlineFeaturesResponse> {
        let invalid = FeatureStoreError::InvalidArgument;
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
        let (plan, built) = Plans::plan(&self.plans, defs, req)?;
        if built {
            self.metrics.online_plans_built.inc();
        }
        let mut results = Vec::with_capacity(plan.names.len());
        // The join keys first, echoed, in the order the views need them.
        for (name, _) in &plan.key_names {
            let column = req.entities.get(name).ok_or_else(|| {
                invalid(format!(
                    "the entity rows have no column `{name}`, a join key of the features asked for"
                ))
            })?;
            results.push(pb::FeatureVector {
                values: column.values.clone(),
                statuses: vec![pb::FieldStatus::Present as i32; rows],
                event_timestamps: vec![prost_types::Timestamp::default(); rows],
            });
        }
        for (w, view_keys) in plan.wanted.iter().zip(&plan.view_keys) {
            // Each row's key for this view.
            let mut keys: Vec<Option<String>> = Vec::with_capacity(rows);
            let columns: Vec<(&pb::Values, ValueType, &String)> = view_keys
                .iter()
                .map(|(name, t)| (&req.entities[name], *t, name))
                .collect();
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
            for (feature, _) in &w.features {
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
                results.push(vector);
            }
        }
        Ok(pb::GetOnlineFeaturesResponse {
            feature_names: plan.names.clone(),
            results,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: &str = r#"
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
sources:
  - name: s
    type: push
feature_views:
  - name: v
    entities: [driver]
    source: s
    schema:
      - {name: a, dtype: float64}
      - {name: b, dtype: int64}
"#;

    fn req(features: &[&str]) -> pb::GetOnlineFeaturesRequest {
        pb::GetOnlineFeaturesRequest {
            features: features.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_feature_list_is_planned_once_per_definitions_version() {
        let cache = std::sync::Mutex::new(Plans::default());
        let defs = Arc::new(Definitions::from_yaml("f.yaml", DEFS).unwrap());
        let (first, built) = Plans::plan(&cache, &defs, &req(&["v:a", "v:b"])).unwrap();
        assert!(built);
        assert_eq!(first.names, ["driver_id", "a", "b"]);
        let (again, built) = Plans::plan(&cache, &defs, &req(&["v:a", "v:b"])).unwrap();
        assert!(
            !built && Arc::ptr_eq(&first, &again),
            "the same plan, not resolved again"
        );
        // another list is another plan
        let (_, built) = Plans::plan(&cache, &defs, &req(&["v:b"])).unwrap();
        assert!(built);
        // new definitions (an apply, here or on another replica): planned again, on them
        let changed = DEFS.replace("{name: b, dtype: int64}", "{name: c, dtype: int64}");
        let newer = Arc::new(Definitions::from_yaml("f.yaml", &changed).unwrap());
        let e = Plans::plan(&cache, &newer, &req(&["v:a", "v:b"]))
            .err()
            .unwrap();
        assert!(e.to_string().contains('b'), "{e}");
        let (_, built) = Plans::plan(&cache, &newer, &req(&["v:a", "v:c"])).unwrap();
        assert!(built);
        // a refused list is not kept: asked again, it is refused again
        assert!(Plans::plan(&cache, &newer, &req(&["v:nope"])).is_err());
        assert!(Plans::plan(&cache, &newer, &req(&["v:nope"])).is_err());
    }
}
