"""The `platform` fixture of the Feast tests: `mlops up` on free loopback ports with a fresh
data directory, stopped with SIGINT at the end (exit code 0 within 20 s).

These tests run in a venv of their own (Feast pins its own protobuf, grpcio and pandas), so
this conftest needs nothing beyond the standard library and pytest. MLOPS_BIN is required.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass
class Platform:
    proc: subprocess.Popen
    binary: str
    feature_store: str
    admin: str
    data: Path
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])

    def mlops(self, *args: str) -> str:
        out = subprocess.run(
            [self.binary, "--feature-store-addr", f"http://{self.feature_store}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"mlops {' '.join(args)} failed: {out.stderr}"
        return out.stdout


def free_ports(n: int) -> list[int]:
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


def _ready(admin: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    binary = os.environ.get("MLOPS_BIN")
    if not binary:
        pytest.fail("MLOPS_BIN is not set: point it at the mlops binary (cargo build -p mlops-cli)", pytrace=False)
    root = tmp_path_factory.mktemp("mlops")
    p = [f"127.0.0.1:{port}" for port in free_ports(11)]
    cmd = [
        binary, "up", "--data-dir", str(root / "data"),
        "--tracking-addr", p[0], "--tracking-admin-addr", p[1],
        "--registry-addr", p[2], "--registry-admin-addr", p[3],
        "--mlflow-addr", p[4], "--mlflow-admin-addr", p[5],
        "--inference-addr", p[6], "--inference-http-addr", p[7], "--inference-admin-addr", p[8],
        "--feature-store-addr", p[9], "--feature-store-admin-addr", p[10],
    ]  # fmt: skip
    log_path = root / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
    plat = Platform(proc, binary, p[9], p[10], root / "data", log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _ready(plat.admin):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"`mlops up` did not become ready\n{plat.log_tail()}", pytrace=False)
        time.sleep(0.1)

    yield plat

    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"`mlops up` did not exit within {STOP_TIMEOUT:g} s of SIGINT\n{plat.log_tail()}", pytrace=False)
    finally:
        log.close()
    assert code == 0, f"`mlops up` exited with {code} after SIGINT\n{plat.log_tail()}"
