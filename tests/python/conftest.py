"""The `server` fixture shared by the Python tests: `mlops up` (tracking, registry and the
MLflow REST API) on
free loopback ports with a fresh data directory, stopped with SIGINT at the end, which it
must survive with exit code 0 within 20 s.

MLOPS_BIN is required: without it the tests fail (they are never skipped). The server's
output goes to server.log in pytest's temporary directory; the tail is shown when
something fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "python"))

import mlops_client  # noqa: E402  (generates the stubs from proto/)
from mlops_client import tracking_pb2 as pb  # noqa: E402

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# The readiness probe polls every 0.1 s; without these, gRPC waits up to 2 minutes between
# connection attempts after the first refused one.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


@dataclass
class Server:
    proc: subprocess.Popen
    target: str
    admin_target: str
    registry_target: str
    root: Path
    log_path: Path
    stub: object
    # The MLflow REST API, for mlflow.set_tracking_uri: "http://127.0.0.1:PORT".
    mlflow_uri: str
    # The feature store's gRPC address: "127.0.0.1:PORT".
    feature_store_target: str = ""

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"(no server log: {e})"
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])


def free_ports(n: int) -> List[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mlops_bin() -> str:
    binary = os.environ.get("MLOPS_BIN")
    if not binary:
        pytest.fail(
            "MLOPS_BIN is not set: point it at the mlops binary, e.g. "
            "MLOPS_BIN=target/debug/mlops (build it with `cargo build -p mlops-cli`)",
            pytrace=False,
        )
    if not (Path(binary).is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"MLOPS_BIN={binary} is not an executable file", pytrace=False)
    return binary


def up_command(binary: str, data_dir: Path) -> tuple[list, str, str, str, str]:
    """`mlops up` on eleven free ports (inference's three and the feature store's two too, so
    servers started side by side never meet on a default port): (command, tracking, tracking
    admin, registry, MLflow URI). `cmd_arg(cmd, "--feature-store-addr")` reads another."""
    port, admin_port, reg_port, reg_admin_port, mlflow_port, mlflow_admin_port, *others = free_ports(11)
    inference, feature_store = others[:3], others[3:]
    target, admin_target = f"127.0.0.1:{port}", f"127.0.0.1:{admin_port}"
    registry_target = f"127.0.0.1:{reg_port}"
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    cmd = [
        binary, "up",
        "--data-dir", str(data_dir),
        "--tracking-addr", target,
        "--tracking-admin-addr", admin_target,
        "--registry-addr", registry_target,
        "--registry-admin-addr", f"127.0.0.1:{reg_admin_port}",
        "--mlflow-addr", f"127.0.0.1:{mlflow_port}",
        "--mlflow-admin-addr", f"127.0.0.1:{mlflow_admin_port}",
        "--inference-addr", f"127.0.0.1:{inference[0]}",
        "--inference-http-addr", f"127.0.0.1:{inference[1]}",
        "--inference-admin-addr", f"127.0.0.1:{inference[2]}",
        "--feature-store-addr", f"127.0.0.1:{feature_store[0]}",
        "--feature-store-admin-addr", f"127.0.0.1:{feature_store[1]}",
    ]  # fmt: skip
    return cmd, target, admin_target, registry_target, mlflow_uri


def cmd_arg(cmd: list, flag: str) -> str:
    """The value of `flag` in an `up_command`."""
    return cmd[cmd.index(flag) + 1]


def _wait_ready(srv: Server) -> None:
    """Polls GetExperiment("0") (the Default experiment always exists) every 0.1 s; `mlops
    up` binds every service before it serves any."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        code = srv.proc.poll()
        if code is not None:
            pytest.fail(f"`mlops up` exited with code {code} before serving\n{srv.log_tail()}", pytrace=False)
        try:
            resp = srv.stub.GetExperiment(pb.GetExperimentRequest(experiment_id="0"), timeout=1.0)
            assert resp.experiment.experiment_id == "0", resp
            return
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        time.sleep(0.1)
    pytest.fail(
        f"tracking service at {srv.target} not ready within {STARTUP_TIMEOUT:g} s (last error: {last})\n"
        f"{srv.log_tail()}",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = mlops_bin()
    root = tmp_path_factory.mktemp("mlops")
    cmd, target, admin_target, registry_target, mlflow_uri = up_command(binary, root / "data")
    log_path = root / "server.log"
    log = open(log_path, "wb")
    log.write(("$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
    stub = mlops_client.connect(target, options=FAST_RECONNECT)
    srv = Server(
        proc, target, admin_target, registry_target, root, log_path, stub, mlflow_uri,
        feature_store_target=cmd_arg(cmd, "--feature-store-addr"),
    )  # fmt: skip
    try:
        _wait_ready(srv)
    except BaseException:
        proc.kill()
        proc.wait()
        log.close()
        stub.channel.close()
        raise

    yield srv

    # Finalizer: Ctrl-C must drain and stop the server cleanly.
    stub.channel.close()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"`mlops up` did not exit within {STOP_TIMEOUT:g} s of SIGINT\n{srv.log_tail()}", pytrace=False)
    log.close()
    assert code == 0, f"`mlops up` exited with code {code} after SIGINT (want 0)\n{srv.log_tail()}"
