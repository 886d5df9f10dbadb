use super::*;

const GOOD: &str = r#"
entities:
  - name: driver
    join_keys: [driver_id]
    value_type: int64
  - name: city
    join_keys: [{name: city, value_type: string}, {name: country, value_type: string}]
sources:
  - name: driver_stats_source
    type: parquet
    path: data/driver_stats.parquet
    created_timestamp_column: created
  - name: driver_push
    type: push
    batch_source: driver_stats_source
feature_views:
  - name: driver_stats
    entities: [driver]
    ttl: 1d
    source: driver_stats_source
    schema:
      - {name: conv_rate, dtype: float32}
      - {name: trips, dtype: int64}
    tags: {team: rides}
  - name: city_stats
    entities: [city]
    ttl: 500ms
    source: driver_stats_source
    online: false
    schema:
      - {name: demand, dtype: float64}
  - name: global_stats
    source: driver_stats_source
    schema:
      - {name: total, dtype: int64}
feature_services:
  - name: driver_activity
    features: [driver_stats, "city_stats:demand"]
"#;

fn read(text: &str) -> Result<Definitions, String> {
    Definitions::from_yaml("features.yaml", text).map_err(|e| e.0)
}

#[test]
fn a_good_file_reads_whole() {
    let d = read(GOOD).unwrap();
    assert_eq!(
        d.entities["driver"].join_keys[0].value_type,
        ValueType::Int64
    );
    assert_eq!(d.entities["city"].join_keys.len(), 2);
    let s = &d.sources["driver_stats_source"];
    assert_eq!(s.timestamp_field, "event_timestamp", "Feast's default");
    assert_eq!(s.created_timestamp_column.as_deref(), Some("created"));
    let v = &d.feature_views["driver_stats"];
    assert_eq!(v.ttl_nanos, 86_400_000_000_000);
    assert!(v.online, "online by default");
    assert_eq!(d.feature_views["city_stats"].ttl_nanos, 500_000_000);
    assert!(!d.feature_views["city_stats"].online);
    assert_eq!(
        d.feature_views["global_stats"].ttl_nanos, 0,
        "no TTL is unlimited"
    );
    assert!(d.feature_views["global_stats"].entities.is_empty());
    let p = &d.feature_services["driver_activity"].projections;
    assert_eq!(p.len(), 2);
    assert!(p[0].features.is_empty(), "a whole view");
    assert_eq!(p[1].features, ["demand"]);
}

#[test]
fn a_syntax_or_shape_mistake_names_its_line_and_column() {
    let e = read("entities:\n  - name: driver\n    join_kyes: [id]\n").unwrap_err();
    assert!(e.starts_with("features.yaml: "), "{e}");
    assert!(e.contains("join_kyes") && e.contains("line 3"), "{e}");
    let e = read("entities: [\n").unwrap_err();
    assert!(e.contains("line"), "{e}");
    let e = read(&GOOD.replace("dtype: float32", "dtype: float128")).unwrap_err();
    assert!(e.contains("float128") && e.contains("line"), "{e}");
}

#[test]
fn a_reference_mistake_names_the_object_and_its_line() {
    let e = read(&GOOD.replace("entities: [driver]", "entities: [drivers]")).unwrap_err();
    assert!(
        e.contains("entity `drivers` is not defined (defined: city, driver)"),
        "{e}"
    );
    assert!(e.contains("line 17"), "{e}");
    let e = read(&GOOD.replace(
        "source: driver_stats_source\n    schema:\n      - {name: total",
        "source: nowhere\n    schema:\n      - {name: total",
    ))
    .unwrap_err();
    assert!(e.contains("source `nowhere` is not defined"), "{e}");
    let e = read(&GOOD.replace("city_stats:demand", "city_stats:supply")).unwrap_err();
    assert!(
        e.contains("feature view `city_stats` has no feature `supply`"),
        "{e}"
    );
    let e = read(&GOOD.replace("[driver_stats, ", "[driver_stat, ")).unwrap_err();
    assert!(
        e.contains("feature view `driver_stat` is not defined"),
        "{e}"
    );
}

#[test]
fn a_negative_ttl_is_an_error_and_zero_is_unlimited() {
    let e = read(&GOOD.replace("ttl: 1d", "ttl: -3600")).unwrap_err();
    assert!(
        e.contains("negative TTL") && e.contains("driver_stats"),
        "{e}"
    );
    let d = read(&GOOD.replace("ttl: 1d", "ttl: 0")).unwrap();
    assert_eq!(d.feature_views["driver_stats"].ttl_nanos, 0);
    let d = read(&GOOD.replace("ttl: 1d", "ttl: 3600")).unwrap();
    assert_eq!(d.feature_views["driver_stats"].ttl_nanos, 3_600_000_000_000);
}

