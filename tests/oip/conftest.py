"""The `platform` fixture of the Open Inference Protocol tests: `mlops up` (tracking, registry,
inference, MLflow gateway) on free loopback ports with a fresh data directory, the scikit-learn
fixtures registered with `mlops models register`, stopped with SIGINT at the end.

These tests run in venvs of their own (tritonclient and KServe's client cannot share one), so
this conftest needs nothing beyond the standard library and pytest (and tests/mlops_up.py).
MLOPS_BIN is required.
"""

from __future__ import annotations

import json
import os
import sys
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlops_up import Up  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "sklearn"


@dataclass
class Platform:
    up: Up
    binary: str
    registry: str
    grpc: str
    http: str
    admin: str
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        return self.up.log_tail(lines)

    def mlops(self, *args: str) -> str:
        out = subprocess.run(
            [self.binary, *args, "--registry-addr", f"http://{self.registry}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"mlops {' '.join(args)} failed: {out.stderr}"
        return out.stdout

    def register(self, name: str, fixture: str) -> None:
        """Creates the registered model `name` and uploads the fixture as its next version."""
        self.mlops("models", "create", name)
        self.mlops("models", "register", name, "--file", str(FIXTURES / f"{fixture}.onnx"))


def fixture_json(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rows(fixture: dict, name: str, n: int):
    """The first `n` rows of the fixture's FP32 input `name` (null is NaN), as numpy."""
    import numpy as np

    spec = next(i for i in fixture["inputs"] if i["name"] == name)
    data = [np.nan if v is None else v for v in spec["data"]]
    return np.asarray(data, dtype=np.float32).reshape(spec["shape"])[:n]


def expected(fixture: dict, name: str, n: int):
    """The first `n` rows of onnxruntime's output `name`, as numpy."""
    import numpy as np

    spec = next(o for o in fixture["outputs"] if o["name"] == name)
    return np.asarray(spec["data"]).reshape(spec["shape"])[:n]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    binary = os.environ.get("MLOPS_BIN")
    if not binary:
        pytest.fail("MLOPS_BIN is not set: point it at the mlops binary (cargo build -p mlops-cli)", pytrace=False)
    up = Up(binary, tmp_path_factory.mktemp("mlops"))
    a = up.addrs
    plat = Platform(
        up,
        binary,
        a["--registry-addr"],
        a["--inference-addr"],
        a["--inference-http-addr"],
        a["--inference-admin-addr"],
        up.log_path,
    )
    if err := up.wait_ready("--inference-admin-addr"):
        pytest.fail(err, pytrace=False)
    yield plat
    if err := up.stop():
        pytest.fail(err, pytrace=False)
