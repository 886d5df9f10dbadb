//! The decoder against messages that fastavro wrote (scripts/make-avro-fixtures.py), and
//! its refusals: of invalid messages, from fastavro or made by hand where no encoder would
//! write them, and of the schemas it does not support.

use serde_json::{json, Value as Json};

use super::{decode, AvroSchema};

const DRIVER_EVENT: &str = include_str!("fixtures/driver_event.avsc");
const EXTRAS: &str = include_str!("fixtures/extras.avsc");
const MESSAGES: &[u8] = include_bytes!("fixtures/messages.bin");
const EXPECTED: &str = include_str!("fixtures/expected.json");

fn driver_event() -> AvroSchema {
    AvroSchema::parse(DRIVER_EVENT).expect("driver_event.avsc parses")
}

/// The messages of messages.bin: each a 4-byte big-endian length, then its bytes.
fn messages() -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    let mut rest = MESSAGES;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (message, tail) = tail.split_at(len);
        out.push(message);
        rest = tail;
    }
    out
}

/// expected.json's entries, with each one's message.
fn cases() -> Vec<(Json, &'static [u8])> {
    let expected: Vec<Json> = serde_json::from_str(EXPECTED).expect("expected.json");
    let messages = messages();
    assert_eq!(
        expected.len(),
        messages.len(),
        "one expectation per message"
    );
    expected.into_iter().zip(messages).collect()
}

fn schema_of(case: &Json) -> AvroSchema {
    match case["schema"].as_str() {
        Some("driver_event.avsc") => driver_event(),
        Some("extras.avsc") => AvroSchema::parse(EXTRAS).expect("extras.avsc parses"),
        other => panic!("unknown schema file {other:?}"),
    }
}

fn decode_err(schema: &AvroSchema, bytes: &[u8]) -> String {
    match decode(schema, bytes) {
        Ok(row) => panic!("decoded {row:?}, expected an error"),
        Err(e) => e,
    }
}

fn parse_err(text: &str) -> String {
    match AvroSchema::parse(text) {
        Ok(s) => panic!("parsed {s:?}, expected an error"),
        Err(e) => e,
    }
}

/// A record of one field of type `ty` (JSON).
fn one_field(ty: Json) -> String {
    json!({"type": "record", "name": "R", "fields": [{"name": "x", "type": ty}]}).to_string()
}

#[test]
fn avro_decodes_what_fastavro_wrote() {
    let cases = cases();
    assert!(cases.len() >= 10);
    for (case, message) in &cases {
        let name = case["name"].as_str().expect("name");
        let single_object = case["encoding"] == "single-object";
        if single_object {
            assert_eq!(message[..2], [0xC3, 0x01], "{name}");
        }
        let row = decode(&schema_of(case), message).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(Json::Object(row), case["value"], "{name}");
    }
    // Both encodings, and a raw datum that starts like a single-object one.
    let names: Vec<&str> = cases
        .iter()
        .filter_map(|(c, _)| c["name"].as_str())
        .collect();
    for name in ["typical_single_object", "marker_lookalike", "extras_nulls"] {
        assert!(names.contains(&name), "{name} is among the fixtures");
    }
    let lookalike = cases
        .iter()
        .find(|(c, _)| c["name"] == "marker_lookalike")
        .expect("marker_lookalike");
    assert_eq!(lookalike.1[..2], [0xC3, 0x01]);
}

