//! The prediction log over real gRPC and the bus: every answered request of a run is on it
//! exactly once with its tensors; the same on tansu in `kafka`.

use std::time::Duration;

use mlops_proto::events::{topics, v1 as ev};
use mlops_proto::inference::v1 as dpb;
use mlops_tests::{http_get, Bus};

use crate::deployments::{deployments, sandbox};
use crate::inference::{f32s, fixture, oip, request, upload};

/// A consumer group of its own on the prediction log, from its oldest retained event.
async fn predictions(sb: &mlops_tests::Sandbox) -> Box<dyn mlops_events::Subscription> {
    let group = format!("it-{}", uuid::Uuid::new_v4().simple());
    sb.bus
        .subscribe(&group, &[topics::PREDICTIONS])
        .await
        .unwrap()
}

/// The predictions an event of the log carries: the service publishes `PredictionsLogged`.
fn logged(delivery: &mlops_events::Delivery) -> Vec<ev::PredictionLogged> {
    let batch: ev::PredictionsLogged = delivery.envelope.decode().expect("a PredictionsLogged");
    assert!(!batch.predictions.is_empty(), "an event holds predictions");
    batch.predictions
}

/// Every answered request of a run is on the prediction log exactly once, with its inputs,
/// outputs, version and latency; refused requests are not. Ids the caller did not give are
/// made by the service and returned in the response.
pub(crate) async fn every_prediction_is_logged_once(bus: Bus) {
    let sb = sandbox(bus).await;
    let name = "logged";
    let f = fixture("logreg");
    upload(&sb, name, &f.onnx).await;
    let addr = sb.addresses("inference").api;
    let mut d = deployments(addr).await;
    let dep = d
        .deploy(dpb::DeployRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    let mut sub = predictions(&sb).await;
    let mut c = oip(addr).await;
    let mut ids = std::collections::HashMap::new();
    for i in 0..150usize {
        let rows = 1 + i % 3;
        let mut req = request(name, &f, 0..rows);
        req.id = if i % 2 == 0 {
            format!("req-{i}")
        } else {
            String::new()
        };
        let r = c.model_infer(req.clone()).await.unwrap().into_inner();
        if !req.id.is_empty() {
            assert_eq!(r.id, req.id, "the caller's id is echoed");
        }
        assert!(!r.id.is_empty(), "a made id is returned");
        assert!(ids.insert(r.id, rows).is_none(), "ids are unique");
        // A refused request is not a prediction.
        let mut bad = request(name, &f, 0..1);
        bad.inputs[0].name = "wrong".into();
        c.model_infer(bad).await.unwrap_err();
    }
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_until = None;
    loop {
        let wait = quiet_until.unwrap_or(deadline);
        let Ok(next) = tokio::time::timeout_at(wait, sub.next()).await else {
            assert!(
                quiet_until.is_some(),
                "{} of {} predictions logged",
                seen.len(),
                ids.len()
            );
            break;
        };
        let delivery = next.expect("the bus delivers");
        sub.commit(&delivery).await.unwrap();
        if delivery.envelope.key != dep.model_id {
            continue; // another test's, on a shared broker
        }
        assert_eq!(delivery.envelope.subject, format!("{name}/1"));
        for p in logged(&delivery) {
            let rows = *ids
                .get(&p.request_id)
                .unwrap_or_else(|| panic!("unknown id {:?}", p.request_id));
            assert_eq!((p.deployment.as_str(), p.version), (name, 1));
            assert_eq!(p.variant, "stable");
            assert_eq!(p.model_id, dep.model_id);
            assert_eq!(
                delivery.envelope.key, dep.model_id,
                "keyed by the model's id"
            );
            assert!(p.latency_us > 0 && p.time_unix_nano > 0 && !p.replica.is_empty());
            assert_eq!(p.inputs.len(), 1);
            let input = &p.inputs[0];
            assert_eq!(
                (input.name.as_str(), input.datatype.as_str()),
                ("input", "FP32")
            );
            assert_eq!(input.shape, vec![rows as i64, 30]);
            let (_, want) = f.floats("input", rows);
            assert_eq!(f32s(&input.raw).len(), want.len());
            let names: Vec<&str> = p.outputs.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(names, ["label", "probabilities"]);
            let probabilities = f32s(&p.outputs[1].raw);
            let expected = f.output_rows("probabilities", 0..rows);
            assert!(probabilities
                .iter()
                .zip(&expected)
                .all(|(g, w)| (g - w).abs() < 1e-5));
            *seen.entry(p.request_id).or_default() += 1;
        }
        if seen.len() == ids.len() && quiet_until.is_none() {
            // Everything arrived; anything more in the next moment would be a duplicate.
            quiet_until = Some(tokio::time::Instant::now() + Duration::from_millis(500));
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "logged more than once: {twice:?}");
    assert_eq!(seen.len(), ids.len());
    // The counters are the process's (other tests' services share them): they are there.
    let (_, metrics) = http_get(sb.addresses("inference").admin, "/metrics")
        .await
        .unwrap();
    for family in [
        "mlops_inference_predictions_logged_total ",
        "mlops_inference_prediction_log_dropped_total ",
    ] {
        assert!(
            metrics.contains(family),
            "missing {family} in
{metrics}"
        );
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prediction_is_logged_once_with_its_tensors() {
    every_prediction_is_logged_once(Bus::InProcess).await;
}

/// A model's `prediction_log_sample` sets its own share over the service's: a deployment
/// logging none is absent from the log (and gets no made request ids) while another logs
/// every prediction, until a redeploy turns it on. A share outside 0 to 1 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_logs_its_own_share_of_predictions() {
    let sb = sandbox(Bus::InProcess).await;
    let f = fixture("logreg");
    let addr = sb.addresses("inference").api;
    let mut d = deployments(addr).await;
    let deploy = |name: &str, share: Option<&str>| dpb::DeployRequest {
        name: name.into(),
        parameters: share
            .map(|s| ("prediction_log_sample".to_owned(), s.to_owned()))
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let mut ids = std::collections::HashMap::new();
    for (name, share) in [("quiet", Some("0")), ("loud", None)] {
        upload(&sb, name, &f.onnx).await;
        let dep = d.deploy(deploy(name, share)).await.unwrap().into_inner();
        ids.insert(name, dep.deployment.unwrap().model_id);
    }
    let err = d.deploy(deploy("quiet", Some("1.5"))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("prediction_log_sample") && err.message().contains("from 0 to 1"),
        "{}",
        err.message()
    );

    let mut sub = predictions(&sb).await;
    let mut c = oip(addr).await;
    // The quiet model's requests first: one buffer, one publisher, so were any logged they
    // would come before the loud model's.
    for name in ["quiet", "loud"] {
        for _ in 0..10 {
            let mut req = request(name, &f, 0..1);
            req.id = String::new();
            let r = c.model_infer(req).await.unwrap();
            assert_eq!(
                r.into_inner().id.is_empty(),
                name == "quiet",
                "an id is made only when the prediction is logged"
            );
        }
    }
    /// The model ids of the next event's predictions.
    async fn next_models(sub: &mut Box<dyn mlops_events::Subscription>) -> Vec<String> {
        let delivery = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a prediction within 30 s")
            .unwrap();
        logged(&delivery).into_iter().map(|p| p.model_id).collect()
    }
    let mut loud = 0;
    while loud < 10 {
        for model in next_models(&mut sub).await {
            assert_eq!(model, ids["loud"], "only the loud model is logged");
            loud += 1;
        }
    }
    assert_eq!(loud, 10, "each of the loud model's predictions once");
    d.deploy(deploy("quiet", Some("1"))).await.unwrap();
    c.model_infer(request("quiet", &f, 0..1)).await.unwrap();
    assert_eq!(
        next_models(&mut sub).await,
        [ids["quiet"].clone()],
        "logged once turned on"
    );
    sb.stop().await.unwrap();
}
