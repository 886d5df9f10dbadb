"""Python client for the MLOps platform's gRPC API, with nothing to install but grpcio-tools.

On import, this module compiles every ``.proto`` under the repository's ``proto/`` folder
with ``grpc_tools.protoc`` into ``examples/python/gen/`` (a cache, git-ignored), unless the
generated code is already up to date, and imports the tracking stubs from there::

    import mlops_client
    from mlops_client import tracking_pb2 as pb

    stub = mlops_client.connect("127.0.0.1:50051")
    exp = stub.GetExperiment(pb.GetExperimentRequest(experiment_id="0"))

The code is regenerated when a ``.proto`` file is newer than the last generation, when a
``.proto`` file was added or removed, or when the installed grpcio-tools version changed
(the generated modules check the protobuf runtime version when they are imported).

Environment: ``MLOPS_PROTO_DIR`` points at another ``proto/`` folder, ``MLOPS_GEN_DIR``
at another cache folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

import grpc

try:  # POSIX only; elsewhere concurrent first imports are simply not serialized.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

HERE = Path(__file__).resolve().parent
PROTO_DIR = Path(os.environ.get("MLOPS_PROTO_DIR", HERE.parent.parent / "proto")).resolve()
GEN_DIR = Path(os.environ.get("MLOPS_GEN_DIR", HERE / "gen")).resolve()
_STAMP = GEN_DIR / ".generated.json"

__all__ = [
    "connect",
    "channel",
    "generate",
    "tracking_pb2",
    "tracking_pb2_grpc",
    "PROTO_DIR",
    "GEN_DIR",
]


def _proto_files() -> list[Path]:
    # Our contracts only: proto/vendor holds third-party ones (Triton's), which import each
    # other by bare name and are not this client's to generate.
    files = sorted(p for p in PROTO_DIR.rglob("*.proto") if p.relative_to(PROTO_DIR).parts[0] != "vendor")
    if not files:
        raise RuntimeError(f"no .proto files under {PROTO_DIR}")
    return files


def _tools_version() -> str:
    from grpc_tools import grpc_version

    return grpc_version.VERSION


def _wanted_stamp(protos: Sequence[Path]) -> dict:
    return {
        "grpcio_tools": _tools_version(),
        "protos": [p.relative_to(PROTO_DIR).as_posix() for p in protos],
    }


def _is_stale(protos: Sequence[Path]) -> bool:
    try:
        stamp = json.loads(_STAMP.read_text())
        stamp_mtime = _STAMP.stat().st_mtime
    except (OSError, ValueError):
        return True
    if stamp != _wanted_stamp(protos):
        return True
    return any(p.stat().st_mtime > stamp_mtime for p in protos)


def _run_protoc(protos: Sequence[Path], out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p) for p in protos],
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with exit code {code}: {' '.join(args)}")
    # The generated modules import each other as packages (`from mlops.tracking.v1 import
    # tracking_pb2`), so every folder needs an __init__.py.
    for d in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        if d != out:
            (d / "__init__.py").touch()


def generate(force: bool = False) -> Path:
    """Generates the Python modules into GEN_DIR if they are missing or stale; returns GEN_DIR."""
    protos = _proto_files()
    if not force and not _is_stale(protos):
        return GEN_DIR
    GEN_DIR.mkdir(parents=True, exist_ok=True)
    with open(GEN_DIR / ".lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have generated while this one waited for the lock.
        if not force and not _is_stale(protos):
            return GEN_DIR
        # Generate into a scratch folder first so a failing protoc leaves the old code alone.
        with tempfile.TemporaryDirectory(dir=GEN_DIR, prefix=".tmp-") as tmp:
            _run_protoc(protos, Path(tmp))
            for old in GEN_DIR.iterdir():
                if old.name.startswith("."):
                    continue
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            for new in Path(tmp).iterdir():
                os.replace(new, GEN_DIR / new.name)
        _STAMP.write_text(json.dumps(_wanted_stamp(protos)))
    return GEN_DIR


generate()
if str(GEN_DIR) not in sys.path:
    sys.path.insert(0, str(GEN_DIR))

from mlops.registry.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
from mlops.tracking.v1 import tracking_pb2, tracking_pb2_grpc  # noqa: E402

# Loopback targets should never go through an HTTP proxy from the environment; the
# receive limit allows a GetMetricHistory page of a million points (about 20 MB).
DEFAULT_OPTIONS: Tuple[Tuple[str, object], ...] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


def channel(target: str, options: Optional[Iterable[Tuple[str, object]]] = None) -> grpc.Channel:
    """An insecure channel to `target` ("host:port") with sensible default options."""
    opts = dict(DEFAULT_OPTIONS)
    host = target.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "::1") or host.startswith("127."):
        opts["grpc.enable_http_proxy"] = 0
    opts.update(dict(options or ()))
    return grpc.insecure_channel(target, options=list(opts.items()))


def connect(
    target: str,
    options: Optional[Iterable[Tuple[str, object]]] = None,
    wait_seconds: Optional[float] = None,
) -> tracking_pb2_grpc.TrackingServiceStub:
    """A TrackingService stub for `target` ("host:port").

    With `wait_seconds`, first waits that long for the connection to be established and
    raises ConnectionError if it is not.
    """
    ch = channel(target, options)
    if wait_seconds is not None:
        try:
            grpc.channel_ready_future(ch).result(timeout=wait_seconds)
        except grpc.FutureTimeoutError:
            ch.close()
            raise ConnectionError(
                f"could not connect to the tracking service at {target} within {wait_seconds:g} s"
            ) from None
    stub = tracking_pb2_grpc.TrackingServiceStub(ch)
    stub.channel = ch  # so a caller can close it
    return stub


def connect_registry(
    target: str,
    options: Optional[Iterable[Tuple[str, object]]] = None,
) -> registry_pb2_grpc.RegistryServiceStub:
    """A RegistryService stub for `target` ("host:port"); `stub.channel` closes it."""
    ch = channel(target, options)
    stub = registry_pb2_grpc.RegistryServiceStub(ch)
    stub.channel = ch
    return stub
