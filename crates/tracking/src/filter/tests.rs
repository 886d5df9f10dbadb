//! Unit and property tests of the filter grammar.

use super::*;

fn parse_run(input: &str) -> Filter {
    match parse_filter(input, Entity::Run) {
        Ok(f) => f,
        Err(e) => panic!("{input:?} should parse: {e}"),
    }
}

fn one(input: &str) -> Clause {
    let f = parse_run(input);
    assert_eq!(f.clauses.len(), 1, "{input:?}");
    f.clauses[0].clone()
}

fn clause(field: Field, op: Op, value: Value) -> Clause {
    Clause { field, op, value }
}

fn metric(k: &str) -> Field {
    Field::Metric(k.to_string())
}
fn param(k: &str) -> Field {
    Field::Param(k.to_string())
}
fn tag(k: &str) -> Field {
    Field::Tag(k.to_string())
}
fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}
fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| i.to_string()).collect())
}

/// Asserts that `input` fails at `position` with a message containing every word.
fn assert_err(input: &str, entity: Entity, position: usize, words: &[&str]) -> FilterError {
    let e = match parse_filter(input, entity) {
        Ok(f) => panic!("{input:?} should fail, parsed to {f:?}"),
        Err(e) => e,
    };
    assert_eq!(e.position, position, "{input:?}: {e}");
    for w in words {
        assert!(e.message.contains(w), "{input:?}: {e} lacks {w:?}");
    }
    assert_eq!(e.context, ErrorContext::Filter);
    e
}

fn assert_order_err(input: &str, entity: Entity, position: usize, words: &[&str]) {
    let e = match parse_order_by(input, entity) {
        Ok(o) => panic!("{input:?} should fail, parsed to {o:?}"),
        Err(e) => e,
    };
    assert_eq!(e.position, position, "{input:?}: {e}");
    for w in words {
        assert!(e.message.contains(w), "{input:?}: {e} lacks {w:?}");
    }
    assert_eq!(e.context, ErrorContext::OrderBy);
    assert!(e
        .to_string()
        .starts_with(&format!("invalid order_by clause at position {position}: ")));
}

fn order(input: &str, entity: Entity) -> OrderBy {
    match parse_order_by(input, entity) {
        Ok(o) => o,
        Err(e) => panic!("{input:?} should parse: {e}"),
    }
}

#[test]
fn issue_example_exact_ast() {
    let f = parse_run(
        "metrics.auc > 0.9 and params.model = 'rf' and tags.team != 'x' and attributes.status = 'FINISHED'",
    );
    assert_eq!(
        f,
        Filter {
            clauses: vec![
                clause(metric("auc"), Op::Gt, Value::Number(0.9)),
                clause(param("model"), Op::Eq, s("rf")),
                clause(tag("team"), Op::Ne, s("x")),
                clause(Field::Attribute(Attribute::Status), Op::Eq, s("FINISHED")),
            ]
        }
    );
    assert!(!f.is_empty());
}

#[test]
fn empty_and_whitespace_filters() {
    assert_eq!(parse_run(""), Filter::default());
    assert_eq!(parse_run("   \t\n "), Filter::default());
    assert!(parse_run("").is_empty());
    assert_eq!(parse_filter("", Entity::Experiment), Ok(Filter::default()));
}

