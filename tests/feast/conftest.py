"""The `platform` fixture of the Feast tests: `mlops up` on free loopback ports with a fresh
data directory (tests/mlops_up.py), stopped with SIGINT at the end.

These tests run in a venv of their own (Feast pins its own protobuf, grpcio and pandas), so
this conftest needs nothing beyond the standard library and pytest. MLOPS_BIN is required.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlops_up import Up  # noqa: E402


class Platform(Up):
    @property
    def feature_store(self) -> str:
        return self.addrs["--feature-store-addr"]

    def mlops(self, *args: str) -> str:
        out = subprocess.run(
            [self.cmd[0], "--feature-store-addr", f"http://{self.feature_store}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"mlops {' '.join(args)} failed: {out.stderr}"
        return out.stdout


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    binary = os.environ.get("MLOPS_BIN")
    if not binary:
        pytest.fail("MLOPS_BIN is not set: point it at the mlops binary (cargo build -p mlops-cli)", pytrace=False)
    plat = Platform(binary, tmp_path_factory.mktemp("mlops"))
    if err := plat.wait_ready("--feature-store-admin-addr"):
        pytest.fail(err, pytrace=False)
    yield plat
    if err := plat.stop():
        pytest.fail(err, pytrace=False)
