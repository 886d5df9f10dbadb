"""The closed loop through `mlops up` and the CLI, with the Python trainer
(examples/python/retrain_trainer.py: scikit-learn, skl2onnx, MLflow's client) as a real
local process:

1. the feature store's source and entity tables written as Parquet, the definitions applied
   (`mlops features apply -f`), a policy set (`mlops retrain policy set`), and a manual
   retrain (`mlops retrain run --wait --json`) of a model that has no champion and no
   deployment: it is gated on the absolute floor and becomes the first champion;
2. the model deployed following its champion; the world changes (new labels); with a steady
   stream of requests on the Open Inference Protocol's HTTP endpoint, a second retrain goes
   TRAINED → ... → CANARY → PROMOTED through the deployment's automatic analysis, and the
   deployment's answers become the new world's;
3. `mlops up` killed with SIGKILL while the trainer of a third retrain runs (the trainer
   sleeps a few seconds: MLOPS_PARAM_SLEEP), started again on the same data directory and
   ports: the retrain resumes (a new attempt on the same run), ends PROMOTED, and exactly one
   version is registered for it. This is what the in-process Rust tests (tests/it/
   retraining.rs, which stop the service cleanly) cannot do.

The tests run in order on one platform (module scope): each builds on the previous one's
champion. About a minute in all; most of it is the trainer's imports (scikit-learn, skl2onnx,
MLflow: a few seconds a run), the sleep in step 3 and the 10 s lease of the killed process's
retrains, which the restarted one takes over when it runs out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, mlops_bin
from mlops_up import Up

MODEL = "houses"
TRAINER = REPO / "examples" / "python" / "retrain_trainer.py"
# The houses' feature definitions, as `make demo` applies them.
DEFS = REPO / "examples" / "retraining" / "features.yaml"
# Long enough to kill `mlops up` while it runs, short enough for the test's budget.
TRAINER_SLEEP_SECONDS = 5
# A retrain's budget: the trainer's imports take seconds on a busy machine.
RETRAIN_TIMEOUT = 90.0


HOUSES = 200
FEATURES_TIME = datetime(2024, 1, 1, 1, tzinfo=timezone.utc)
LABELS_TIME = datetime(2024, 1, 1, 2, tzinfo=timezone.utc)


def features(i: int) -> tuple[float, float]:
    return ((i * 37) % 101) / 10.0, ((i * 53) % 89) / 10.0


# Three worlds: the first model learns the first, the world then changes twice.
WORLDS = [
    lambda a, b: a + b + 1.0,
    lambda a, b: 2.0 * a - 3.0 * b + 1.0,
    lambda a, b: -a + 0.5 * b + 4.0,
]


def write_world(root: Path, world) -> None:
    """The feature source, and the training (even houses) and evaluation (odd houses) entity
    tables labelled by `world`, on the feature store's offline store `root`."""
    (root / "entities").mkdir(parents=True, exist_ok=True)
    ids = list(range(HOUSES))
    ab = [features(i) for i in ids]
    pq.write_table(
        pa.table(
            {
                "house_id": pa.array(ids, pa.int64()),
                "event_timestamp": pa.array([FEATURES_TIME] * len(ids), pa.timestamp("us", tz="UTC")),
                "a": pa.array([a for a, _ in ab], pa.float64()),
                "b": pa.array([b for _, b in ab], pa.float64()),
            }
        ),
        root / "houses.parquet",
    )
    for name, parity in (("train.parquet", 0), ("eval.parquet", 1)):
        part = [i for i in ids if i % 2 == parity]
        pq.write_table(
            pa.table(
                {
                    "house_id": pa.array(part, pa.int64()),
                    "event_timestamp": pa.array([LABELS_TIME] * len(part), pa.timestamp("us", tz="UTC")),
                    "y": pa.array([world(*features(i)) for i in part], pa.float64()),
                }
            ),
            root / "entities" / name,
        )


# --------------------------------------------------------------------------- the platform


