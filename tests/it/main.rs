//! Integration tests over real gRPC, SQLite, PostgreSQL and a Kafka-protocol
//! broker, in one binary (one link on a two-core machine).

mod analysis;
mod artifacts_limits;
mod deployments;
mod empty_writes;
mod events;
mod fake_kubernetes;
mod feature_store;
mod feature_store_errors;
mod feature_store_feast;
mod feature_store_ingest;
mod feature_store_online;
mod feature_store_push;
mod inference;
mod inference_batching;
mod inference_rest;
mod kafka;
mod kit;
mod logged_models;
mod monitoring;
mod monitoring_capture;
mod monitoring_log;
mod monitoring_perf;
mod oip_grpc;
mod oip_http;
mod ops;
mod outbox;
mod prediction_log;
mod registry;
mod registry_begin;
mod registry_copies;
mod registry_gate;
mod registry_sources;
mod registry_uploads;
mod retraining;
mod retraining_cases;
mod retraining_k8s;
mod run_data;
mod search_limits;
mod search_terms;
mod telemetry;
mod tracking;
mod tracking_data;
mod traffic;

use mlops_proto::tracking::v1 as pb;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;

type Client = TrackingServiceClient<Channel>;

/// A sandbox with the tracking service on `db` and the in-process bus.
async fn tracking_on(db: Database) -> (Sandbox, Client) {
    let sb = Sandbox::builder()
        .database(db)
        .tracking()
        .start()
        .await
        .expect("sandbox starts");
    let c = sb.tracking_client().await;
    (sb, c)
}

/// Creates an experiment with a unique name and returns its id.
async fn experiment(c: &mut Client, prefix: &str) -> String {
    c.create_experiment(pb::CreateExperimentRequest {
        name: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    })
    .await
    .expect("create experiment")
    .into_inner()
    .experiment_id
}

/// Creates a run in `exp` and returns its id.
async fn run(c: &mut Client, exp: &str) -> String {
    c.create_run(pb::CreateRunRequest {
        experiment_id: exp.into(),
        ..Default::default()
    })
    .await
    .expect("create run")
    .into_inner()
    .run
    .and_then(|r| r.info)
    .map(|i| i.run_id)
    .expect("a run id")
}

/// A run with its data; panics when the call fails.
async fn get_run(c: &mut Client, run_id: &str) -> pb::Run {
    c.get_run(pb::GetRunRequest {
        run_id: run_id.into(),
    })
    .await
    .expect("get run")
    .into_inner()
    .run
    .expect("a run")
}

fn metric(key: &str, value: f64, step: i64) -> pb::Metric {
    pb::Metric {
        key: key.into(),
        value,
        timestamp: 1_700_000_000_000 + step,
        step,
        ..Default::default()
    }
}

fn param(key: &str, value: &str) -> pb::Param {
    pb::Param {
        key: key.into(),
        value: value.into(),
    }
}

fn tag(key: &str, value: &str) -> pb::Tag {
    pb::Tag {
        key: key.into(),
        value: value.into(),
    }
}

/// Runs each listed `async fn name(db: Database)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(mlops_tests::Database::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(mlops_tests::Database::Postgres).await
                }
            )*
        }
    };
}
