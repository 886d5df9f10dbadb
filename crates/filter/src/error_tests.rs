//! Malformed filters and order_by clauses: each error names its position and what was expected.

use super::tests::*;
use super::*;

#[test]
fn key_errors() {
    assert_err(
        "metrics. > 1",
        Entity::Run,
        8,
        &["a key after metrics., found whitespace"],
    );
    assert_err(
        "metrics.",
        Entity::Run,
        8,
        &["a key after metrics.", "end of filter"],
    );
    assert_err("metrics.`` > 1", Entity::Run, 8, &["empty key"]);
    assert_err(
        "metrics.`abc > 1",
        Entity::Run,
        8,
        &["unterminated quoted key starting at position 8"],
    );
    assert_err(
        "metrics.a@b > 1",
        Entity::Run,
        9,
        &["invalid character '@'", "a@b", "backticks"],
    );
}

#[test]
fn comparator_errors() {
    let e = assert_err(
        "metrics.auc foo 1",
        Entity::Run,
        12,
        &[
            "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL) after metrics.auc",
            "found \"foo\"",
        ],
    );
    assert_eq!(
        e.to_string(),
        "invalid filter at position 12: expected a comparison operator (=, !=, <, <=, >, >=, \
         LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL) after metrics.auc, found \"foo\""
    );
    assert_err(
        "metrics.auc",
        Entity::Run,
        11,
        &["comparison operator", "end of filter"],
    );
    assert_err(
        "metrics.auc == 1",
        Entity::Run,
        12,
        &["comparison operator", "\"==\""],
    );
    assert_err(
        "metrics.auc <> 1",
        Entity::Run,
        12,
        &["comparison operator", "\"<>\""],
    );
    assert_err(
        "params.p NOT LIKE 'x'",
        Entity::Run,
        13,
        &["IN after NOT", "LIKE"],
    );
    assert_err(
        "metrics.auc LIKE 'x'",
        Entity::Run,
        12,
        &[
            "operator LIKE is not allowed for metrics.auc",
            "=, !=, <, <=, >, >=, IS NULL, IS NOT NULL",
        ],
    );
    assert_err(
        "metrics.auc IN ('x')",
        Entity::Run,
        12,
        &["operator IN is not allowed"],
    );
    assert_err(
        "params.p > 'x'",
        Entity::Run,
        9,
        &["operator > is not allowed for params.p"],
    );
    assert_err(
        "start_time LIKE '1'",
        Entity::Run,
        11,
        &[
            "operator LIKE is not allowed for start_time",
            "=, !=, <, <=, >, >=",
        ],
    );
    assert_err(
        "status < 'x'",
        Entity::Run,
        7,
        &["operator < is not allowed for status"],
    );
    assert_err(
        "datasets.name >= 'x'",
        Entity::Run,
        14,
        &["operator >= is not allowed"],
    );
}

#[test]
fn value_errors() {
    let e = assert_err("params.p = 1", Entity::Run, 11, &[]);
    assert_eq!(
        e.message,
        "expected a quoted string for params.p, found number 1"
    );
    assert_err(
        "metrics.auc > 'x'",
        Entity::Run,
        14,
        &["expected a number for metrics.auc", "found string 'x'"],
    );
    assert_err(
        "attributes.end_time = \"5\"",
        Entity::Run,
        22,
        &["expected a number for attributes.end_time", "string \"5\""],
    );
    assert_err(
        "status = FINISHED",
        Entity::Run,
        9,
        &["quoted string for status", "\"FINISHED\""],
    );
    assert_err(
        "datasets.name = 3",
        Entity::Run,
        16,
        &["quoted string", "number 3"],
    );
    let e = assert_err("metrics.auc >", Entity::Run, 13, &[]);
    assert_eq!(e.message, "expected a value after >, found end of filter");
    assert_err(
        "metrics.auc >  ",
        Entity::Run,
        15,
        &["value after >", "end of filter"],
    );
    assert_err(
        "params.p = 'abc",
        Entity::Run,
        11,
        &["unterminated string starting at position 11"],
    );
    assert_err(
        "tags.a = 'x' and tags.b = \"it\\\"s",
        Entity::Run,
        26,
        &["unterminated string starting at position 26"],
    );
    assert_err(
        "metrics.a > `1`",
        Entity::Run,
        12,
        &["a number for metrics.a", "\"`1`\""],
    );
}

#[test]
fn list_errors() {
    assert_err(
        "params.p IN 'x'",
        Entity::Run,
        12,
        &["parenthesised list", "after IN", "\"'x'\""],
    );
    assert_err(
        "params.p IN ()",
        Entity::Run,
        13,
        &["quoted string in the list after IN", "\")\""],
    );
    assert_err(
        "params.p IN ('a',)",
        Entity::Run,
        17,
        &["quoted string in the list", "\")\""],
    );
    assert_err(
        "params.p NOT IN ('a' 'b')",
        Entity::Run,
        21,
        &[", or ) in the list after NOT IN", "\"'b'\""],
    );
    assert_err(
        "params.p IN ('a'",
        Entity::Run,
        16,
        &[", or )", "end of filter"],
    );
    assert_err(
        "params.p IN (1)",
        Entity::Run,
        13,
        &["quoted string in the list", "\"1\""],
    );
    assert_err(
        "params.p IN",
        Entity::Run,
        11,
        &["parenthesised list", "end of filter"],
    );
    assert_err(
        "params.p = ('a')",
        Entity::Run,
        11,
        &["quoted string for params.p", "\"(\""],
    );
}