class Platform(Up):
    """`mlops up` that can be killed with SIGKILL and started again on the same data
    directory and ports."""

    def __init__(self, root: Path):
        super().__init__(mlops_bin(), root, args=("--no-mlflow-ui",))
        self.root = root

    def wait(self) -> None:
        for admin in ("--retraining-admin-addr", "--inference-admin-addr", "--feature-store-admin-addr"):
            err = self.wait_ready(admin)
            if err:
                pytest.fail(err, pytrace=False)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.write(b"\n--- killed with SIGKILL by the test ---\n")
        self._log.close()

    def restart(self) -> None:
        self._log = open(self.log_path, "ab")
        self._log.write(("$ " + " ".join(self.cmd) + "\n").encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root
        )

    def mlops(self, *args: str, timeout: float = 60, ok: tuple[int, ...] = (0,)) -> str:
        """The CLI against this platform; its stdout. Fails the test on another exit code."""
        a = self.addrs
        cmd = [
            mlops_bin(),
            "--tracking-addr", a["--tracking-addr"],
            "--registry-addr", a["--registry-addr"],
            "--inference-addr", a["--inference-addr"],
            "--feature-store-addr", a["--feature-store-addr"],
            "--retraining-addr", a["--retraining-addr"],
            *args,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if out.returncode not in ok:
            pytest.fail(
                f"`mlops {' '.join(args)}` exited {out.returncode}\n{out.stdout}\n{out.stderr}\n{self.log_tail()}",
                pytrace=False,
            )
        return out.stdout

    def json(self, *args: str, **kw) -> object:
        return json.loads(self.mlops("--json", *args, **kw))

    def retrain(self, retrain_id: str) -> dict:
        return self.json("retrain", "show", retrain_id)

    def champion(self) -> int:
        return self.json("models", "alias", "get", MODEL, "champion")["version"]


# The Open Inference Protocol over HTTP, never through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def predict(p: Platform, i: int, timeout: float = 5) -> float:
    a, b = features(i)
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [a, b]}]}).encode()
    req = urllib.request.Request(
        f"http://{p.addrs['--inference-http-addr']}/v2/models/{MODEL}/infer",
        data=body,
        headers={"content-type": "application/json"},
    )
    with _HTTP.open(req, timeout=timeout) as r:
        out = json.load(r)["outputs"][0]
    assert out["name"] == "y" and out["shape"] == [1, 1], out
    return float(out["data"][0])


def predicts(p: Platform, world, timeout: float = 15) -> float:
    """Waits until every answer for house 3 is `world`'s (a swap reaches every replica); the
    last answer."""
    a, b = features(3)
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = [predict(p, 3) for _ in range(5)]
        except (OSError, urllib.error.HTTPError):
            got = None
        if got and all(abs(g - world(a, b)) < 1e-2 for g in got):
            return got[-1]
        time.sleep(0.1)
    pytest.fail(f"the deployment answers {got} for house 3, not {world(a, b)}\n{p.log_tail()}", pytrace=False)


class Load:
    """Requests to the deployment without pause, in a thread (the canary's analysis needs
    them); errors (a restart, the canary's) are counted, not raised."""

    def __init__(self, p: Platform):
        self.p = p
        self.stop = threading.Event()
        self.ok = self.failed = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                predict(self.p, i % HOUSES, timeout=2)
                self.ok += 1
            except Exception:
                self.failed += 1
                time.sleep(0.05)
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def policy_args(*extra: str) -> list[str]:
    return [
        "retrain", "policy", "set", MODEL,
        "--trainer", sys.executable, "--trainer", str(TRAINER),
        "--feature", "house:a", "--feature", "house:b", "--label", "y",
        "--train-entities", "entities/train.parquet", "--eval-entities", "entities/eval.parquet",
        # an absolute floor, and never worse than the champion (one metric's limits in one spec)
        "--gate", "rmse<=0.5,worse=0.0",
        *extra,
    ]  # fmt: skip


# A canary judged fast: every 300 ms, at least 3 requests, at most 5% errors, promoted after 2.
ROLLOUT = [
    "--canary-weight", "50", "--analysis-interval-ms", "300", "--min-requests", "3",
    "--max-error-rate", "0.05", "--consecutive-error-limit", "3", "--successes-to-promote", "2",
    "--canary-timeout", "60",
]  # fmt: skip


def states(r: dict) -> list[str]:
    return [t["state"] for t in r["transitions"]]