#[test]
fn all_symbolic_comparators_on_metrics() {
    for (text, op) in [
        ("=", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        ("<=", Op::Le),
        (">", Op::Gt),
        (">=", Op::Ge),
    ] {
        assert_eq!(
            one(&format!("metrics.m {text} 2")),
            clause(metric("m"), op, Value::Number(2.0))
        );
        assert_eq!(
            one(&format!("metrics.m{text}2")),
            clause(metric("m"), op, Value::Number(2.0))
        );
    }
}

#[test]
fn like_and_ilike() {
    assert_eq!(
        one("params.model LIKE 'rf%'"),
        clause(param("model"), Op::Like, s("rf%"))
    );
    assert_eq!(
        one("tags.team ilike \"%ml_\""),
        clause(tag("team"), Op::ILike, s("%ml_"))
    );
    assert_eq!(
        one("attributes.run_name LIKE'x%'"),
        clause(Field::Attribute(Attribute::RunName), Op::Like, s("x%"))
    );
    assert_eq!(
        one("datasets.digest ILIKE 'ab%'"),
        clause(Field::Dataset(DatasetField::Digest), Op::ILike, s("ab%"))
    );
}

#[test]
fn in_and_not_in_lists() {
    assert_eq!(
        one("attributes.run_id IN ('a', \"b\",'c' )"),
        clause(
            Field::Attribute(Attribute::RunId),
            Op::In,
            list(&["a", "b", "c"])
        )
    );
    assert_eq!(
        one("params.p not   in('x')"),
        clause(param("p"), Op::NotIn, list(&["x"]))
    );
    assert_eq!(
        one("tags.t IN ( 'it\\'s' , 'a,b' )"),
        clause(tag("t"), Op::In, list(&["it's", "a,b"]))
    );
    assert_eq!(
        one("datasets.context NOT IN ('training', 'eval')"),
        clause(
            Field::Dataset(DatasetField::Context),
            Op::NotIn,
            list(&["training", "eval"])
        )
    );
    assert_eq!(
        one("status IN ('FINISHED')"),
        clause(
            Field::Attribute(Attribute::Status),
            Op::In,
            list(&["FINISHED"])
        )
    );
}

#[test]
fn quoted_keys() {
    assert_eq!(
        one("metrics.`my metric` >= 1"),
        clause(metric("my metric"), Op::Ge, Value::Number(1.0))
    );
    assert_eq!(
        one("tags.\"my tag\" = 'v'"),
        clause(tag("my tag"), Op::Eq, s("v"))
    );
    assert_eq!(
        one("params.`a=b (c)`='v'"),
        clause(param("a=b (c)"), Op::Eq, s("v"))
    );
    assert_eq!(
        one("params.`we\\`ird\\\\` = 'v'"),
        clause(param("we`ird\\"), Op::Eq, s("v"))
    );
    assert_eq!(
        one("`metrics`.`x y` < 3"),
        clause(metric("x y"), Op::Lt, Value::Number(3.0))
    );
    assert_eq!(
        one("\"tags\".plain = 'v'"),
        clause(tag("plain"), Op::Eq, s("v"))
    );
    assert_eq!(
        one("`Run name` = 'r'"),
        clause(Field::Attribute(Attribute::RunName), Op::Eq, s("r"))
    );
    assert_eq!(
        one("attributes.`Run Name` = 'r'"),
        clause(Field::Attribute(Attribute::RunName), Op::Eq, s("r"))
    );
    assert_eq!(
        one("attr.\"run name\" != 'r'"),
        clause(Field::Attribute(Attribute::RunName), Op::Ne, s("r"))
    );
    assert_eq!(
        one("`status` = 'r'"),
        clause(Field::Attribute(Attribute::Status), Op::Eq, s("r"))
    );
}

#[test]
fn keys_with_dots_and_punctuation() {
    assert_eq!(
        one("metrics.val.loss < 0.1"),
        clause(metric("val.loss"), Op::Lt, Value::Number(0.1))
    );
    assert_eq!(
        one("tags.mlflow.source.name='x'"),
        clause(tag("mlflow.source.name"), Op::Eq, s("x"))
    );
    assert_eq!(
        one("params.a-b/c:d_e.9 = '1'"),
        clause(param("a-b/c:d_e.9"), Op::Eq, s("1"))
    );
    assert_eq!(
        one("metrics.précision > 1"),
        clause(metric("précision"), Op::Gt, Value::Number(1.0))
    );
}

#[test]
fn numbers_of_every_form() {
    for (text, expected) in [
        ("1", 1.0),
        ("0", 0.0),
        ("42", 42.0),
        ("-0.5", -0.5),
        ("+2", 2.0),
        (".5", 0.5),
        ("-.25", -0.25),
        ("1.", 1.0),
        ("3.25", 3.25),
        ("1e-3", 1e-3),
        ("1E3", 1000.0),
        ("1.5e+2", 150.0),
        ("-2.5E-1", -0.25),
        (".5e1", 5.0),
        ("1700000000000", 1.7e12),
    ] {
        assert_eq!(
            one(&format!("metrics.m = {text}")),
            clause(metric("m"), Op::Eq, Value::Number(expected)),
            "{text}"
        );
    }
    assert_eq!(
        one("attributes.start_time >= 1700000000000"),
        clause(
            Field::Attribute(Attribute::StartTime),
            Op::Ge,
            Value::Number(1.7e12)
        )
    );
}

#[test]
fn malformed_numbers() {
    assert_err("metrics.m > 1.2.3", Entity::Run, 12, &["number", "1.2.3"]);
    assert_err("metrics.m > 1e", Entity::Run, 12, &["number", "\"1e\""]);
    assert_err("metrics.m > 1abc", Entity::Run, 12, &["number", "1abc"]);
    assert_err("metrics.m > -", Entity::Run, 12, &["number", "\"-\""]);
    assert_err("metrics.m > .", Entity::Run, 12, &["number"]);
    assert_err("metrics.m > 1e999", Entity::Run, 12, &["out of range"]);
    assert_err("metrics.m > 1and x", Entity::Run, 12, &["number", "1and"]);
}

#[test]
fn case_insensitive_keywords_and_prefixes() {
    let f = parse_run(
        "METRICS.a > 1 AnD Params.b like 'x' aNd TAGS.c IlIkE 'y' AND tags.d In ('z') \
         and tags.e nOt In ('w') and tags.f iS nUlL and metrics.g Is NoT nULL",
    );
    assert_eq!(
        f.clauses,
        vec![
            clause(metric("a"), Op::Gt, Value::Number(1.0)),
            clause(param("b"), Op::Like, s("x")),
            clause(tag("c"), Op::ILike, s("y")),
            clause(tag("d"), Op::In, list(&["z"])),
            clause(tag("e"), Op::NotIn, list(&["w"])),
            clause(tag("f"), Op::IsNull, Value::None),
            clause(metric("g"), Op::IsNotNull, Value::None),
        ]
    );
}

#[test]
fn is_null_and_is_not_null() {
    assert_eq!(
        one("metrics.m IS NULL"),
        clause(metric("m"), Op::IsNull, Value::None)
    );
    assert_eq!(
        one("params.p IS NOT NULL"),
        clause(param("p"), Op::IsNotNull, Value::None)
    );
    assert_eq!(
        one("tags.t   is\tnot\nnull  "),
        clause(tag("t"), Op::IsNotNull, Value::None)
    );
    assert_err(
        "attributes.status IS NULL",
        Entity::Run,
        18,
        &["IS NULL", "not allowed", "attributes.status", "LIKE"],
    );
    assert_err(
        "datasets.name IS NOT NULL",
        Entity::Run,
        14,
        &["IS NOT NULL", "not allowed"],
    );
    assert_err(
        "tags.t IS 'x'",
        Entity::Run,
        10,
        &["NULL or NOT NULL", "'x'"],
    );
    assert_err("tags.t IS NOT", Entity::Run, 13, &["NULL", "end of filter"]);
    assert_err(
        "tags.t IS NULL 'x'",
        Entity::Run,
        15,
        &["AND or end of filter"],
    );
}

#[test]
fn every_entity_alias() {
    for p in ["metric", "metrics", "METRIC", "Metrics"] {
        assert_eq!(one(&format!("{p}.k = 1")).field, metric("k"), "{p}");
    }
    for p in ["param", "params", "parameter", "parameters", "PARAMS"] {
        assert_eq!(one(&format!("{p}.k = 'v'")).field, param("k"), "{p}");
    }
    for p in ["tag", "tags", "Tag"] {
        assert_eq!(one(&format!("{p}.k = 'v'")).field, tag("k"), "{p}");
    }
    for p in ["attribute", "attributes", "attr", "run", "ATTR"] {
        assert_eq!(
            one(&format!("{p}.status = 'v'")).field,
            Field::Attribute(Attribute::Status),
            "{p}"
        );
    }
    for p in ["dataset", "datasets", "DataSets"] {
        assert_eq!(
            one(&format!("{p}.name = 'v'")).field,
            Field::Dataset(DatasetField::Name),
            "{p}"
        );
    }
}

#[test]
fn run_attributes_and_aliases() {
    for (name, attr) in [
        ("run_id", Attribute::RunId),
        ("run_name", Attribute::RunName),
        ("status", Attribute::Status),
        ("user_id", Attribute::UserId),
        ("artifact_uri", Attribute::ArtifactUri),
    ] {
        assert_eq!(
            one(&format!("{name} = 'v'")),
            clause(Field::Attribute(attr), Op::Eq, s("v"))
        );
        assert_eq!(
            one(&format!("attributes.{name} != 'v'")),
            clause(Field::Attribute(attr), Op::Ne, s("v"))
        );
    }
    for (name, attr) in [
        ("start_time", Attribute::StartTime),
        ("created", Attribute::StartTime),
        ("Created", Attribute::StartTime),
        ("end_time", Attribute::EndTime),
    ] {
        assert_eq!(
            one(&format!("{name} > 5")),
            clause(Field::Attribute(attr), Op::Gt, Value::Number(5.0))
        );
    }
    assert!(Attribute::StartTime.is_numeric());
    assert!(Attribute::EndTime.is_numeric());
    assert!(Attribute::CreationTime.is_numeric());
    assert!(Attribute::LastUpdateTime.is_numeric());
    assert!(!Attribute::RunId.is_numeric());
    assert!(!Attribute::ExperimentName.is_numeric());
    assert!(!Attribute::ExperimentId.is_numeric());
}

#[test]
fn unknown_names_are_errors() {
    assert_err(
        "attributes.foo = 'x'",
        Entity::Run,
        11,
        &["unknown attribute 'foo'", "run_id", "artifact_uri"],
    );
    assert_err(
        "STATUS = 'x'",
        Entity::Run,
        0,
        &["unknown attribute 'STATUS'"],
    );
    assert_err(
        "name = 'x'",
        Entity::Run,
        0,
        &["unknown attribute 'name'", "runs"],
    );
    assert_err(
        "foo.bar = 'x'",
        Entity::Run,
        0,
        &["unknown entity type 'foo'", "metric", "dataset"],
    );
    assert_err(
        "datasets.size = 'x'",
        Entity::Run,
        9,
        &["unknown dataset field 'size'", "name, digest, context"],
    );
    assert_err(
        ".x = 'x'",
        Entity::Run,
        0,
        &["expected an identifier", "\".x\""],
    );
}

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
fn string_values_and_escapes() {
    assert_eq!(
        one("tags.t = 'it\\'s'"),
        clause(tag("t"), Op::Eq, s("it's"))
    );
    assert_eq!(
        one("tags.t = \"say \\\"hi\\\"\""),
        clause(tag("t"), Op::Eq, s("say \"hi\""))
    );
    assert_eq!(
        one("tags.t = 'C:\\\\dir'"),
        clause(tag("t"), Op::Eq, s("C:\\dir"))
    );
    assert_eq!(
        one("tags.t = 'a\\nb'"),
        clause(tag("t"), Op::Eq, s("a\\nb"))
    );
    assert_eq!(one("tags.t = ''"), clause(tag("t"), Op::Eq, s("")));
    assert_eq!(
        one("tags.t = \"it's\""),
        clause(tag("t"), Op::Eq, s("it's"))
    );
    assert_eq!(
        one("tags.t='a and b or c'"),
        clause(tag("t"), Op::Eq, s("a and b or c"))
    );
}

#[test]
fn experiment_filters() {
    let f = parse_filter(
        "name LIKE 'exp%' and attributes.creation_time > 5 and last_update_time <= 1e12 \
         and tags.owner = 'me' and attr.name IN ('a', 'b')",
        Entity::Experiment,
    );
    assert_eq!(
        f,
        Ok(Filter {
            clauses: vec![
                clause(
                    Field::Attribute(Attribute::ExperimentName),
                    Op::Like,
                    s("exp%")
                ),
                clause(
                    Field::Attribute(Attribute::CreationTime),
                    Op::Gt,
                    Value::Number(5.0)
                ),
                clause(
                    Field::Attribute(Attribute::LastUpdateTime),
                    Op::Le,
                    Value::Number(1e12)
                ),
                clause(tag("owner"), Op::Eq, s("me")),
                clause(
                    Field::Attribute(Attribute::ExperimentName),
                    Op::In,
                    list(&["a", "b"])
                ),
            ]
        })
    );
    for (input, pos) in [
        ("metrics.auc > 1", 0),
        ("params.p = 'x'", 0),
        ("datasets.name = 'x'", 0),
        ("tags.a = 'x' and metric.b > 1", 17),
    ] {
        assert_err(
            input,
            Entity::Experiment,
            pos,
            &["experiments can be filtered by attributes and tags only"],
        );
    }
    assert_err(
        "status = 'x'",
        Entity::Experiment,
        0,
        &[
            "unknown attribute 'status' for experiments",
            "name, creation_time, last_update_time",
        ],
    );
    assert_err(
        "experiment_id = '1'",
        Entity::Experiment,
        0,
        &["unknown attribute 'experiment_id'"],
    );
    assert_err(
        "creation_time = 'x'",
        Entity::Experiment,
        16,
        &["a number for creation_time"],
    );
    assert_err("tags.t = 1", Entity::Experiment, 9, &["quoted string"]);
    assert_err(
        "creation_time IS NULL",
        Entity::Experiment,
        14,
        &["not allowed"],
    );
}

#[test]
fn order_by_forms() {
    assert_eq!(
        order("metrics.auc", Entity::Run),
        OrderBy {
            field: metric("auc"),
            ascending: true
        }
    );
    assert_eq!(
        order("  metrics.auc   DESC ", Entity::Run),
        OrderBy {
            field: metric("auc"),
            ascending: false
        }
    );
    assert_eq!(
        order("params.p asc", Entity::Run),
        OrderBy {
            field: param("p"),
            ascending: true
        }
    );
    assert_eq!(
        order("tags.`my tag` desc", Entity::Run),
        OrderBy {
            field: tag("my tag"),
            ascending: false
        }
    );
    assert_eq!(
        order("metrics.\"a b\"\tDeSc", Entity::Run),
        OrderBy {
            field: metric("a b"),
            ascending: false
        }
    );
    assert_eq!(
        order("metrics.val.loss", Entity::Run).field,
        metric("val.loss")
    );
    for (name, attr) in [
        ("start_time", Attribute::StartTime),
        ("attributes.start_time", Attribute::StartTime),
        ("created", Attribute::StartTime),
        ("end_time", Attribute::EndTime),
        ("run_name", Attribute::RunName),
        ("`Run name`", Attribute::RunName),
        ("attr.run_id", Attribute::RunId),
        ("status", Attribute::Status),
        ("user_id", Attribute::UserId),
        ("artifact_uri", Attribute::ArtifactUri),
    ] {
        assert_eq!(
            order(name, Entity::Run).field,
            Field::Attribute(attr),
            "{name}"
        );
    }
    for (name, attr) in [
        ("name", Attribute::ExperimentName),
        ("creation_time", Attribute::CreationTime),
        ("attributes.last_update_time", Attribute::LastUpdateTime),
        ("experiment_id", Attribute::ExperimentId),
    ] {
        assert_eq!(
            order(&format!("{name} DESC"), Entity::Experiment),
            OrderBy {
                field: Field::Attribute(attr),
                ascending: false
            },
            "{name}"
        );
    }
    assert_eq!(order("tags.t", Entity::Experiment).field, tag("t"));
    assert_eq!(
        order("metrics.auc DESC", Entity::Run).to_string(),
        "metrics.auc DESC"
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
fn display_is_reparseable() {
    let input = "metrics.`my metric` > -0.5 and params.`a'b` = 'it\\'s' and tags.t IN ('x', 'y') \
                 and created < 1e3 and tags.n IS NOT NULL and datasets.context ILIKE '%t%' \
                 and `Run name` = \"r\"";
    let f = parse_run(input);
    let rendered = f.to_string();
    assert_eq!(parse_run(&rendered), f, "{rendered}");
    assert_eq!(
        Filter {
            clauses: vec![clause(metric("a"), Op::IsNull, Value::None)]
        }
        .to_string(),
        "metrics.a IS NULL"
    );
}

// ---------------------------------------------------------------------------------------
// Property tests. They use a small deterministic PRNG (std only) so the module does not
// depend on a property-testing crate; every case is reproducible from its seed.
// ---------------------------------------------------------------------------------------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn random_case(rng: &mut Rng, word: &str) -> String {
    word.chars()
        .map(|c| {
            if rng.chance(50) {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

fn ws0(rng: &mut Rng) -> &'static str {
    rng_pick_str(rng, &["", "", " ", "  ", "\t", "\n "])
}

fn ws1(rng: &mut Rng) -> &'static str {
    rng_pick_str(rng, &[" ", " ", "  ", "\t", " \n", "   "])
}

const KEY_CHARS: &[char] = &[
    'a', 'b', 'z', 'A', 'Q', '0', '7', '_', '-', '.', '/', ':', 'é', '日', ' ', '`', '"', '\'',
    '\\', '@', '=', '(', ',', '%',
];
const VALUE_CHARS: &[char] = &[
    'a', 'x', 'F', '1', ' ', '%', '_', '\'', '"', '\\', '`', '(', ')', ',', 'é', '日', '\n', '=',
];

fn random_text(rng: &mut Rng, alphabet: &[char], min: usize, max: usize) -> String {
    let len = min + rng.below(max - min + 1);
    let mut out: String = (0..len).map(|_| *rng.pick(alphabet)).collect();
    if rng.chance(5) {
        let extra = rng_pick_str(rng, &["and", " OR ", "AND", "or"]);
        out.push_str(extra);
    }
    out
}

fn quote_with(s: &str, q: char) -> String {
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(q);
    out
}

fn render_key(rng: &mut Rng, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(is_plain_key_char);
    if plain && rng.chance(60) {
        key.to_string()
    } else {
        quote_with(key, *rng.pick(&['`', '"']))
    }
}

fn render_prefix(rng: &mut Rng, aliases: &[&str]) -> String {
    let alias = rng_pick_str(rng, aliases);
    let p = random_case(rng, alias);
    if rng.chance(10) {
        quote_with(&p, '`')
    } else {
        p
    }
}

fn rng_pick_str<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

fn attribute_spellings(a: Attribute) -> &'static [&'static str] {
    match a {
        Attribute::RunId => &["run_id"],
        Attribute::RunName => &["run_name", "run name", "Run name", "Run Name"],
        Attribute::Status => &["status"],
        Attribute::StartTime => &["start_time", "created", "Created"],
        Attribute::EndTime => &["end_time"],
        Attribute::UserId => &["user_id"],
        Attribute::ArtifactUri => &["artifact_uri"],
        Attribute::ExperimentName => &["name"],
        Attribute::CreationTime => &["creation_time"],
        Attribute::LastUpdateTime => &["last_update_time"],
        Attribute::ExperimentId => &["experiment_id"],
    }
}

fn render_field(rng: &mut Rng, field: &Field) -> String {
    match field {
        Field::Metric(k) => {
            let p = render_prefix(rng, &["metric", "metrics"]);
            format!("{p}.{}", render_key(rng, k))
        }
        Field::Param(k) => {
            let p = render_prefix(rng, &["param", "params", "parameter", "parameters"]);
            format!("{p}.{}", render_key(rng, k))
        }
        Field::Tag(k) => {
            let p = render_prefix(rng, &["tag", "tags"]);
            format!("{p}.{}", render_key(rng, k))
        }
        Field::Dataset(d) => {
            let p = render_prefix(rng, &["dataset", "datasets"]);
            format!("{p}.{}", render_key(rng, d.name()))
        }
        Field::Attribute(a) => {
            let name = rng_pick_str(rng, attribute_spellings(*a));
            let key = render_key(rng, name);
            if rng.chance(50) {
                key
            } else {
                let p = render_prefix(rng, &["attribute", "attributes", "attr", "run"]);
                format!("{p}.{key}")
            }
        }
    }
}

fn random_key(rng: &mut Rng) -> String {
    if rng.chance(40) {
        rng_pick_str(
            rng,
            &[
                "auc",
                "val.loss",
                "a-b/c:d",
                "x_1",
                "my metric",
                "précision",
            ],
        )
        .to_string()
    } else {
        random_text(rng, KEY_CHARS, 1, 8)
    }
}

fn random_field(rng: &mut Rng, entity: Entity) -> Field {
    match entity {
        Entity::Run => match rng.below(5) {
            0 => Field::Metric(random_key(rng)),
            1 => Field::Param(random_key(rng)),
            2 => Field::Tag(random_key(rng)),
            3 => Field::Attribute(*rng.pick(&[
                Attribute::RunId,
                Attribute::RunName,
                Attribute::Status,
                Attribute::StartTime,
                Attribute::EndTime,
                Attribute::UserId,
                Attribute::ArtifactUri,
            ])),
            _ => Field::Dataset(*rng.pick(&[
                DatasetField::Name,
                DatasetField::Digest,
                DatasetField::Context,
            ])),
        },
        Entity::Experiment => match rng.below(2) {
            0 => Field::Tag(random_key(rng)),
            _ => Field::Attribute(*rng.pick(&[
                Attribute::ExperimentName,
                Attribute::CreationTime,
                Attribute::LastUpdateTime,
            ])),
        },
    }
}

/// A random finite number and a textual form of it.
fn random_number(rng: &mut Rng) -> (f64, String) {
    let n = match rng.below(4) {
        0 => rng.below(2001) as f64 - 1000.0,
        1 => (rng.below(2_000_001) as f64 - 1_000_000.0) / 10f64.powi(rng.below(8) as i32),
        2 => 1.7e12 + rng.below(1_000_000) as f64,
        _ => loop {
            let candidate = f64::from_bits(rng.next());
            if candidate.is_finite() {
                break candidate;
            }
        },
    };
    let mut text = match rng.below(3) {
        0 => format!("{n}"),
        1 => format!("{n:e}"),
        _ => format!("{n:E}"),
    };
    if n.is_sign_positive() && rng.chance(20) {
        text.insert(0, '+');
    }
    (n, text)
}

fn render_string(rng: &mut Rng, s: &str) -> String {
    quote_with(s, *rng.pick(&['\'', '"']))
}

/// A random valid clause and a random rendering of it.
fn random_clause(rng: &mut Rng, entity: Entity) -> (Clause, String) {
    let field = random_field(rng, entity);
    let op = *rng.pick(field.allowed_ops());
    let mut text = render_field(rng, &field);
    let value = match op {
        Op::IsNull | Op::IsNotNull => {
            text.push_str(ws1(rng));
            text.push_str(&random_case(rng, "is"));
            text.push_str(ws1(rng));
            if op == Op::IsNotNull {
                text.push_str(&random_case(rng, "not"));
                text.push_str(ws1(rng));
            }
            text.push_str(&random_case(rng, "null"));
            Value::None
        }
        Op::In | Op::NotIn => {
            text.push_str(ws1(rng));
            if op == Op::NotIn {
                text.push_str(&random_case(rng, "not"));
                text.push_str(ws1(rng));
            }
            text.push_str(&random_case(rng, "in"));
            text.push_str(ws0(rng));
            text.push('(');
            let n = 1 + rng.below(4);
            let mut items = Vec::new();
            for i in 0..n {
                if i > 0 {
                    text.push_str(ws0(rng));
                    text.push(',');
                }
                text.push_str(ws0(rng));
                let item = random_text(rng, VALUE_CHARS, 0, 6);
                text.push_str(&render_string(rng, &item));
                items.push(item);
            }
            text.push_str(ws0(rng));
            text.push(')');
            Value::List(items)
        }
        Op::Like | Op::ILike => {
            text.push_str(ws1(rng));
            text.push_str(&random_case(rng, op.as_str()));
            text.push_str(ws0(rng));
            let v = random_text(rng, VALUE_CHARS, 0, 8);
            text.push_str(&render_string(rng, &v));
            Value::Str(v)
        }
        _ => {
            text.push_str(ws0(rng));
            text.push_str(op.as_str());
            text.push_str(ws0(rng));
            if field.is_numeric() {
                let (n, t) = random_number(rng);
                text.push_str(&t);
                Value::Number(n)
            } else {
                let v = random_text(rng, VALUE_CHARS, 0, 8);
                text.push_str(&render_string(rng, &v));
                Value::Str(v)
            }
        }
    };
    (Clause { field, op, value }, text)
}

fn random_filter(rng: &mut Rng, entity: Entity) -> (Filter, String) {
    let n = 1 + rng.below(4);
    let mut clauses = Vec::new();
    let mut text = ws0(rng).to_string();
    for i in 0..n {
        if i > 0 {
            text.push_str(ws1(rng));
            text.push_str(&random_case(rng, "and"));
            text.push_str(ws1(rng));
        }
        let (c, t) = random_clause(rng, entity);
        clauses.push(c);
        text.push_str(&t);
    }
    text.push_str(ws0(rng));
    (Filter { clauses }, text)
}

#[test]
fn property_rendered_valid_filters_parse_back() {
    for seed in 0..4000u64 {
        let mut rng = Rng(seed);
        let entity = if rng.chance(70) {
            Entity::Run
        } else {
            Entity::Experiment
        };
        let (expected, text) = random_filter(&mut rng, entity);
        match parse_filter(&text, entity) {
            Ok(parsed) => assert_eq!(parsed, expected, "seed {seed}: {text:?}"),
            Err(e) => panic!("seed {seed}: {text:?} failed: {e}"),
        }
        // The canonical rendering parses back too.
        let canonical = expected.to_string();
        assert_eq!(
            parse_filter(&canonical, entity).as_ref(),
            Ok(&expected),
            "seed {seed}: {canonical:?}"
        );
    }
}

#[test]
fn property_rendered_order_by_parses_back() {
    for seed in 0..2000u64 {
        let mut rng = Rng(seed);
        let entity = if rng.chance(70) {
            Entity::Run
        } else {
            Entity::Experiment
        };
        let mut field = random_field(&mut rng, entity);
        if matches!(field, Field::Dataset(_)) {
            field = Field::Metric(random_key(&mut rng));
        }
        if entity == Entity::Experiment && rng.chance(20) {
            field = Field::Attribute(Attribute::ExperimentId);
        }
        let ascending = rng.chance(50);
        let mut text = ws0(&mut rng).to_string();
        text.push_str(&render_field(&mut rng, &field));
        if !ascending || rng.chance(50) {
            text.push_str(ws1(&mut rng));
            text.push_str(&random_case(
                &mut rng,
                if ascending { "asc" } else { "desc" },
            ));
        }
        text.push_str(ws0(&mut rng));
        let expected = OrderBy { field, ascending };
        assert_eq!(
            parse_order_by(&text, entity).as_ref(),
            Ok(&expected),
            "seed {seed}: {text:?}"
        );
    }
}

const FRAGMENTS: &[&str] = &[
    "metrics.",
    "params.",
    "tags.",
    "attributes.",
    "datasets.",
    "attr.",
    "run.",
    "auc",
    "val.loss",
    "status",
    "start_time",
    "created",
    "name",
    "run_id",
    "`Run name`",
    " ",
    "  ",
    "\t",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "LIKE",
    "ilike",
    "IN",
    "NOT",
    "IS",
    "NULL",
    "and",
    "AND",
    "OR",
    "'",
    "\"",
    "`",
    "\\",
    "(",
    ")",
    ",",
    "1",
    "-0.5",
    "1e-3",
    ".5",
    "e",
    "+",
    "-",
    ".",
    "x",
    "é",
    "日本",
    "\n",
    "@",
    "'rf'",
    "\"x\"",
    "('a', 'b')",
    "ASC",
    "desc",
];

fn random_input(rng: &mut Rng) -> String {
    let mut out = String::new();
    let n = rng.below(14);
    for _ in 0..n {
        if rng.chance(20) {
            let c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
            out.push(c);
        } else {
            let frag = rng_pick_str(rng, FRAGMENTS);
            out.push_str(frag);
        }
    }
    out
}

/// Deletes, duplicates or replaces a few characters of a valid filter.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(3) {
        if chars.is_empty() {
            break;
        }
        let i = rng.below(chars.len());
        match rng.below(3) {
            0 => {
                chars.remove(i);
            }
            1 => {
                let c = chars[i];
                chars.insert(i, c);
            }
            _ => {
                let frag = rng_pick_str(rng, FRAGMENTS);
                let frag: Vec<char> = frag.chars().collect();
                chars.splice(i..i + 1, frag);
            }
        }
    }
    chars.into_iter().collect()
}

fn check_never_panics(input: &str) {
    let len = input.chars().count();
    for entity in [Entity::Run, Entity::Experiment] {
        let filter = std::panic::catch_unwind(|| parse_filter(input, entity));
        match filter {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                assert!(e.position <= len, "{input:?}: {e} beyond {len}");
                assert_eq!(e.context, ErrorContext::Filter);
                assert!(!e.message.is_empty());
            }
            Err(_) => panic!("parse_filter panicked on {input:?}"),
        }
        let order = std::panic::catch_unwind(|| parse_order_by(input, entity));
        match order {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                assert!(e.position <= len, "{input:?}: {e} beyond {len}");
                assert_eq!(e.context, ErrorContext::OrderBy);
            }
            Err(_) => panic!("parse_order_by panicked on {input:?}"),
        }
    }
}

#[test]
fn property_never_panics_and_positions_in_bounds() {
    for seed in 0..6000u64 {
        let mut rng = Rng(seed.wrapping_mul(7919).wrapping_add(1));
        let input = random_input(&mut rng);
        check_never_panics(&input);
    }
    for seed in 0..3000u64 {
        let mut rng = Rng(seed.wrapping_add(1 << 40));
        let entity = if rng.chance(70) {
            Entity::Run
        } else {
            Entity::Experiment
        };
        let (_, text) = random_filter(&mut rng, entity);
        let input = mutate(&mut rng, &text);
        check_never_panics(&input);
    }
}