#[test]
fn names_and_columns_do_not_clash() {
    let twice = GOOD.replace(
        "  - name: city\n    join_keys",
        "  - name: driver\n    join_keys",
    );
    assert!(read(&twice).unwrap_err().contains("entity `driver`"));
    let e = read(&GOOD.replace(
        "{name: trips, dtype: int64}",
        "{name: driver_id, dtype: int64}",
    ))
    .unwrap_err();
    assert!(e.contains("feature `driver_id` is also a join key"), "{e}");
    let e = read(&GOOD.replace(
        "{name: trips, dtype: int64}",
        "{name: conv_rate, dtype: int64}",
    ))
    .unwrap_err();
    assert!(e.contains("feature `conv_rate` is also a feature"), "{e}");
    let e = read(&GOOD.replace(
        "{name: trips, dtype: int64}",
        "{name: created, dtype: int64}",
    ))
    .unwrap_err();
    assert!(e.contains("created timestamp column"), "{e}");
    let e = read(&GOOD.replace("name: driver_activity", "name: \"driver activity\"")).unwrap_err();
    assert!(e.contains("no spaces"), "{e}");
}

#[test]
fn sources_say_what_they_miss_or_do_not_take() {
    let e = read(&GOOD.replace("    path: data/driver_stats.parquet\n", "")).unwrap_err();
    assert!(e.contains("a parquet source needs `path`"), "{e}");
    let e = read(&GOOD.replace("type: push", "type: kafka")).unwrap_err();
    assert!(e.contains("a kafka source needs `topic`"), "{e}");
    let e = read(&GOOD.replace("type: push", "type: bigquery")).unwrap_err();
    assert!(e.contains("unknown type `bigquery`"), "{e}");
    let e = read(&GOOD.replace(
        "    type: push\n    batch_source: driver_stats_source",
        "    type: push\n    batch_source: driver_push",
    ))
    .unwrap_err();
    assert!(e.contains("is not a parquet source"), "{e}");
    let e = read(&GOOD.replace("    type: push\n", "    type: push\n    path: x.parquet\n"))
        .unwrap_err();
    assert!(e.contains("`path` does not apply to a push source"), "{e}");
}

#[test]
fn keys_need_a_type_a_key_can_have() {
    let e = read("entities:\n  - name: d\n    join_keys: [id]\n").unwrap_err();
    assert!(e.contains("value_type"), "{e}");
    let e =
        read("entities:\n  - name: d\n    join_keys: [id]\n    value_type: float64\n").unwrap_err();
    assert!(e.contains("keys are int32, int64 or string"), "{e}");
}

/// A Kafka source of Avro values and a view on it, with `schema` as its writer's schema.
fn avro_defs(format: &str, schema: Option<&str>, features: &str) -> String {
    let schema = schema.map_or(String::new(), |s| format!("    avro_schema: '{s}'\n"));
    format!(
        "entities:\n  - name: driver\n    join_keys: [driver_id]\n    value_type: int64\n\
         sources:\n  - name: events\n    type: kafka\n    topic: t\n    format: {format}\n{schema}\
         feature_views:\n  - name: stream\n    entities: [driver]\n    source: events\n    schema:\n{features}"
    )
}

const AVRO: &str = r#"{"type": "record", "name": "E", "fields": [{"name": "driver_id", "type": "long"}, {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}}, {"name": "conv_rate", "type": ["null", "double"]}]}"#;

#[test]
fn avro_sources_need_a_schema_that_holds_what_their_views_read() {
    let rate = "      - {name: conv_rate, dtype: float64}\n";
    let d = read(&avro_defs("avro", Some(AVRO), rate)).unwrap();
    assert!(matches!(
        &d.sources["events"].kind,
        SourceKind::Kafka {
            format: MessageFormat::Avro,
            avro_schema: Some(_),
            ..
        }
    ));
    let e = read(&avro_defs("avro", None, rate)).unwrap_err();
    assert!(e.contains("format avro needs `avro_schema`"), "{e}");
    let e = read(&avro_defs("json", Some(AVRO), rate)).unwrap_err();
    assert!(
        e.contains("`avro_schema` applies to format avro only"),
        "{e}"
    );
    let e = read(&avro_defs("avro", Some(r#"{"type": "string"}"#), rate)).unwrap_err();
    assert!(e.contains("its `avro_schema`"), "{e}");
    let no_time = AVRO.replace("event_timestamp", "ts");
    let e = read(&avro_defs("avro", Some(&no_time), rate)).unwrap_err();
    assert!(e.contains("no field `event_timestamp`"), "{e}");
    let trips = "      - {name: trips, dtype: int64}\n";
    let e = read(&avro_defs("avro", Some(AVRO), trips)).unwrap_err();
    assert!(
        e.contains("column `trips` (a feature) is not a field of source `events`'s avro_schema"),
        "{e}"
    );
    let e = read(&GOOD.replace(
        "    type: push\n",
        &format!("    type: push\n    avro_schema: '{AVRO}'\n"),
    ))
    .unwrap_err();
    assert!(
        e.contains("`avro_schema` does not apply to a push source"),
        "{e}"
    );
}
