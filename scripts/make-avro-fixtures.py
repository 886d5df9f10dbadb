#!/usr/bin/env python3
"""Generates the fixtures of the feature store's Avro decoder
(crates/feature-store/src/online/avro.rs) with fastavro, an encoder independent of it, so
the decoder's tests compare it with another implementation rather than with itself.

Pinned (scripts/avro-fixtures-requirements.txt): fastavro 1.12.1. The script refuses to run
with another version, because another version may encode differently. Run it from any
directory in a throwaway virtualenv:

    python3 -m venv /tmp/avro-venv
    /tmp/avro-venv/bin/pip install -r scripts/avro-fixtures-requirements.txt
    /tmp/avro-venv/bin/python scripts/make-avro-fixtures.py

The data is fixed (no randomness, no clock), so a second run writes byte-identical files and
a regenerated fixture shows up in `git diff` only when this script or the pin changed.

It writes to crates/feature-store/src/online/avro/fixtures/:

- driver_event.avsc: the record DriverEvent, the shape of a driver-stats Kafka source;
- extras.avsc: the record Extras, the rest of what the decoder supports (timestamp-nanos,
  unions with null second, an enum in a union, the null type, a logical type the decoder
  does not know, which it reads as its base type, and uuid, which it reads as a string);
- messages.bin: the valid messages, each as a 4-byte big-endian length then its bytes;
- expected.json: for each message of messages.bin, in the same order, its name, its schema
  file, its encoding and the JSON object the decoder must return, computed here with the
  decoder's mapping (null → null, boolean → bool, int/long → integer, float/double → number
  or null when not finite, string/enum → string, bytes → standard base64 with padding,
  timestamp-* → RFC 3339 with nine fractional digits and `Z`);
- invalid_*.bin: messages of driver_event.avsc the decoder must refuse, each written by
  fastavro with a writer schema that differs from driver_event.avsc in one field (the binary
  encoding has no type tags, so the bytes are read as driver_event.avsc): a timestamp out of
  the range of nanoseconds in an i64, invalid UTF-8 in a string, a union branch and an enum
  index out of range, an int out of the 32-bit range, a boolean byte other than 0 and 1.

An encoding is `raw` (the datum alone, from fastavro.schemaless_writer) or `single-object`
(Avro's single-object encoding: 0xC3 0x01, the schema's 8-byte CRC-64-AVRO fingerprint,
little-endian, then the datum). fastavro has no single-object writer, so the header is built
here from fastavro.schema.fingerprint, whose hex is already in the little-endian byte order.

Floats and doubles are chosen with short decimal forms (at most 15 significant digits, a
small exponent), so that every JSON parser, including serde_json without its
float_roundtrip feature, reads expected.json's numbers as exactly the values encoded.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import pathlib
import struct
import sys

import fastavro
import fastavro.schema

FASTAVRO_VERSION = "1.12.1"

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "feature-store" / "src" / "online" / "avro" / "fixtures"

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
I32_MIN = -(2**31)
I32_MAX = 2**31 - 1

# Nanoseconds per unit of each timestamp logical type.
TIMESTAMP_UNITS = {
    "timestamp-millis": 1_000_000,
    "timestamp-micros": 1_000,
    "timestamp-nanos": 1,
}

DRIVER_EVENT = {
    "type": "record",
    "name": "DriverEvent",
    "namespace": "com.example.rides",
    "fields": [
        {"name": "driver_id", "type": "long"},
        {
            "name": "event_timestamp",
            "type": {"type": "long", "logicalType": "timestamp-micros"},
        },
        {
            "name": "created",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
        },
        {"name": "conv_rate", "type": ["null", "double"], "default": None},
        {"name": "city", "type": "string"},
        {"name": "trips", "type": "int"},
        {"name": "active", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {
            "name": "level",
            "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"]},
        },
        {"name": "ratio", "type": "float"},
    ],
}

EXTRAS = {
    "type": "record",
    "name": "Extras",
    "namespace": "com.example.rides",
    "fields": [
        {"name": "ts_nanos", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
        {
            "name": "maybe_level",
            "type": [
                "null",
                {"type": "enum", "name": "Tier", "symbols": ["BRONZE", "SILVER", "GOLD"]},
            ],
        },
        {"name": "score", "type": ["double", "null"]},
        {"name": "maybe_city", "type": ["string", "null"]},
        {"name": "maybe_count", "type": ["null", "int"]},
        {"name": "maybe_blob", "type": ["null", "bytes"]},
        {"name": "maybe_flag", "type": ["boolean", "null"]},
        {"name": "maybe_ratio", "type": ["null", "float"]},
        {
            "name": "maybe_ts",
            "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
        },
        {"name": "nothing", "type": "null"},
        {"name": "counter", "type": {"type": "long", "logicalType": "my-counter"}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "with_default", "type": "int", "default": 7},
    ],
}

SCHEMAS = {"driver_event.avsc": DRIVER_EVENT, "extras.avsc": EXTRAS}


def micros(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def millis(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(milliseconds=1)


T1 = dt.datetime(2024, 5, 1, 12, 34, 56, 789012, tzinfo=UTC)
T2 = dt.datetime(2024, 5, 1, 12, 35, 0, 123000, tzinfo=UTC)

# (name, schema file, encoding, record)
MESSAGES = [
    (
        "typical",
        "driver_event.avsc",
        "raw",
        {
            "driver_id": 1001,
            "event_timestamp": micros(T1),
            "created": millis(T2),
            "conv_rate": 0.1234,
            "city": "Berlin",
            "trips": 42,
            "active": True,
            "blob": b"\x00\x01\xfe\xff",
            "level": "HIGH",
            "ratio": 0.375,
        },
    ),
    (
        "typical_single_object",
        "driver_event.avsc",
        "single-object",
        {
            "driver_id": 1001,
            "event_timestamp": micros(T1),
            "created": millis(T2),
            "conv_rate": 0.1234,
            "city": "Berlin",
            "trips": 42,
            "active": True,
            "blob": b"\x00\x01\xfe\xff",
            "level": "HIGH",
            "ratio": 0.375,
        },
    ),
    (
        "nulls_and_empties",
        "driver_event.avsc",
        "raw",
        {
            "driver_id": 0,
            "event_timestamp": 0,
            "created": None,
            "conv_rate": None,
            "city": "",
            "trips": 0,
            "active": False,
            "blob": b"",
            "level": "LOW",
            "ratio": 0.0,
        },
    ),
    (
        "maxima",
        "driver_event.avsc",
        "raw",
        {
            "driver_id": I64_MAX,
            # The last microsecond whose nanoseconds fit in an i64.
            "event_timestamp": I64_MAX // 1_000,
            "created": I64_MAX // 1_000_000,
            "conv_rate": float("nan"),
            "city": "Zürich 東京 🚗",
            "trips": I32_MAX,
            "active": True,
            "blob": bytes(range(256)),
            "level": "HIGH",
            "ratio": float("inf"),
        },
    ),
    (
        "minima",
        "driver_event.avsc",
        "raw",
        {
            "driver_id": I64_MIN,
            # The first microsecond whose nanoseconds fit in an i64.
            "event_timestamp": -(I64_MAX // 1_000),
            "created": -(I64_MAX // 1_000_000),
            "conv_rate": float("-inf"),
            "city": "São Paulo " * 20,
            "trips": I32_MIN,
            "active": False,
            "blob": b"\xff" * 70,
            "level": "LOW",
            "ratio": float("nan"),
        },
    ),
    (
        "negatives",
        "driver_event.avsc",
        "raw",
        {
            "driver_id": -1,
            "event_timestamp": -1,
            "created": -1,
            "conv_rate": -2.5e-10,
            "city": "a\u0000b\"c\\d\ne",
            "trips": -64,
            "active": True,
            "blob": b"\x80",
            "level": "LOW",
            "ratio": -1024.125,
        },
    ),
    (
        # A raw datum that starts with the bytes of the single-object marker (the long -98
        # is the varint 0xC3 0x01): the decoder must still read it as a raw datum.
        "marker_lookalike",
        "driver_event.avsc",
        "raw",
        {
            "driver_id": -98,
            "event_timestamp": micros(T1),
            "created": None,
            "conv_rate": 1e300,
            "city": "x",
            "trips": 64,
            "active": False,
            "blob": b"abc",
            "level": "HIGH",
            "ratio": 16777216.0,
        },
    ),
    (
        "marker_lookalike_single_object",
        "driver_event.avsc",
        "single-object",
        {
            "driver_id": -98,
            "event_timestamp": micros(T1),
            "created": None,
            "conv_rate": 1e300,
            "city": "x",
            "trips": 64,
            "active": False,
            "blob": b"abc",
            "level": "HIGH",
            "ratio": 16777216.0,
        },
    ),
    (
        "extras_values",
        "extras.avsc",
        "raw",
        {
            "ts_nanos": micros(T1) * 1_000 + 345,
            "maybe_level": "GOLD",
            "score": -3.5,
            "maybe_city": "Lyon",
            "maybe_count": -7,
            "maybe_blob": b"hi!",
            "maybe_flag": True,
            "maybe_ratio": 2.5,
            "maybe_ts": micros(T2),
            "nothing": None,
            "counter": 123456789012,
            "id": "2f1e0c3a-7b4d-4e5f-9a8b-0c1d2e3f4a5b",
            "with_default": 8,
        },
    ),
    (
        "extras_nulls",
        "extras.avsc",
        "raw",
        {
            "ts_nanos": I64_MIN,
            "maybe_level": None,
            "score": None,
            "maybe_city": None,
            "maybe_count": None,
            "maybe_blob": None,
            "maybe_flag": None,
            "maybe_ratio": None,
            "maybe_ts": None,
            "nothing": None,
            "counter": -1,
            "id": "00000000-0000-0000-0000-000000000000",
            "with_default": 7,
        },
    ),
    (
        "extras_single_object",
        "extras.avsc",
        "single-object",
        {
            "ts_nanos": I64_MAX,
            "maybe_level": "BRONZE",
            "score": float("nan"),
            "maybe_city": "",
            "maybe_count": 0,
            "maybe_blob": b"",
            "maybe_flag": False,
            "maybe_ratio": float("-inf"),
            "maybe_ts": -(I64_MAX // 1_000),
            "nothing": None,
            "counter": I64_MIN,
            "id": "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "with_default": I32_MIN,
        },
    ),
]


def with_field(schema: dict, name: str, field_type) -> dict:
    """`schema` with field `name`'s type replaced, for a writer schema of an invalid message."""
    fields = [dict(f, type=field_type) if f["name"] == name else f for f in schema["fields"]]
    return dict(schema, fields=fields)


