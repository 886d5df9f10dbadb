//! Unit tests of the filter grammar.

use super::*;

pub(super) fn parse_run(input: &str) -> Filter {
    match parse_filter(input, Entity::Run) {
        Ok(f) => f,
        Err(e) => panic!("{input:?} should parse: {e}"),
    }
}

pub(super) fn one(input: &str) -> Clause {
    let f = parse_run(input);
    assert_eq!(f.clauses.len(), 1, "{input:?}");
    f.clauses[0].clone()
}

pub(super) fn clause(field: Field, op: Op, value: Value) -> Clause {
    Clause { field, op, value }
}

pub(super) fn metric(k: &str) -> Field {
    Field::Metric(k.to_string())
}
pub(super) fn param(k: &str) -> Field {
    Field::Param(k.to_string())
}
pub(super) fn tag(k: &str) -> Field {
    Field::Tag(k.to_string())
}
pub(super) fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}
pub(super) fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| i.to_string()).collect())
}

/// Asserts that `input` fails at `position` with a message containing every word.
pub(super) fn assert_err(
    input: &str,
    entity: Entity,
    position: usize,
    words: &[&str],
) -> FilterError {
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

pub(super) fn assert_order_err(input: &str, entity: Entity, position: usize, words: &[&str]) {
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

pub(super) fn order(input: &str, entity: Entity) -> OrderBy {
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
