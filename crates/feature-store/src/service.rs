//! The gRPC front of the feature store.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use mlops_proto::featurestore::v1 as pb;
use mlops_proto::featurestore::v1::feature_store_service_server::FeatureStoreService;
use mlops_runtime::auth::{Role, RoleTable};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::defs::Definitions;
use crate::error::FeatureStoreError;
use crate::metrics::Metrics;
use crate::offline::files::OfflineStore;
use crate::offline::historical::{self, JoinBudget};
use crate::offline::ipc::Decoder;
use crate::online::serve::timestamp;
use crate::online::OnlineStore;
use crate::store::{Kind, Store, Stored};

mod query;
use query::Historical;

/// The role each RPC needs (a test checks the table against the contract).
pub const ROLES: RoleTable = &[
    ("ApplyDefinitions", Role::Writer),
    ("ListDefinitions", Role::Reader),
    ("GetDefinition", Role::Reader),
    ("GetHistoricalFeatures", Role::Reader),
    ("Materialize", Role::Writer),
    ("Push", Role::Writer),
    ("GetOnlineFeatures", Role::Reader),
];

type Answer<T> = std::result::Result<Response<T>, Status>;

/// The cached definitions and how many invalidations there have been: a read of the
/// store that an invalidation overtook must not be cached, or it would hide the change.
#[derive(Default)]
struct Cached {
    defs: Option<Arc<Definitions>>,
    generation: u64,
}

/// The API.
#[derive(Clone)]
pub struct FeatureStoreApi {
    store: Store,
    offline: OfflineStore,
    pub(crate) online: OnlineStore,
    chunk_bytes: usize,
    budget: JoinBudget,
    metrics: Metrics,
    /// The definitions, read once and kept until an apply here or an event from
    /// another replica says they changed.
    defs: Arc<std::sync::RwLock<Cached>>,
}

impl FeatureStoreApi {
    /// The API over `store` and `offline`, streaming tables in chunks of `chunk_bytes`.
    pub fn new(
        store: Store,
        offline: OfflineStore,
        online: OnlineStore,
        chunk_bytes: usize,
        budget: JoinBudget,
    ) -> Self {
        FeatureStoreApi {
            budget,
            store,
            offline,
            metrics: online.metrics.clone(),
            online,
            chunk_bytes,
            defs: Arc::default(),
        }
    }

    /// The current definitions (cached).
    pub(crate) async fn definitions(&self) -> Result<Arc<Definitions>, FeatureStoreError> {
        let generation = {
            let cached = self.defs.read().unwrap_or_else(|p| p.into_inner());
            if let Some(d) = cached.defs.as_ref() {
                return Ok(d.clone());
            }
            cached.generation
        };
        let d = Arc::new(self.store.definitions().await?);
        let mut cached = self.defs.write().unwrap_or_else(|p| p.into_inner());
        if cached.generation == generation {
            cached.defs = Some(d.clone());
        }
        Ok(d)
    }

    /// Forgets the cached definitions and the online rows of `view` (every view when
    /// `None`): an apply or a materialization here or on another replica.
    pub fn invalidate(&self, view: Option<&str>) {
        {
            let mut cached = self.defs.write().unwrap_or_else(|p| p.into_inner());
            cached.defs = None;
            cached.generation += 1;
        }
        match view {
            Some(v) => self.online.invalidate(v),
            None => self.online.invalidate_all(),
        }
    }
}

impl FeatureStoreApi {
    /// Online values, TTLs enforced against now (ours and Feast's API).
    pub async fn online_features(
        &self,
        req: pb::GetOnlineFeaturesRequest,
    ) -> Result<pb::GetOnlineFeaturesResponse, FeatureStoreError> {
        let defs = self.definitions().await?;
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or(i64::MAX);
        self.online.get(&defs, &req, now).await
    }
}

fn nanos_of(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(t.nanos))
}

fn kind_to_pb(k: Kind) -> pb::Kind {
    match k {
        Kind::Entity => pb::Kind::Entity,
        Kind::Source => pb::Kind::Source,
        Kind::FeatureView => pb::Kind::FeatureView,
        Kind::FeatureService => pb::Kind::FeatureService,
    }
}