def wait_for(p: Platform, retrain_id: str, done, what: str, timeout: float = RETRAIN_TIMEOUT) -> dict:
    """Polls the retrain until `done(retrain)`; fails with its transitions if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        r = p.retrain(retrain_id)
        if done(r):
            return r
        if time.monotonic() > deadline or r["state"] in ("GATE_FAILED", "ROLLED_BACK", "FAILED"):
            pytest.fail(f"retrain {retrain_id} never {what}: {json.dumps(r, indent=1)}\n{p.log_tail()}", pytrace=False)
        time.sleep(0.2)


def trainer_log(p: Platform, r: dict, attempt: int) -> Path:
    return p.data / "retraining" / r["id"] / f"trainer-{attempt}.log"


def processes_of(retrain_id: str) -> list[int]:
    """The live processes whose environment names this retrain (its trainers)."""
    pids = []
    needle = f"MLOPS_RETRAIN_ID={retrain_id}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if needle in env.split(b"\0") and stat.rsplit(")", 1)[-1].split()[0] != "Z":
            pids.append(int(d.name))
    return pids


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("retraining-loop"))
    try:
        p.wait()
        yield p
    finally:
        if p.proc.poll() is None:
            err = p.stop()
            if err:
                pytest.fail(err, pytrace=False)


# --------------------------------------------------------------------------- the tests


def test_a_first_retrain_without_a_deployment_becomes_the_champion(platform):
    p = platform
    write_world(p.data / "features", WORLDS[0])
    applied = p.mlops("features", "apply", "-f", str(DEFS))
    assert "house" in applied and "version is now 1" in applied, applied

    pol = p.json(*policy_args())
    assert pol["model"] == MODEL and pol["version"] == 1, pol

    r = p.json("retrain", "run", MODEL, "--wait", "--reason", "the first model", timeout=RETRAIN_TIMEOUT)
    assert r["state"] == "PROMOTED", json.dumps(r, indent=1)
    assert states(r) == ["TRIGGERED", "TRAINING", "TRAINED", "REGISTERED", "EVALUATED", "GATED", "PROMOTED"], r
    assert "not deployed" in r["reason"], r["reason"]
    assert (r["trigger"], r["version"], r["champion_version"]) == ("manual", 1, 0), r
    assert r["candidate_metrics"]["rmse"] < 1e-3, r["candidate_metrics"]
    assert p.champion() == 1

    # The trainer logged through MLflow's client to the run the service made; the service
    # finished the run; the version came from the run's model/ with the ONNX signature.
    run = p.json("runs", "show", r["run_id"])
    assert run["status"] == "FINISHED", run
    metrics, params = run["metrics"], run["params"]
    assert metrics["train_rmse"] < 1e-6 and metrics["train_r2"] > 0.999999, metrics
    assert params["model"] == "LinearRegression" and params["rows"] == str(HOUSES // 2), params
    v = p.json("models", "version", MODEL, "1")
    assert v["run_id"] == r["run_id"] and v["tags"].get("mlops.retrain_id") == r["id"], v
    (x,), (y,) = v["signature"]["inputs"], v["signature"]["outputs"]
    assert x.startswith("x") and x.endswith(",2]") and y.startswith("y") and y.endswith(",1]"), v["signature"]
    assert "trained LinearRegression on 100 rows" in trainer_log(p, r, 1).read_text()


def test_a_changed_world_retrains_through_a_canary_and_the_answers_change(platform):
    p = platform
    assert p.champion() == 1, "the first test makes the first champion"
    d = p.json("serve", "deploy", MODEL, "--alias", "champion")
    assert d["version"] == 1, d
    before = predicts(p, WORLDS[0])

    write_world(p.data / "features", WORLDS[1])
    pol = p.json(*policy_args(*ROLLOUT))
    assert pol["version"] == 2, pol
    with Load(p) as load:
        r = p.json("retrain", "run", MODEL, "--wait", "--reason", "the world changed", timeout=RETRAIN_TIMEOUT)
    assert r["state"] == "PROMOTED", json.dumps(r, indent=1)
    assert states(r) == [
        "TRIGGERED", "TRAINING", "TRAINED", "REGISTERED", "EVALUATED", "GATED", "CANARY", "PROMOTED",
    ], r  # fmt: skip
    assert (r["version"], r["champion_version"], r["policy_version"]) == (2, 1, 2), r
    assert "analysis promoted" in r["reason"], r["reason"]
    assert r["candidate_metrics"]["rmse"] < 1e-3 and r["champion_metrics"]["rmse"] > 1.0, r
    assert load.ok > 0, f"no request answered ({load.failed} failed)"
    assert p.champion() == 2
    after = predicts(p, WORLDS[1])
    assert abs(after - before) > 1.0, (before, after)


def test_mlops_up_killed_mid_training_resumes_the_retrain_and_promotes_once(platform):
    p = platform
    assert p.champion() == 2, "the previous test makes version 2 the champion"
    write_world(p.data / "features", WORLDS[2])
    pol = p.json(*policy_args(*ROLLOUT, "--param", f"sleep={TRAINER_SLEEP_SECONDS}"))
    assert pol["version"] == 3, pol
    with Load(p):
        started = p.json("retrain", "run", MODEL, "--reason", "killed midway")
        rid = started["id"]
        r = wait_for(p, rid, lambda r: r["state"] == "TRAINING", "started its trainer")
        run_id = r["run_id"]
        log = trainer_log(p, r, 1)
        deadline = time.monotonic() + 60
        while "sleeping" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"the trainer never got to its sleep: {log.read_text()}"
            time.sleep(0.1)
        assert processes_of(rid), "the trainer runs"

        p.kill9()  # the trainer, a child, is left running: the restart must cope with it
        p.restart()
        p.wait()
        r = wait_for(p, rid, lambda r: r["state"] == "PROMOTED", "ended PROMOTED")

    # Resumed: a second trainer attempt on the same run, then the same steps as ever.
    assert r["attempts"] >= 2, r
    assert r["run_id"] == run_id, (run_id, r)
    assert states(r)[-6:] == ["TRAINED", "REGISTERED", "EVALUATED", "GATED", "CANARY", "PROMOTED"], r
    assert states(r).count("TRAINED") == 1 and states(r).count("PROMOTED") == 1, r
    assert "trained LinearRegression" in trainer_log(p, r, r["attempts"]).read_text()
    assert (r["version"], r["champion_version"]) == (3, 2), r
    assert p.champion() == 3
    # exactly one version registered for this retrain (and one each for the two before)
    versions = p.json("models", "versions", MODEL)
    mine = [v["version"] for v in versions if v["tags"].get("mlops.retrain_id") == rid]
    assert mine == [3], versions
    assert sorted(v["version"] for v in versions) == [1, 2, 3], versions
    run = p.json("runs", "show", r["run_id"])
    assert run["status"] == "FINISHED", run
    predicts(p, WORLDS[2])
    # no trainer of this retrain is left behind (the killed service's was stopped or ended)
    assert processes_of(rid) == []
