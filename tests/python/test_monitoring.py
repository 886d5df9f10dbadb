"""Monitoring from Python, as a pipeline uses it: a monitor created and fed with the CLI
(`mlops monitor create|reference|push|report|status`, Parquet written by pyarrow), the same
window pushed over gRPC as Arrow IPC, and the answers a person and a script read."""

from __future__ import annotations

import json
import random
import subprocess

import grpc
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

import mlops_client  # noqa: F401  (generates the stubs)
from mlops.monitoring.v1 import monitoring_pb2 as mpb, monitoring_pb2_grpc as mgrpc
from conftest import mlops_bin


def cli(server, *args: str, code: int = 0) -> str:
    out = subprocess.run(
        [mlops_bin(), "--monitoring-addr", server.monitoring_target, "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == code, f"mlops monitor {' '.join(args)}: exit {out.returncode}\n{out.stdout}{out.stderr}"
    return out.stdout + out.stderr


def table(rows: int, shift: float, seed: int) -> pa.Table:
    rng = random.Random(seed)
    return pa.table({
        "age": [rng.gauss(40 + shift, 10) for _ in range(rows)],
        "plan": [rng.choice(["basic", "basic", "pro", "team"] if shift == 0 else ["pro", "team", "team"]) for _ in range(rows)],
    })  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("monitoring")
    paths = {}
    for name, rows, shift, seed in [("reference", 2000, 0, 1), ("same", 1500, 0, 2), ("drifted", 1500, 8, 3)]:
        paths[name] = d / f"{name}.parquet"
        pq.write_table(table(rows, shift, seed), paths[name])
    return paths


def test_a_monitor_from_the_cli(server, files):
    cli(server, "create", "py-churn", "--model", "churn", "--cooldown", "0")
    out = json.loads(cli(server, "--json", "reference", "py-churn", str(files["reference"])))
    assert out["version"] == 1 and out["rows"] == 2000
    assert {c["name"]: c["type"] for c in out["columns"]} == {"age": "numerical", "plan": "categorical"}

    same = json.loads(cli(server, "--json", "push", "py-churn", str(files["same"]), "--model-version", "1"))
    assert same["dataset_drift"] is False
    methods = {c["column"]: c["method"] for c in same["columns"]}
    assert methods == {"age": "wasserstein", "plan": "jensenshannon"}, "Evidently's choice above 1,000 rows"

    # A drifted window: exit code 3, the table a person reads, the event published.
    text = cli(server, "push", "py-churn", str(files["drifted"]), code=3)
    assert "DATASET DRIFT" in text and "wasserstein" in text, text
    report = json.loads(cli(server, "--json", "report", "py-churn"))
    assert report["dataset_drift"] and report["event_published"] and report["drifted_columns"] == 2

    status = json.loads(cli(server, "--json", "status"))
    mine = [s for s in status if s["monitor"]["name"] == "py-churn"]
    assert mine and mine[0]["newest_report"]["id"] == report["id"]
    history = json.loads(cli(server, "--json", "status", "py-churn"))
    assert [r["dataset_drift"] for r in history] == [True, False]

    # Bad input: the service's code and message, exit 1.
    err = cli(server, "push", "nobody", str(files["same"]), code=1)
    assert "NotFound" in err and "no monitor named" in err, err
    err = cli(server, "create", "py-churn", code=1)
    assert "AlreadyExists" in err, err
    err = cli(server, "create", "other", "--method", "kolmogorov", code=1)
    assert "unknown drift method" in err, err


def test_a_window_over_grpc_as_arrow_ipc(server, files):
    cli(server, "create", "py-ipc", "--num-method", "psi", "--column", "age")
    cli(server, "reference", "py-ipc", str(files["reference"]))
    sink = pa.BufferOutputStream()
    t = pq.read_table(files["drifted"])
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t, max_chunksize=256)
    data = sink.getvalue().to_pybytes()
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]

    def requests():
        for i, c in enumerate(chunks):
            if i == 0:
                yield mpb.PushWindowRequest(monitor="py-ipc", format=mpb.TABLE_FORMAT_ARROW_IPC, model_version="2", data=c)
            else:
                yield mpb.PushWindowRequest(data=c)

    with grpc.insecure_channel(server.monitoring_target) as ch:
        stub = mgrpc.MonitoringServiceStub(ch)
        r = stub.PushWindow(requests(), timeout=30)
        assert [c.column for c in r.columns] == ["age"]
        assert r.columns[0].method == "psi" and r.columns[0].drifted and r.columns[0].score > 0.1
        with pytest.raises(grpc.RpcError) as e:
            stub.PushWindow(iter([mpb.PushWindowRequest(monitor="py-ipc", format=mpb.TABLE_FORMAT_ARROW_IPC, data=b"junk")]))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Arrow IPC" in e.value.details()