INVALID_BASE = {
    "driver_id": 7,
    "event_timestamp": micros(T1),
    "created": None,
    "conv_rate": 0.5,
    "city": "Oslo",
    "trips": 3,
    "active": True,
    "blob": b"",
    "level": "LOW",
    "ratio": 1.5,
}

# (file, writer schema, record): each one is refused when read as driver_event.avsc.
INVALID = [
    (
        # Its nanoseconds overflow an i64.
        "invalid_timestamp_overflow.bin",
        DRIVER_EVENT,
        dict(INVALID_BASE, event_timestamp=I64_MAX // 1_000 + 1),
    ),
    (
        "invalid_utf8.bin",
        with_field(DRIVER_EVENT, "city", "bytes"),
        dict(INVALID_BASE, city=b"ab\xffcd"),
    ),
    (
        # Branch 2 of a union that has two.
        "invalid_union_branch.bin",
        with_field(DRIVER_EVENT, "conv_rate", ["null", "double", "string"]),
        dict(INVALID_BASE, conv_rate="x"),
    ),
    (
        # Index 2 of an enum with two symbols.
        "invalid_enum_index.bin",
        with_field(
            DRIVER_EVENT,
            "level",
            {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH", "EXTRA"]},
        ),
        dict(INVALID_BASE, level="EXTRA"),
    ),
    (
        # 2^31 in an int.
        "invalid_int_range.bin",
        with_field(DRIVER_EVENT, "trips", "long"),
        dict(INVALID_BASE, trips=I32_MAX + 1),
    ),
    (
        # The int 1 is the byte 0x02, not a boolean.
        "invalid_boolean.bin",
        with_field(DRIVER_EVENT, "active", "int"),
        dict(INVALID_BASE, active=1),
    ),
]


def datum(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record, strict=True)
    return buf.getvalue()


def single_object_header(schema: dict) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(schema))
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    assert len(fingerprint) == 8
    return b"\xc3\x01" + fingerprint


def rfc3339(nanos: int) -> str:
    """As chrono's to_rfc3339_opts(SecondsFormat::Nanos, true) writes it."""
    if not I64_MIN <= nanos <= I64_MAX:
        raise ValueError(f"{nanos} ns is out of the range of an i64")
    seconds, fraction = divmod(nanos, 1_000_000_000)
    t = EPOCH + dt.timedelta(seconds=seconds)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def finite_or_none(x: float):
    return x if math.isfinite(x) else None


def expected_value(field_type, value):
    """`value` of `field_type` in the decoder's JSON mapping."""
    if isinstance(field_type, list):
        if value is None:
            return None
        (other,) = [t for t in field_type if t != "null"]
        return expected_value(other, value)
    if isinstance(field_type, dict):
        base = field_type["type"]
        if base == "enum":
            return value
        logical = field_type.get("logicalType")
        if base == "long" and logical in TIMESTAMP_UNITS:
            return rfc3339(value * TIMESTAMP_UNITS[logical])
        field_type = base
    if field_type == "null":
        assert value is None
        return None
    if field_type == "boolean":
        return bool(value)
    if field_type in ("int", "long"):
        return int(value)
    if field_type == "float":
        # The value as a 32-bit float, widened to a double.
        return finite_or_none(struct.unpack("<f", struct.pack("<f", value))[0])
    if field_type == "double":
        return finite_or_none(float(value))
    if field_type == "string":
        return value
    if field_type == "bytes":
        return base64.b64encode(value).decode("ascii")
    raise ValueError(f"unexpected type {field_type!r}")


def expected_object(schema: dict, record: dict) -> dict:
    return {f["name"]: expected_value(f["type"], record[f["name"]]) for f in schema["fields"]}


def main() -> None:
    if fastavro.__version__ != FASTAVRO_VERSION:
        sys.exit(
            f"fastavro {fastavro.__version__} is installed; this script is pinned to "
            f"{FASTAVRO_VERSION} (pip install -r scripts/avro-fixtures-requirements.txt)"
        )
    # The fingerprint of "null" from the Avro specification's reference implementation
    # (0x63DD24E7CC258F8A), to check the byte order of fastavro's hex.
    assert fastavro.schema.fingerprint('"null"', "CRC-64-AVRO") == "8a8f25cce724dd63"

    OUT.mkdir(parents=True, exist_ok=True)
    for file, schema in SCHEMAS.items():
        (OUT / file).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")

    stream = bytearray()
    expected = []
    for name, schema_file, encoding, record in MESSAGES:
        schema = SCHEMAS[schema_file]
        message = datum(schema, record)
        if encoding == "single-object":
            message = single_object_header(schema) + message
        else:
            assert encoding == "raw"
        stream += struct.pack(">I", len(message)) + message
        expected.append(
            {
                "name": name,
                "schema": schema_file,
                "encoding": encoding,
                "value": expected_object(schema, record),
            }
        )
    (OUT / "messages.bin").write_bytes(bytes(stream))
    text = json.dumps(expected, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    (OUT / "expected.json").write_text(text, encoding="utf-8")

    for file, writer_schema, record in INVALID:
        (OUT / file).write_bytes(datum(writer_schema, record))

    print(f"wrote {len(MESSAGES)} messages and {len(INVALID)} invalid ones to {OUT}")


if __name__ == "__main__":
    main()