#[test]
fn conjunction_errors() {
    assert_err(
        "metrics.a > 1 x",
        Entity::Run,
        14,
        &["expected AND or end of filter, found \"x\""],
    );
    assert_err(
        "metrics.a > 1 metrics.b < 2",
        Entity::Run,
        14,
        &["AND or end of filter", "metrics.b"],
    );
    assert_err(
        "metrics.a > 1 and",
        Entity::Run,
        17,
        &["expected an identifier", "end of filter"],
    );
    assert_err(
        "metrics.a > 1 and  ",
        Entity::Run,
        19,
        &["identifier", "end of filter"],
    );
    assert_err(
        "metrics.a > 1;",
        Entity::Run,
        13,
        &["AND or end of filter", "\";\""],
    );
    assert_err(
        "metrics.a > 1 andx",
        Entity::Run,
        14,
        &["AND or end of filter", "andx"],
    );
    assert_err(
        "(metrics.a > 1)",
        Entity::Run,
        0,
        &["expected an identifier", "\"(\""],
    );
    assert_err(
        "and metrics.a > 1",
        Entity::Run,
        0,
        &["unknown attribute 'and'"],
    );
}

#[test]
fn or_is_rejected_everywhere() {
    for (input, pos) in [
        ("metrics.a > 1 OR metrics.b < 2", 14),
        ("metrics.a > 1 or metrics.b < 2", 14),
        ("or metrics.a > 1", 0),
        ("status Or = 'x'", 7),
        ("status = or", 9),
        ("tags.a = 'x' AND OR tags.b = 'y'", 17),
    ] {
        assert_err(input, Entity::Run, pos, &["OR", "only supports AND"]);
    }
    // "or" is an ordinary key or value.
    assert_eq!(one("tags.or = 'or'"), clause(tag("or"), Op::Eq, s("or")));
}

#[test]
fn positions_are_character_offsets() {
    // "é" and "日" are multi-byte in UTF-8 but count as one character each.
    assert_err(
        "tags.`é日` = 'x' foo",
        Entity::Run,
        16,
        &["AND or end of filter", "foo"],
    );
    assert_err(
        "params.日本 = 5",
        Entity::Run,
        12,
        &["quoted string", "number 5"],
    );
}

#[test]
fn order_by_errors() {
    assert_order_err(
        "",
        Entity::Run,
        0,
        &["identifier", "end of order_by clause"],
    );
    assert_order_err(
        "   ",
        Entity::Run,
        3,
        &["identifier", "end of order_by clause"],
    );
    assert_order_err(
        "metrics.auc DESC x",
        Entity::Run,
        17,
        &["expected end of order_by clause, found \"x\""],
    );
    assert_order_err(
        "metrics.auc sideways",
        Entity::Run,
        12,
        &["ASC, DESC or end of order_by clause", "sideways"],
    );
    assert_order_err(
        "metrics.auc, params.p",
        Entity::Run,
        11,
        &["ASC, DESC", "\",\""],
    );
    assert_order_err("metrics.`a`DESC", Entity::Run, 11, &["ASC, DESC"]);
    assert_order_err(
        "datasets.name",
        Entity::Run,
        0,
        &["datasets cannot be used in order_by"],
    );
    assert_order_err("foo", Entity::Run, 0, &["unknown attribute 'foo'"]);
    assert_order_err(
        "experiment_id",
        Entity::Run,
        0,
        &["unknown attribute 'experiment_id'"],
    );
    assert_order_err(
        "status",
        Entity::Experiment,
        0,
        &["unknown attribute 'status'", "experiment_id"],
    );
    assert_order_err(
        "metrics.auc",
        Entity::Experiment,
        0,
        &["experiments can be ordered by attributes and tags only"],
    );
    assert_order_err("metrics.auc = 1", Entity::Run, 12, &["ASC, DESC", "\"=\""]);
    assert_order_err("metrics.", Entity::Run, 8, &["a key after metrics."]);
}

#[test]
fn error_display() {
    let e = FilterError::new(12, "expected AND or end of filter, found \"x\"");
    assert_eq!(
        e.to_string(),
        "invalid filter at position 12: expected AND or end of filter, found \"x\""
    );
    let e = FilterError::order_by(3, "boom");
    assert_eq!(e.to_string(), "invalid order_by clause at position 3: boom");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().contains("order_by"));
}

