//! Feast's own serving API, `feast.serving.ServingService`, on the feature store's gRPC
//! port: `GetOnlineFeatures` answered from the online store exactly as ours is (the same
//! values, statuses and event times, in Feast's messages), so Feast's gRPC clients work
//! unchanged; `GetFeastServingInfo` says which server answers.

use mlops_proto::feast::serving as fs;
use mlops_proto::feast::serving::serving_service_server::ServingService;
use mlops_proto::feast::types as ft;
use mlops_proto::featurestore::v1 as pb;
use mlops_runtime::auth::{Role, RoleTable};
use tonic::{Request, Response, Status};

use crate::service::FeatureStoreApi;

/// The role each RPC needs.
pub const ROLES: RoleTable = &[
    ("GetFeastServingInfo", Role::Reader),
    ("GetOnlineFeatures", Role::Reader),
];

/// Feast's API over ours.
#[derive(Clone)]
pub struct FeastApi {
    api: FeatureStoreApi,
}

impl FeastApi {
    /// Feast's API answered by `api`.
    pub fn new(api: FeatureStoreApi) -> Self {
        FeastApi { api }
    }
}

/// A Feast value as ours; `Err` names a kind the online store's keys cannot be.
fn from_feast(v: &ft::Value) -> Result<pb::Value, Status> {
    use ft::value::Val;
    use pb::value::Kind;
    let kind = match &v.val {
        None | Some(Val::NullVal(_)) => None,
        Some(Val::Int64Val(i)) => Some(Kind::Int64Value(*i)),
        Some(Val::Int32Val(i)) => Some(Kind::Int32Value(*i)),
        Some(Val::StringVal(s)) => Some(Kind::StringValue(s.clone())),
        Some(Val::DoubleVal(d)) => Some(Kind::DoubleValue(*d)),
        Some(Val::FloatVal(f)) => Some(Kind::FloatValue(*f)),
        Some(Val::BoolVal(b)) => Some(Kind::BoolValue(*b)),
        Some(Val::BytesVal(b)) => Some(Kind::BytesValue(b.clone().into())),
        Some(Val::UnixTimestampVal(s)) => {
            Some(Kind::UnixTimestampNanos(s.saturating_mul(1_000_000_000)))
        }
        Some(_) => {
            return Err(Status::invalid_argument(
                "an entity key is an int64, int32 or string value",
            ))
        }
    };
    Ok(pb::Value { kind })
}

/// Our value as Feast's (unset for null, as Feast answers a missing value).
fn to_feast(v: pb::Value) -> ft::Value {
    use ft::value::Val;
    use pb::value::Kind;
    let val = v.kind.map(|k| match k {
        Kind::Int64Value(i) => Val::Int64Val(i),
        Kind::Int32Value(i) => Val::Int32Val(i),
        Kind::DoubleValue(d) => Val::DoubleVal(d),
        Kind::FloatValue(f) => Val::FloatVal(f),
        Kind::StringValue(s) => Val::StringVal(s),
        Kind::BytesValue(b) => Val::BytesVal(b.to_vec()),
        Kind::BoolValue(b) => Val::BoolVal(b),
        // Feast's timestamps are seconds.
        Kind::UnixTimestampNanos(n) => Val::UnixTimestampVal(n.div_euclid(1_000_000_000)),
    });
    ft::Value { val }
}

#[tonic::async_trait]
impl ServingService for FeastApi {
    async fn get_feast_serving_info(
        &self,
        _req: Request<fs::GetFeastServingInfoRequest>,
    ) -> Result<Response<fs::GetFeastServingInfoResponse>, Status> {
        Ok(Response::new(fs::GetFeastServingInfoResponse {
            version: format!("mlops-feature-store {}", env!("CARGO_PKG_VERSION")),
        }))
    }

    async fn get_online_features(
        &self,
        req: Request<fs::GetOnlineFeaturesRequest>,
    ) -> Result<Response<fs::GetOnlineFeaturesResponse>, Status> {
        let req = req.into_inner();
        if !req.request_context.is_empty() {
            return Err(Status::invalid_argument(
                "request_context is for on-demand feature views, which this feature store does not have",
            ));
        }
        let (features, feature_service) = match req.kind {
            Some(fs::get_online_features_request::Kind::Features(list)) => {
                (list.val, String::new())
            }
            Some(fs::get_online_features_request::Kind::FeatureService(s)) => (Vec::new(), s),
            None => {
                return Err(Status::invalid_argument(
                    "name the features (`view:feature`) or a feature service",
                ))
            }
        };
        let mut entities = std::collections::HashMap::with_capacity(req.entities.len());
        for (name, column) in req.entities {
            let values = column
                .val
                .iter()
                .map(from_feast)
                .collect::<Result<Vec<_>, _>>()?;
            entities.insert(name, pb::Values { values });
        }
        let ours = pb::GetOnlineFeaturesRequest {
            features,
            feature_service,
            full_feature_names: req.full_feature_names,
            entities,
        };
        let answer = self.api.online_features(ours).await?;
        let results = answer
            .results
            .into_iter()
            .map(|v| fs::get_online_features_response::FeatureVector {
                values: v.values.into_iter().map(to_feast).collect(),
                // The statuses share Feast's numbers.
                statuses: v.statuses,
                event_timestamps: v.event_timestamps,
            })
            .collect();
        Ok(Response::new(fs::GetOnlineFeaturesResponse {
            metadata: Some(fs::GetOnlineFeaturesResponseMetadata {
                feature_names: Some(fs::FeatureList {
                    val: answer.feature_names,
                }),
                feature_view_metadata: Vec::new(),
            }),
            results,
            status: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::feast::FILE_DESCRIPTOR_SET,
            mlops_proto::feast::serving::serving_service_server::SERVICE_NAME,
            ROLES,
        );
    }

    #[test]
    fn statuses_share_feasts_numbers() {
        for (ours, feast) in [
            (pb::FieldStatus::Invalid, fs::FieldStatus::Invalid),
            (pb::FieldStatus::Present, fs::FieldStatus::Present),
            (pb::FieldStatus::NullValue, fs::FieldStatus::NullValue),
            (pb::FieldStatus::NotFound, fs::FieldStatus::NotFound),
            (
                pb::FieldStatus::OutsideMaxAge,
                fs::FieldStatus::OutsideMaxAge,
            ),
        ] {
            assert_eq!(ours as i32, feast as i32);
        }
    }

    #[test]
    fn values_convert_both_ways() {
        use ft::value::Val;
        let v = ft::Value {
            val: Some(Val::Int64Val(1001)),
        };
        assert_eq!(to_feast(from_feast(&v).unwrap()), v);
        let s = ft::Value {
            val: Some(Val::StringVal("a".into())),
        };
        assert_eq!(to_feast(from_feast(&s).unwrap()), s);
        assert_eq!(to_feast(pb::Value { kind: None }), ft::Value { val: None });
        let list = ft::Value {
            val: Some(Val::Int64ListVal(ft::Int64List { val: vec![1] })),
        };
        assert_eq!(
            from_feast(&list).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
