"""The feature store from Python, as a pipeline uses it: definitions applied with the CLI
(`mlops features apply -f`), training data over gRPC with the entity table and the answer as
Arrow IPC (pyarrow), and the CLI's `historical` writing the same table to Parquet."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import grpc
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

import mlops_client  # noqa: F401  (generates the stubs)
from mlops.featurestore.v1 import feature_store_pb2 as fpb, feature_store_pb2_grpc as fgrpc
from conftest import mlops_bin

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
    ttl: 1h
    source: driver_source
    schema:
      - {name: conv_rate, dtype: float32}
      - {name: trips, dtype: int64}
feature_services:
  - name: driver_activity
    features: [driver_stats]
"""

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def cli(server, *args: str) -> str:
    out = subprocess.run(
        [mlops_bin(), "--feature-store-addr", server.feature_store_target, "features", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"mlops features {' '.join(args)}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def applied(server, tmp_path_factory):
    root = server.root / "data" / "features"
    root.mkdir(parents=True, exist_ok=True)
    # Driver 1 at T0, T0+30m (pandas' UTC timestamps); driver 2 at T0.
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1, 1, 2], pa.int64()),
                "event_timestamp": pa.array(
                    [T0, T0 + timedelta(minutes=30), T0], pa.timestamp("us", tz="UTC")
                ),
                "conv_rate": pa.array([0.25, 0.5, 0.75], pa.float32()),
                "trips": pa.array([1, 2, 3], pa.int64()),
            }
        ),
        root / "driver_stats.parquet",
    )
    defs = tmp_path_factory.mktemp("defs") / "features.yaml"
    defs.write_text(DEFS)
    first = cli(server, "apply", "-f", str(defs))
    assert "created" in first and "driver_stats" in first and "version is now 1" in first, first
    assert "no change" in cli(server, "apply", "-f", str(defs))
    return root


def entity_table() -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array([1, 1, 2, 3, 1], pa.int64()),
            # Naive times are UTC; a time zone is converted.
            "event_timestamp": pa.array(
                [
                    datetime(2024, 1, 1, 0, 45),
                    datetime(2024, 1, 1, 0, 15),
                    datetime(2024, 1, 1, 0, 59),
                    datetime(2024, 1, 1, 0, 59),
                    datetime(2024, 1, 1, 1, 31),  # 1 h after 00:30 plus a minute: stale
                ],
                pa.timestamp("ns"),
            ),
            "label": pa.array([True, False, True, False, True]),
        }
    )


def test_training_data_over_grpc_with_arrow(server, applied):
    table = entity_table()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table, max_chunksize=2)
    data = sink.getvalue().to_pybytes()
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]

    def requests():
        yield fpb.GetHistoricalFeaturesRequest(query=fpb.HistoricalQuery(feature_service="driver_activity"))
        for c in chunks:
            yield fpb.GetHistoricalFeaturesRequest(arrow_ipc=c)

    stub = fgrpc.FeatureStoreServiceStub(mlops_client.channel(server.feature_store_target))
    answer, summary = [], None
    for m in stub.GetHistoricalFeatures(requests(), timeout=30):
        if m.HasField("arrow_ipc"):
            answer.append(m.arrow_ipc)
        else:
            summary = m.summary
    assert summary is not None and summary.rows == 5
    got = pa.ipc.open_stream(b"".join(answer)).read_all()
    assert got.column_names == ["driver_id", "event_timestamp", "label", "conv_rate", "trips"]
    assert got.column("driver_id").to_pylist() == [1, 1, 2, 3, 1], "every row, in order"
    assert got.column("label").to_pylist() == table.column("label").to_pylist()
    assert got.column("conv_rate").to_pylist() == [0.5, 0.25, 0.75, None, None]
    assert got.column("trips").to_pylist() == [2, 1, 3, None, None]
    assert got.schema.field("conv_rate").type == pa.float32()

    # A bad request is a clear status.
    with pytest.raises(grpc.RpcError) as e:
        list(
            stub.GetHistoricalFeatures(
                iter([fpb.GetHistoricalFeaturesRequest(query=fpb.HistoricalQuery(features=["driver_stats:nope"]))]),
                timeout=30,
            )
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no feature `nope`" in e.value.details()


def test_the_cli_writes_the_same_training_table(server, applied, tmp_path):
    entities = tmp_path / "entities.parquet"
    pq.write_table(entity_table(), entities)
    out = tmp_path / "training.parquet"
    said = cli(
        server, "historical", "--entities", str(entities),
        "--features", "driver_stats:conv_rate,driver_stats:trips", "--full-feature-names", "-o", str(out),
    )  # fmt: skip
    assert "5 rows written" in said, said
    got = pq.read_table(out)
    assert got.column("driver_stats__conv_rate").to_pylist() == [0.5, 0.25, 0.75, None, None]
    assert got.column("driver_stats__trips").to_pylist() == [2, 1, 3, None, None]

    described = json.loads(cli(server, "describe", "driver_stats"))
    assert described["kind"] == "feature_view"
    assert described["spec"]["ttl_nanos"] == 3_600_000_000_000
    listed = json.loads(cli(server, "--json", "list", "--kind", "feature-view"))
    assert [d["name"] for d in listed] == ["driver_stats"]


def test_materialize_and_read_online_with_the_cli(server, applied):
    said = cli(server, "materialize", "--end", "now")
    assert "driver_stats" in said and "KEYS WRITTEN" in said, said
    # The data is from 2024 and the TTL is 1 h: too old to serve now, but found.
    got = json.loads(cli(server, "--json", "get", "--features", "driver_stats:conv_rate", "--entity", "driver_id=1,2,3"))
    assert [r["driver_id"]["value"] for r in got] == [1, 2, 3]
    assert [r["conv_rate"]["status"] for r in got] == ["OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    # Again: nothing newer, nothing written.
    again = json.loads(cli(server, "--json", "materialize", "--end", "now", "--views", "driver_stats"))
    assert again[0]["keys_written"] == 0 and again[0]["rows"] == 3, again
    # A key of the wrong type is a clear error.
    out = subprocess.run(
        [mlops_bin(), "--feature-store-addr", server.feature_store_target, "features", "get",
         "--features", "driver_stats:conv_rate", "--entity", "driver_id:string=1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "InvalidArgument" in out.stderr and "key type is int64" in out.stderr, out.stderr
