"""Monitoring from Python, as a pipeline uses it: a monitor created and fed with the CLI
(`mlops monitor create|reference|push|report|status`, Parquet written by pyarrow), the same
window pushed over gRPC as Arrow IPC, and the answers a person and a script read, including
`report --html`'s page as headless Chromium renders it (Debian's `chromium`, which
`make test` installs; the tests fail without it)."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

import mlops_client  # noqa: F401  (generates the stubs)
from mlops.monitoring.v1 import monitoring_pb2 as mpb, monitoring_pb2_grpc as mgrpc
from conftest import chromium, mlops_bin


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


# The chart's bar colours (monitor_html.rs): reference, current window.
REF_BAR, CUR_BAR = (0x9A, 0xA5, 0xB1), (0xD9, 0x53, 0x4F)



def png_colours(path: Path) -> tuple[int, int, Counter]:
    """(width, height, pixels per RGB colour) of an 8-bit RGB or RGBA, non-interlaced PNG, as
    Chromium writes its screenshots; decoded with zlib and the five scanline filters."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    assert header is not None, f"{path} has no IHDR"
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    assert len(raw) == height * (stride + 1), f"{path}: {len(raw)} bytes of pixels for {width}x{height}"
    colours: Counter = Counter()
    prev = bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = bytes((a + b) & 0xFF for a, b in zip(line, prev))
        else:
            out = bytearray(stride)
            for i, x in enumerate(line):
                left = out[i - bpp] if i >= bpp else 0
                up = prev[i]
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) // 2
                else:  # Paeth
                    corner = prev[i - bpp] if i >= bpp else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                out[i] = (x + pred) & 0xFF
            cur = bytes(out)
        colours.update(zip(cur[0::bpp], cur[1::bpp], cur[2::bpp]))
        prev = cur
    return width, height, colours


@pytest.fixture(scope="module")
def drifted(server, files, tmp_path_factory) -> str:
    """A monitor whose newest report is a drifted window: its name. Beside `files`' columns,
    a `city` of 30 long names: the widest chart, 20 bars (the last "(other)") whose labels
    must stay readable."""
    d = tmp_path_factory.mktemp("html")
    cities = [f"city-{i:02}-long-name" for i in range(30)]
    for name, seed, choices in [("reference", 4, cities), ("drifted", 5, cities[:12])]:
        t = pq.read_table(files[name])
        rng = random.Random(seed)
        pq.write_table(t.append_column("city", pa.array([rng.choice(choices) for _ in range(t.num_rows)])), d / name)
    cli(server, "create", "py-html", "--cooldown", "0")
    cli(server, "reference", "py-html", str(d / "reference"))
    cli(server, "push", "py-html", str(d / "drifted"), code=3)
    return "py-html"


def test_the_html_report_renders_in_chromium(server, drifted, tmp_path):
    page = tmp_path / "report.html"
    out = cli(server, "report", drifted, "--html", str(page))
    assert f"wrote {page}" in out and "DATASET DRIFT" in out, out
    report = json.loads(cli(server, "--json", "report", drifted))
    hists = {c["column"]: c["histogram"] for c in report["columns"]}
    bins = {name: min(len(h["reference"]), len(h["current"])) for name, h in hists.items()}
    assert set(bins) == {"age", "plan", "city"} and all(bins.values()), bins
    assert bins["city"] == 20 and hists["city"]["categories"][-1] == "(other)", hists["city"]

    # The DOM Chromium built from the page: title, verdict, one chart per column with its bars.
    dom = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert f"<title>Drift report: {drifted}</title>" in dom, dom[:2000]
    verdict = f'<span class="bad">dataset drift</span>: {report["drifted_columns"]} of 3 columns drifted'
    assert report["dataset_drift"] and verdict in dom, dom[:2000]
    charts = [s.split("</svg>")[0] for s in dom.split("<svg")[1:]]
    assert len(charts) == len(bins), f"{len(charts)} charts for columns {sorted(bins)}"
    for column, svg in zip(report["columns"], charts):
        rects = svg.count("<rect")
        assert rects == 2 * bins[column["column"]], f"{column['column']}: {rects} bars, {bins[column['column']]} bins"
        assert 'class="ref"' in svg and 'class="cur"' in svg, svg[:500]
    for column in bins:
        assert f'id="col-{column.encode().hex()}"' in dom, f"no chart section for {column}"

    # What it looks like: a screenshot that is not a blank page, with both bar colours painted.
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert shot.is_file(), f"chromium wrote no screenshot at {shot}"
    assert shot.stat().st_size > 20_000, f"{shot} is {shot.stat().st_size} bytes: a blank page?"
    width, height, colours = png_colours(shot)
    assert (width, height) == (1200, 1600), (width, height)
    assert len(colours) >= 20, f"{shot} has {len(colours)} colours: {colours.most_common(5)}"
    white = colours[(255, 255, 255)]
    assert white < 0.97 * width * height, f"{shot} is {white / (width * height):.1%} white"
    for name, rgb in [("reference", REF_BAR), ("current", CUR_BAR)]:
        assert colours[rgb] > 500, f"{shot}: {colours[rgb]} pixels of the {name} bars' colour #{bytes(rgb).hex()}"


def test_the_html_report_with_json_prints_only_json(server, drifted, tmp_path):
    page = tmp_path / "report.html"
    cmd = [mlops_bin(), "--monitoring-addr", server.monitoring_target, "monitor", "--json", "report", drifted]
    # Not `cli`, which joins stdout and stderr: stdout alone must be the JSON.
    out = subprocess.run([*cmd, "--html", str(page)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}{out.stderr}"
    report = json.loads(out.stdout)  # fails on anything else, e.g. a "wrote FILE" line
    assert report["monitor"] == drifted and report["dataset_drift"], report
    assert "wrote" not in out.stdout + out.stderr, out.stdout + out.stderr
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and report["id"] in html and html.count("<svg") == len(report["columns"])
