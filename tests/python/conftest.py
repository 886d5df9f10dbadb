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
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "python"))

import mlops_client  # noqa: E402  (generates the stubs from proto/)

sys.path.insert(0, str(REPO / "tests"))
from mlops_up import free_ports, up_command as _up_command  # noqa: E402,F401  (free_ports: for the tests)
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
    monitoring_target: str = ""

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"(no server log: {e})"
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])


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
    """`mlops up` with every service on a free port (tests/mlops_up.py): (command, tracking,
    tracking admin, registry, MLflow URI). `cmd_arg(cmd, "--feature-store-addr")` reads another."""
    cmd, a = _up_command(binary, data_dir)
    return cmd, a["--tracking-addr"], a["--tracking-admin-addr"], a["--registry-addr"], f"http://{a['--mlflow-addr']}"


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
        monitoring_target=cmd_arg(cmd, "--monitoring-addr"),
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


def chromium(profile: Path, *args: str, timeout: float = 180) -> str:
    """Headless Chromium (Debian's `chromium`, which `make test` installs; the tests that render
    pages fail without it) with a profile of its own under `profile` (no state shared between
    runs); its stdout."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "chromium is not on PATH: this test renders a page in headless Chromium; install Debian's "
            "package (`apt-get install --no-install-recommends chromium`; `make test` does it)",
            pytrace=False,
        )
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}: exit {out.returncode}\n{out.stdout}{out.stderr[-4000:]}"
    return out.stdout