#[test]
fn registered_model_errors() {
    for (input, pos, found) in [
        ("metrics.x > 1", 0, "metrics.x"),
        ("params.p = 'x'", 0, "params.p"),
        ("datasets.name = 'x'", 0, "datasets.name"),
        ("tags.a = 'x' and metric.b > 1", 17, "metric.b"),
    ] {
        assert_err(
            input,
            Entity::RegisteredModel,
            pos,
            &[&format!(
                "registered models can be filtered by attributes and tags only, found {found}"
            )],
        );
    }
    let e = assert_err(
        "status = 'READY'",
        Entity::RegisteredModel,
        0,
        &["unknown attribute 'status' for registered models; valid attributes: name"],
    );
    assert_eq!(
        e.to_string(),
        "invalid filter at position 0: unknown attribute 'status' for registered models; \
         valid attributes: name"
    );
    // Timestamps order registered models but do not filter them, as in MLflow.
    assert_err(
        "attributes.creation_timestamp > 1",
        Entity::RegisteredModel,
        11,
        &["unknown attribute 'creation_timestamp' for registered models"],
    );
    assert_err(
        "version_number = 1",
        Entity::RegisteredModel,
        0,
        &["unknown attribute 'version_number'"],
    );
    assert_err(
        "name > 'a'",
        Entity::RegisteredModel,
        5,
        &[
            "operator > is not allowed for name",
            "=, !=, LIKE, ILIKE, IN, NOT IN",
        ],
    );
    assert_err(
        "name = 1",
        Entity::RegisteredModel,
        7,
        &["expected a quoted string for name, found number 1"],
    );
    assert_err("name IS NULL", Entity::RegisteredModel, 5, &["not allowed"]);

    assert_order_err(
        "metrics.auc DESC",
        Entity::RegisteredModel,
        0,
        &["registered models can be ordered by attributes and tags only, found metrics.auc"],
    );
    assert_order_err(
        "timestamp",
        Entity::RegisteredModel,
        0,
        &[
            "unknown attribute 'timestamp' for registered models",
            "valid attributes: name, creation_timestamp, last_updated_timestamp",
        ],
    );
    assert_order_err(
        "version_number",
        Entity::RegisteredModel,
        0,
        &["unknown attribute 'version_number'"],
    );
}

#[test]
fn model_version_errors() {
    for (input, pos, found) in [
        ("metrics.x > 1", 0, "metrics.x"),
        ("params.p = 'x'", 0, "params.p"),
        ("datasets.digest = 'x'", 0, "datasets.digest"),
        ("name = 'm' and metrics.acc < 1", 15, "metrics.acc"),
    ] {
        assert_err(
            input,
            Entity::ModelVersion,
            pos,
            &[&format!(
                "model versions can be filtered by attributes and tags only, found {found}"
            )],
        );
    }
    assert_err(
        "stage = 'Production'",
        Entity::ModelVersion,
        0,
        &["unknown attribute 'stage' for model versions; \
             valid attributes: name, version_number, run_id, source_path"],
    );
    assert_err(
        "last_updated_timestamp > 1",
        Entity::ModelVersion,
        0,
        &["unknown attribute 'last_updated_timestamp' for model versions"],
    );
    assert_err(
        "version_number LIKE '1%'",
        Entity::ModelVersion,
        15,
        &[
            "operator LIKE is not allowed for version_number",
            "allowed operators: =, !=, <, <=, >, >=",
        ],
    );
    assert_err(
        "version_number IN ('1', '2')",
        Entity::ModelVersion,
        15,
        &["operator IN is not allowed for version_number"],
    );
    assert_err(
        "version_number = '1'",
        Entity::ModelVersion,
        17,
        &["expected a number for version_number, found string '1'"],
    );
    assert_err(
        "run_id >= 'abc'",
        Entity::ModelVersion,
        7,
        &["operator >= is not allowed for run_id"],
    );
    assert_err(
        "source_path < 's3://b'",
        Entity::ModelVersion,
        12,
        &["operator < is not allowed for source_path"],
    );
    assert_err(
        "run_id = 12",
        Entity::ModelVersion,
        9,
        &["a quoted string for run_id"],
    );

    assert_order_err(
        "params.p",
        Entity::ModelVersion,
        0,
        &["model versions can be ordered by attributes and tags only, found params.p"],
    );
    assert_order_err(
        "run_id DESC",
        Entity::ModelVersion,
        0,
        &[
            "unknown attribute 'run_id' for model versions",
            "valid attributes: name, version_number, creation_timestamp, last_updated_timestamp",
        ],
    );
    assert_order_err(
        "attributes.source_path",
        Entity::ModelVersion,
        11,
        &["unknown attribute 'source_path'"],
    );
}

#[test]
fn registry_attributes_are_refused_elsewhere() {
    assert_err(
        "version_number = 1",
        Entity::Run,
        0,
        &["unknown attribute 'version_number' for runs"],
    );
    assert_err(
        "source_path = 'x'",
        Entity::Experiment,
        0,
        &["unknown attribute 'source_path' for experiments"],
    );
    assert_order_err(
        "creation_timestamp",
        Entity::Experiment,
        0,
        &["unknown attribute 'creation_timestamp' for experiments"],
    );
}