#[test]
fn avro_field_names_are_in_schema_order() {
    assert_eq!(
        driver_event().field_names(),
        [
            "driver_id",
            "event_timestamp",
            "created",
            "conv_rate",
            "city",
            "trips",
            "active",
            "blob",
            "level",
            "ratio"
        ]
    );
    let empty = AvroSchema::parse(r#"{"type":"record","name":"E","fields":[]}"#).expect("parses");
    assert!(empty.field_names().is_empty());
    assert_eq!(
        decode(&empty, &[]).expect("an empty record"),
        serde_json::Map::new()
    );
}

#[test]
fn avro_refuses_every_truncation_and_trailing_bytes() {
    for (case, message) in cases() {
        let schema = schema_of(&case);
        let name = case["name"].as_str().expect("name");
        for end in 0..message.len() {
            let e = decode_err(&schema, &message[..end]);
            assert!(e.contains("truncated"), "{name}[..{end}]: {e}");
        }
        for extra in [&[0u8][..], &[1, 2, 3]] {
            let mut longer = message.to_vec();
            longer.extend_from_slice(extra);
            let e = decode_err(&schema, &longer);
            assert!(e.contains("left over after the record"), "{name}: {e}");
        }
    }
}

#[test]
fn avro_refuses_invalid_messages_from_fastavro() {
    let schema = driver_event();
    let cases: [(&[u8], &[&str]); 6] = [
        (
            include_bytes!("fixtures/invalid_timestamp_overflow.bin"),
            &["field `event_timestamp`", "out of the range"],
        ),
        (
            include_bytes!("fixtures/invalid_utf8.bin"),
            &["field `city`", "not UTF-8"],
        ),
        (
            include_bytes!("fixtures/invalid_union_branch.bin"),
            &["field `conv_rate`", "union branch", "is 2"],
        ),
        (
            include_bytes!("fixtures/invalid_enum_index.bin"),
            &["field `level`", "enum index", "is 2", "2 symbols"],
        ),
        (
            include_bytes!("fixtures/invalid_int_range.bin"),
            &["field `trips`", "out of range: 2147483648"],
        ),
        (
            include_bytes!("fixtures/invalid_boolean.bin"),
            &["field `active`", "0x02"],
        ),
    ];
    for (bytes, wanted) in cases {
        let e = decode_err(&schema, bytes);
        for w in wanted {
            assert!(e.contains(w), "{e:?} should contain {w:?}");
        }
    }
}

#[test]
fn avro_varints_stop_at_ten_bytes_and_64_bits() {
    let schema = AvroSchema::parse(&one_field(json!("long"))).expect("parses");
    // The longest valid varints: the zigzag encodings of i64::MIN and i64::MAX.
    let mut min = vec![0xFF; 9];
    min.push(0x01);
    assert_eq!(
        decode(&schema, &min).expect("i64::MIN")["x"],
        json!(i64::MIN)
    );
    let mut max = vec![0xFE];
    max.extend([0xFF; 8]);
    max.push(0x01);
    assert_eq!(
        decode(&schema, &max).expect("i64::MAX")["x"],
        json!(i64::MAX)
    );
    // A continuation bit on the tenth byte.
    let mut overlong = vec![0x80; 10];
    overlong.push(0x00);
    let e = decode_err(&schema, &overlong);
    assert!(e.contains("longer than 10 bytes"), "{e}");
    // A tenth byte with bits above the 64th.
    let mut overflow = vec![0xFF; 9];
    overflow.push(0x02);
    let e = decode_err(&schema, &overflow);
    assert!(e.contains("overflows 64 bits"), "{e}");
    // A varint cut short.
    let e = decode_err(&schema, &[0x80, 0x80]);
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn avro_refuses_negative_lengths_and_short_headers() {
    for ty in ["string", "bytes"] {
        let schema = AvroSchema::parse(&one_field(json!(ty))).expect("parses");
        // The varint 0x01 is -1.
        let e = decode_err(&schema, &[0x01]);
        assert!(e.contains("negative length: -1"), "{ty}: {e}");
        // A length beyond the message.
        let e = decode_err(&schema, &[0x08, b'a']);
        assert!(e.contains("needs 4 bytes, 1 left"), "{ty}: {e}");
    }
    // A single-object marker with a fingerprint cut short, which is no raw datum either.
    let schema = driver_event();
    let e = decode_err(&schema, &[0xC3, 0x01, 0x00]);
    assert!(e.contains("single-object header is 10 bytes"), "{e}");
    assert!(e.contains("as a raw datum: "), "{e}");
}

#[test]
fn avro_schema_types_in_either_form() {
    let text = json!({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": {"type": "long"}},
        {"name": "b", "type": ["null", {"type": "string"}]},
        {"name": "c", "type": [{"type": "long", "logicalType": "timestamp-nanos"}, "null"]},
        // Not in the specification: read as the base type.
        {"name": "d", "type": {"type": "string", "logicalType": "postal-code"}},
        {"name": "e", "type": ["null", {"type": "enum", "name": "E", "symbols": ["A", "B"]}]},
    ]})
    .to_string();
    let schema = AvroSchema::parse(&text).expect("parses");
    // a = -2, b = branch 1 "hi", c = branch 0 1 ns, d = "x", e = branch 1 symbol 1.
    let bytes = [
        0x03, 0x02, 0x04, b'h', b'i', 0x00, 0x02, 0x02, b'x', 0x02, 0x02,
    ];
    assert_eq!(
        Json::Object(decode(&schema, &bytes).expect("decodes")),
        json!({"a": -2, "b": "hi", "c": "1970-01-01T00:00:00.000000001Z", "d": "x", "e": "B"})
    );
    // c's null is branch 1, b's null branch 0.
    let bytes = [0x00, 0x00, 0x02, 0x00, 0x00];
    assert_eq!(
        Json::Object(decode(&schema, &bytes).expect("decodes")),
        json!({"a": 0, "b": null, "c": null, "d": "", "e": null})
    );
}

#[test]
fn avro_refuses_unsupported_schemas() {
    let record =
        |fields: Json| json!({"type": "record", "name": "R", "fields": fields}).to_string();
    let cases: Vec<(String, &[&str])> = vec![
        ("not json".to_owned(), &["not JSON"]),
        (
            json!("long").to_string(),
            &["top level must be a record", "long"],
        ),
        (
            json!(["null", "long"]).to_string(),
            &["top level must be a record", "union"],
        ),
        (
            json!({"type": "enum", "name": "E", "symbols": ["A"]}).to_string(),
            &["top level must be a record", "enum"],
        ),
        (
            json!({"type": "record", "name": "R"}).to_string(),
            &["no \"fields\""],
        ),
        (
            one_field(json!({"type": "array", "items": "long"})),
            &[
                "field `x`",
                "type array is not supported",
                "flat record of primitives",
            ],
        ),
        (
            one_field(json!({"type": "map", "values": "long"})),
            &["field `x`", "type map is not supported"],
        ),
        (
            one_field(json!({"type": "record", "name": "Inner", "fields": []})),
            &["field `x`", "type record is not supported"],
        ),
        (
            one_field(json!({"type": "fixed", "name": "F", "size": 4})),
            &["field `x`", "type fixed is not supported"],
        ),
        (
            one_field(json!(["null", {"type": "array", "items": "long"}])),
            &["field `x`", "type array is not supported"],
        ),
        (
            one_field(json!("com.example.Level")),
            &["field `x`", "`com.example.Level`", "named type"],
        ),
        (
            one_field(json!(["null", "long", "string"])),
            &["field `x`", "null and one other type", "not 3 branches"],
        ),
        (
            one_field(json!(["long", "string"])),
            &["field `x`", "has no null"],
        ),
        (
            one_field(json!(["null", "null"])),
            &["field `x`", "null twice"],
        ),
        (
            one_field(json!(["null", ["null", "long"]])),
            &["field `x`", "cannot hold a union"],
        ),
        (
            one_field(json!({"type": "int", "logicalType": "date"})),
            &["field `x`", "logical type date on int is not supported"],
        ),
        (
            one_field(json!({"type": "bytes", "logicalType": "decimal", "precision": 4})),
            &[
                "field `x`",
                "logical type decimal on bytes is not supported",
            ],
        ),
        (
            one_field(json!({"type": "int", "logicalType": "timestamp-millis"})),
            &[
                "field `x`",
                "timestamp-millis must annotate a long, not int",
            ],
        ),
        (
            one_field(json!({"type": "enum", "name": "E", "symbols": []})),
            &["field `x`", "non-empty array of distinct strings"],
        ),
        (
            one_field(json!({"type": "enum", "name": "E", "symbols": ["A", "A"]})),
            &["field `x`", "distinct strings"],
        ),
        (
            one_field(json!({"logicalType": "uuid"})),
            &["field `x`", "type name"],
        ),
        (one_field(json!(3)), &["field `x`", "3 is not an Avro type"]),
        (
            record(json!([{"name": "a", "type": "long"}, {"name": "a", "type": "int"}])),
            &["field `a` appears twice"],
        ),
        (record(json!([{"type": "long"}])), &["field 1", "no name"]),
        (record(json!([{"name": "a"}])), &["field `a` has no type"]),
    ];
    for (text, wanted) in cases {
        let e = parse_err(&text);
        for w in wanted {
            assert!(e.contains(w), "{text}: {e:?} should contain {w:?}");
        }
    }
}
