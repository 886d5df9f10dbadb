"""Feast's own gRPC client against the feature store: the stubs the `feast` package ships
(`feast.serving.ServingService`), unchanged, and Feast's `OnlineResponse` reading the answer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast.online_response import OnlineResponse
from feast.protos.feast.serving import ServingService_pb2 as sv
from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub
from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

DEFS = """
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
sources:
  - name: driver_source
    type: parquet
    path: driver_stats.parquet
feature_views:
  - name: driver_stats
    entities: [driver]
    ttl: 2h
    source: driver_source
    schema:
      - {name: conv_rate, dtype: float32}
      - {name: trips, dtype: int64}
feature_services:
  - name: driver_activity
    features: [driver_stats]
"""


@pytest.fixture(scope="module")
def stub(platform, tmp_path_factory):
    now = datetime.now(timezone.utc)
    root = platform.data / "features"
    root.mkdir(parents=True, exist_ok=True)
    # Driver 1: an old row and one 10 minutes ago (trips null); driver 2: 3 h ago, past the TTL.
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1, 1, 2], pa.int64()),
                "event_timestamp": pa.array(
                    [now - timedelta(hours=5), now - timedelta(minutes=10), now - timedelta(hours=3)],
                    pa.timestamp("us", tz="UTC"),
                ),
                "conv_rate": pa.array([0.25, 0.5, 0.75], pa.float32()),
                "trips": pa.array([1, None, 3], pa.int64()),
            }
        ),
        root / "driver_stats.parquet",
    )
    defs = tmp_path_factory.mktemp("defs") / "features.yaml"
    defs.write_text(DEFS)
    platform.mlops("features", "apply", "-f", str(defs))
    platform.mlops("features", "materialize", "--end", "now")
    channel = grpc.insecure_channel(platform.feature_store, options=[("grpc.enable_http_proxy", 0)])
    yield ServingServiceStub(channel)
    channel.close()


def ids(*values: int) -> RepeatedValue:
    return RepeatedValue(val=[Value(int64_val=v) for v in values])


def test_feast_serving_info(stub):
    info = stub.GetFeastServingInfo(sv.GetFeastServingInfoRequest(), timeout=10)
    assert info.version.startswith("mlops-feature-store")


def test_online_features_through_feasts_stubs(stub):
    req = sv.GetOnlineFeaturesRequest(
        features=sv.FeatureList(val=["driver_stats:conv_rate", "driver_stats:trips"]),
        entities={"driver_id": ids(1, 2, 3)},
    )
    resp = stub.GetOnlineFeatures(req, timeout=10)
    assert list(resp.metadata.feature_names.val) == ["driver_id", "conv_rate", "trips"]
    assert list(resp.results[1].statuses) == [sv.PRESENT, sv.OUTSIDE_MAX_AGE, sv.NOT_FOUND]
    assert list(resp.results[2].statuses) == [sv.NULL_VALUE, sv.OUTSIDE_MAX_AGE, sv.NOT_FOUND]
    assert resp.results[1].values[0].float_val == 0.5
    # Feast's own reading of the answer.
    d = OnlineResponse(resp).to_dict()
    assert d["driver_id"] == [1, 2, 3]
    assert d["conv_rate"] == [0.5, None, None]
    assert d["trips"] == [None, None, None]


def test_a_feature_service_with_full_names(stub):
    req = sv.GetOnlineFeaturesRequest(
        feature_service="driver_activity", entities={"driver_id": ids(1)}, full_feature_names=True
    )
    d = OnlineResponse(stub.GetOnlineFeatures(req, timeout=10)).to_dict()
    assert d == {"driver_id": [1], "driver_stats__conv_rate": [0.5], "driver_stats__trips": [None]}


def test_bad_requests_are_clear_statuses(stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.GetOnlineFeatures(
            sv.GetOnlineFeaturesRequest(
                features=sv.FeatureList(val=["driver_stats:nope"]), entities={"driver_id": ids(1)}
            ),
            timeout=10,
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no feature `nope`" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.GetOnlineFeatures(
            sv.GetOnlineFeaturesRequest(
                features=sv.FeatureList(val=["driver_stats:conv_rate"]),
                entities={"driver_id": RepeatedValue(val=[Value(string_val="1")])},
            ),
            timeout=10,
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "key type is int64" in e.value.details()