fn kind_from_pb(k: i32) -> Result<Option<Kind>, Status> {
    match pb::Kind::try_from(k) {
        Ok(pb::Kind::Unspecified) => Ok(None),
        Ok(pb::Kind::Entity) => Ok(Some(Kind::Entity)),
        Ok(pb::Kind::Source) => Ok(Some(Kind::Source)),
        Ok(pb::Kind::FeatureView) => Ok(Some(Kind::FeatureView)),
        Ok(pb::Kind::FeatureService) => Ok(Some(Kind::FeatureService)),
        Err(_) => Err(Status::invalid_argument(format!("unknown kind {k}"))),
    }
}

fn refs(items: &[(Kind, String)]) -> Vec<pb::DefinitionRef> {
    items
        .iter()
        .map(|(k, n)| pb::DefinitionRef {
            kind: kind_to_pb(*k) as i32,
            name: n.clone(),
        })
        .collect()
}

fn definition(s: Stored) -> pb::Definition {
    pb::Definition {
        kind: kind_to_pb(s.kind) as i32,
        name: s.name,
        version: s.version,
        updated_at_ms: s.updated_at_ms,
        spec_json: s.spec,
    }
}

type HistoricalStream =
    Pin<Box<dyn Stream<Item = Result<pb::GetHistoricalFeaturesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FeatureStoreService for FeatureStoreApi {
    async fn apply_definitions(
        &self,
        req: Request<pb::ApplyDefinitionsRequest>,
    ) -> Answer<pb::ApplyDefinitionsResponse> {
        let req = req.into_inner();
        let file = if req.file_name.is_empty() {
            "the definition set"
        } else {
            req.file_name.as_str()
        };
        let defs = Definitions::from_yaml(file, &req.yaml)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let applied = self.store.apply(&defs, req.dry_run).await?;
        if !req.dry_run {
            self.invalidate(None);
            let m = &self.metrics;
            m.definition_version.set(applied.version);
            for (change, n) in [
                ("created", applied.created.len()),
                ("changed", applied.changed.len()),
                ("removed", applied.removed.len()),
            ] {
                m.definition_changes
                    .with_label_values(&[change])
                    .inc_by(n as u64);
            }
            tracing::info!(
                version = applied.version,
                created = applied.created.len(),
                changed = applied.changed.len(),
                removed = applied.removed.len(),
                "definitions applied"
            );
        }
        Ok(Response::new(pb::ApplyDefinitionsResponse {
            created: refs(&applied.created),
            changed: refs(&applied.changed),
            removed: refs(&applied.removed),
            version: applied.version,
        }))
    }

    async fn list_definitions(
        &self,
        req: Request<pb::ListDefinitionsRequest>,
    ) -> Answer<pb::ListDefinitionsResponse> {
        let kind = kind_from_pb(req.into_inner().kind)?;
        let (stored, version) = self.store.list(kind).await?;
        Ok(Response::new(pb::ListDefinitionsResponse {
            definitions: stored.into_iter().map(definition).collect(),
            version,
        }))
    }

    async fn get_definition(
        &self,
        req: Request<pb::GetDefinitionRequest>,
    ) -> Answer<pb::GetDefinitionResponse> {
        let req = req.into_inner();
        let Some(kind) = kind_from_pb(req.kind)? else {
            return Err(Status::invalid_argument(
                "say which kind: entity, source, feature view or feature service",
            ));
        };
        let (stored, _) = self.store.list(Some(kind)).await?;
        let found = stored
            .into_iter()
            .find(|s| s.name == req.name)
            .ok_or_else(|| {
                Status::not_found(format!("{} `{}` is not defined", kind.as_str(), req.name))
            })?;
        Ok(Response::new(pb::GetDefinitionResponse {
            definition: Some(definition(found)),
        }))
    }

    async fn materialize(
        &self,
        req: Request<pb::MaterializeRequest>,
    ) -> Answer<pb::MaterializeResponse> {
        let req = req.into_inner();
        let Some(end) = req.end.as_ref().map(nanos_of) else {
            return Err(Status::invalid_argument(
                "say up to when: `end` is required",
            ));
        };
        if req.incremental && req.start.is_some() {
            return Err(Status::invalid_argument(
                "an incremental run starts where the last one ended: give no `start`",
            ));
        }
        let defs = self.definitions().await?;
        let runs = self
            .online
            .materialize(
                &defs,
                &req.feature_views,
                req.start.as_ref().map(nanos_of),
                end,
                req.incremental,
            )
            .await?;
        Ok(Response::new(pb::MaterializeResponse {
            views: runs
                .into_iter()
                .map(|r| pb::MaterializedView {
                    name: r.view,
                    start: (r.start != i64::MIN).then(|| timestamp(r.start)),
                    end: Some(timestamp(r.end)),
                    rows: r.rows,
                    keys_written: r.keys_written,
                    newest_event: r.newest_event.map(timestamp),
                })
                .collect(),
        }))
    }

    async fn push(&self, req: Request<pb::PushRequest>) -> Answer<pb::PushResponse> {
        let req = req.into_inner();
        let (online, offline) = match pb::PushMode::try_from(req.to) {
            Ok(pb::PushMode::Unspecified | pb::PushMode::Online) => (true, false),
            Ok(pb::PushMode::Offline) => (false, true),
            Ok(pb::PushMode::OnlineAndOffline) => (true, true),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown push mode {}",
                    req.to
                )))
            }
        };
        let mut decoder = Decoder::new();
        let bad = |m: String| {
            Status::invalid_argument(format!(
                "the pushed rows are not a valid Arrow IPC stream: {m}"
            ))
        };
        let batches = decoder.push(req.arrow_ipc).map_err(bad)?;
        decoder.finish().map_err(bad)?;
        let defs = self.definitions().await?;
        let (views, file) = self
            .online
            .push(&defs, &req.push_source, &batches, online, offline)
            .await?;
        Ok(Response::new(pb::PushResponse {
            views: views
                .into_iter()
                .map(|p| pb::PushedView {
                    name: p.view,
                    rows: p.rows,
                    keys_written: p.keys_written,
                })
                .collect(),
            offline_file: file.unwrap_or_default(),
        }))
    }

    async fn get_online_features(
        &self,
        req: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Answer<pb::GetOnlineFeaturesResponse> {
        Ok(Response::new(self.online_features(req.into_inner()).await?))
    }

    type GetHistoricalFeaturesStream = HistoricalStream;

    async fn get_historical_features(
        &self,
        req: Request<Streaming<pb::GetHistoricalFeaturesRequest>>,
    ) -> Answer<Self::GetHistoricalFeaturesStream> {
        let mut input = req.into_inner();
        let query = match input.message().await? {
            Some(pb::GetHistoricalFeaturesRequest {
                part: Some(pb::get_historical_features_request::Part::Query(q)),
            }) => q,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be the query",
                ))
            }
        };
        let defs = self.definitions().await?;
        let wanted = historical::resolve(
            &defs,
            &query.features,
            &query.feature_service,
            query.full_feature_names,
        )?;
        let timestamp_column = if query.timestamp_column.is_empty() {
            "event_timestamp".to_owned()
        } else {
            query.timestamp_column.clone()
        };
        let (tx, rx) = mpsc::channel(4);
        let job = Historical {
            api: self.clone(),
            wanted,
            timestamp_column,
            filter_by_created: query.filter_by_created_timestamp,
            output: query.output_parquet.clone(),
            tx: tx.clone(),
        };
        let entity_parquet = query.entity_parquet.clone();
        let timer = self.metrics.historical_seconds.start_timer();
        tokio::spawn(async move {
            let result = if entity_parquet.is_empty() {
                job.read_stream(input).await
            } else {
                job.read_parquet(&entity_parquet).await
            };
            match result {
                Ok(()) => drop(timer),
                Err(e) => {
                    timer.stop_and_discard();
                    let _ = tx.send(Err(e.into())).await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[cfg(test)]
mod roles_tests {
    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::FILE_DESCRIPTOR_SET,
            mlops_proto::featurestore::v1::feature_store_service_server::SERVICE_NAME,
            super::ROLES,
        );
    }
}
