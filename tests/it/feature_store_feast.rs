//! Feast's own serving API (`feast.serving.ServingService`, vendored) on the feature
//! store's port, through the Rust stubs: the same values and statuses as ours, listed by
//! reflection, and the same clear errors.

use tonic::transport::Channel;
use tonic::Code;

use crate::feature_store_online::{materialize, now_nanos, start, write_sources};
use mlops_tests::Database;

/// Feast's own `ServingService` on the same port answers what ours does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feasts_serving_api_answers_like_ours() {
    use mlops_proto::feast::serving as fs;
    use mlops_proto::feast::serving::serving_service_client::ServingServiceClient;
    use mlops_proto::feast::types as ft;
    let (sb, mut c, _) = start(Database::Sqlite).await;
    let now = now_nanos();
    write_sources(&sb.dir().join("features"), now);
    materialize(&mut c, &[], None, now, false).await.unwrap();
    let addr = sb.addresses("feature-store").api;
    let listed = mlops_tests::listed_services(addr).await;
    assert!(
        listed.contains(&"feast.serving.ServingService".to_owned()),
        "{listed:?}"
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut feast = ServingServiceClient::new(channel);
    let info = feast
        .get_feast_serving_info(fs::GetFeastServingInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.version.starts_with("mlops-feature-store"),
        "{}",
        info.version
    );
    let ids = |v: &[i64]| ft::RepeatedValue {
        val: v
            .iter()
            .map(|i| ft::Value {
                val: Some(ft::value::Val::Int64Val(*i)),
            })
            .collect(),
    };
    let r = feast
        .get_online_features(fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::Features(
                fs::FeatureList {
                    val: vec!["driver_stats:conv_rate".into(), "driver_stats:trips".into()],
                },
            )),
            entities: [("driver_id".to_owned(), ids(&[1, 2, 99]))].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.metadata.unwrap().feature_names.unwrap().val,
        ["driver_id", "conv_rate", "trips"]
    );
    assert_eq!(
        r.results[1]
            .values
            .iter()
            .map(|v| v.val.clone())
            .collect::<Vec<_>>(),
        [Some(ft::value::Val::DoubleVal(0.3)), None, None]
    );
    assert_eq!(
        r.results[1].statuses,
        [
            fs::FieldStatus::Present as i32,
            fs::FieldStatus::OutsideMaxAge as i32,
            fs::FieldStatus::NotFound as i32
        ]
    );
    assert_eq!(r.results[2].statuses[0], fs::FieldStatus::NullValue as i32);
    // A bad reference is the same clear status as on our API.
    let e = feast
        .get_online_features(fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::Features(
                fs::FeatureList {
                    val: vec!["driver_stats:nope".into()],
                },
            )),
            entities: [("driver_id".to_owned(), ids(&[1]))].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("has no feature `nope`"),
        "{}",
        e.message()
    );
    sb.stop().await.unwrap();
}
