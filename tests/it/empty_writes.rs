//! A write with an empty list (no datasets, metrics, outputs, tags or params) is still
//! a write: it needs a writer's credential and a run or model that exists, so the
//! MLflow gateway can pass such calls on instead of answering them itself.

use mlops_proto::tracking::v1 as pb;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_tests::{Database, Sandbox};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::{experiment, on_both_backends, run, tracking_on, Client};

/// Every empty write on `run_id`, and on the logged model `model_id`.
async fn empty_writes(c: &mut Client, run_id: &str, model_id: &str) -> Vec<Result<(), Status>> {
    vec![
        c.log_inputs(pb::LogInputsRequest {
            models: vec![],
            run_id: run_id.into(),
            datasets: vec![],
        })
        .await
        .map(drop),
        c.log_batch(pb::LogBatchRequest {
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .map(drop),
        c.log_outputs(pb::LogOutputsRequest {
            run_id: run_id.into(),
            models: vec![],
        })
        .await
        .map(drop),
        c.set_logged_model_tags(pb::SetLoggedModelTagsRequest {
            model_id: model_id.into(),
            tags: vec![],
        })
        .await
        .map(drop),
        c.log_logged_model_params(pb::LogLoggedModelParamsRequest {
            model_id: model_id.into(),
            params: vec![],
        })
        .await
        .map(drop),
    ]
}

/// A run and a logged model in a new experiment.
async fn targets(c: &mut Client) -> (String, String) {
    let exp = experiment(c, "empty-writes").await;
    let run_id = run(c, &exp).await;
    let model_id = c
        .create_logged_model(pb::CreateLoggedModelRequest {
            experiment_id: exp,
            name: "m".into(),
            ..Default::default()
        })
        .await
        .expect("create logged model")
        .into_inner()
        .model
        .map(|m| m.model_id)
        .expect("a model id");
    (run_id, model_id)
}

fn codes(results: &[Result<(), Status>]) -> Vec<Code> {
    results
        .iter()
        .map(|r| r.as_ref().err().map_or(Code::Ok, Status::code))
        .collect()
}

async fn empty_writes_need_a_target_that_exists(db: Database) {
    let (sb, mut c) = tracking_on(db).await;
    let (run_id, model_id) = targets(&mut c).await;

    let missing_run = uuid::Uuid::new_v4().simple().to_string();
    let missing_model = format!("m-{}", uuid::Uuid::new_v4().simple());
    let answers = empty_writes(&mut c, &missing_run, &missing_model).await;
    assert_eq!(codes(&answers), vec![Code::NotFound; 5], "{answers:?}");

    let answers = empty_writes(&mut c, &run_id, &model_id).await;
    assert_eq!(codes(&answers), vec![Code::Ok; 5], "{answers:?}");

    // A deleted run takes no writes, empty or not.
    c.delete_run(pb::DeleteRunRequest {
        run_id: run_id.clone(),
    })
    .await
    .expect("delete run");
    let answers = empty_writes(&mut c, &run_id, &model_id).await;
    assert_eq!(
        codes(&answers[..3]),
        vec![Code::FailedPrecondition; 3],
        "{answers:?}"
    );
    sb.stop().await.expect("sandbox stops");
}

on_both_backends!(empty_writes_need_a_target_that_exists);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_writes_need_a_writers_credential() {
    let sb = Sandbox::builder()
        .tracking_with(|c| {
            c.server.auth_tokens = "read-tok:reader,write-tok:writer".parse().expect("tokens")
        })
        .start()
        .await
        .expect("sandbox starts");
    let channel = Channel::from_shared(format!("http://{}", sb.tracking().grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let with_token = |token: Option<&str>| {
        let header: Option<tonic::metadata::AsciiMetadataValue> =
            token.map(|t| format!("Bearer {t}").parse().expect("header"));
        TrackingServiceClient::with_interceptor(
            channel.clone(),
            move |mut req: tonic::Request<()>| {
                if let Some(h) = &header {
                    req.metadata_mut().insert("authorization", h.clone());
                }
                Ok(req)
            },
        )
    };
    let mut writer = with_token(Some("write-tok"));
    let exp = writer
        .create_experiment(pb::CreateExperimentRequest {
            name: format!("empty-auth-{}", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        })
        .await
        .expect("create experiment")
        .into_inner()
        .experiment_id;
    let run_id = writer
        .create_run(pb::CreateRunRequest {
            experiment_id: exp.clone(),
            ..Default::default()
        })
        .await
        .expect("create run")
        .into_inner()
        .run
        .and_then(|r| r.info)
        .map(|i| i.run_id)
        .expect("a run id");

    for (token, want) in [
        (None, Code::Unauthenticated),
        (Some("guess"), Code::Unauthenticated),
        (Some("read-tok"), Code::PermissionDenied),
        (Some("write-tok"), Code::Ok),
    ] {
        let mut c = with_token(token);
        let got = c
            .log_inputs(pb::LogInputsRequest {
                models: vec![],
                run_id: run_id.clone(),
                datasets: vec![],
            })
            .await
            .map(drop);
        assert_eq!(
            got.as_ref().err().map_or(Code::Ok, Status::code),
            want,
            "{token:?}: {got:?}"
        );
        let got = c
            .log_batch(pb::LogBatchRequest {
                run_id: run_id.clone(),
                ..Default::default()
            })
            .await
            .map(drop);
        assert_eq!(
            got.as_ref().err().map_or(Code::Ok, Status::code),
            want,
            "{token:?}: {got:?}"
        );
    }
    sb.stop().await.expect("sandbox stops");
}
