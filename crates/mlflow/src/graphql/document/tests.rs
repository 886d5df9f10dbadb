use super::*;
use serde_json::json;

const GET_RUN: &str = r#"query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
    mlflowGetRun(input: $data) {
      apiError { helpUrl code message }
      run {
        info { runName status runUuid experimentId artifactUri endTime lifecycleStage startTime userId }
        experiment { experimentId name tags { key value } artifactLocation lifecycleStage lastUpdateTime }
        modelVersions { status version name source }
        data { metrics { key value step timestamp } params { key value } tags { key value } }
        inputs { datasetInputs { dataset { digest name profile schema source sourceType } tags { key value } } modelInputs { modelId } }
        outputs { modelOutputs { modelId step } }
      }
    }
  }"#;

const GET_EXPERIMENT: &str = r#"query MlflowGetExperimentQuery($input: MlflowGetExperimentInput!) @component(name: "MLflow.ExperimentRunTracking") {
    mlflowGetExperiment(input: $input) {
      apiError { code message }
      experiment { artifactLocation creationTime effectiveTraceArchivalRetention experimentId lastUpdateTime lifecycleStage name tags { key value } }
    }
  }"#;

const GET_METRICS: &str = r#"query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!)
  @component(name: "MLflow.ExperimentRunTracking") {
    mlflowGetMetricHistoryBulkInterval(input: $data) {
      __typename
      metrics { timestamp step runId key value }
      apiError { code message }
    }
  }"#;

/// The response keys of the fields directly in a selection set.
fn keys(selection: &[Selection]) -> Vec<&str> {
    selection
        .iter()
        .filter_map(|s| match s {
            Selection::Field(f) => Some(f.response_key()),
            Selection::InlineFragment { .. } => None,
        })
        .collect()
}

/// The field reached by following response keys from a selection set.
fn path<'a>(mut selection: &'a [Selection], keys: &[&str]) -> &'a Field {
    let mut found = None;
    for key in keys {
        let field = selection
            .iter()
            .find_map(|s| match s {
                Selection::Field(f) if f.response_key() == *key => Some(f),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no field {key}"));
        selection = &field.selection;
        found = Some(field);
    }
    found.unwrap()
}

fn only(text: &str) -> Operation {
    parse(text).unwrap().operation(None).unwrap().clone()
}

fn err(text: &str) -> String {
    parse(text).unwrap_err()
}

/// The value of the single argument of the single field of `{ f(v: ...) }`.
fn value(literal: &str) -> Value {
    let op = only(&format!("{{ f(v: {literal}) }}"));
    path(&op.selection, &["f"]).arguments[0].1.clone()
}

fn string(literal: &str) -> String {
    match value(literal) {
        Value::String(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn var(name: &str) -> Value {
    Value::Variable(name.to_string())
}

/// Every selection set, recursively, with the fields named `__typename` removed.
fn strip_typename(selection: &[Selection]) -> Vec<Selection> {
    let mut out = Vec::new();
    for s in selection {
        match s {
            Selection::Field(f) if f.name == "__typename" => {}
            Selection::Field(f) => out.push(Selection::Field(Field {
                selection: strip_typename(&f.selection),
                ..f.clone()
            })),
            Selection::InlineFragment {
                type_condition,
                selection,
            } => out.push(inline(type_condition.clone(), strip_typename(selection))),
        }
    }
    out
}

/// Checks that every non-empty selection set has a `__typename` field.
fn all_have_typename(selection: &[Selection]) -> bool {
    keys(selection).contains(&"__typename")
        && selection.iter().all(|s| match s {
            Selection::Field(f) => f.selection.is_empty() || all_have_typename(&f.selection),
            Selection::InlineFragment { selection, .. } => all_have_typename(selection),
        })
}

/// `{a {a ... }}` with `levels` selection sets.
fn nested(levels: usize) -> String {
    format!("{}{}", "{a ".repeat(levels), "}".repeat(levels))
}

#[test]
fn get_run_document() {
    let op = only(GET_RUN);
    assert_eq!(op.kind, OperationKind::Query);
    assert_eq!(op.name.as_deref(), Some("GetRun"));
    let root = path(&op.selection, &["mlflowGetRun"]);
    assert_eq!(root.arguments, vec![("input".to_string(), var("data"))]);
    assert_eq!(keys(&root.selection), ["apiError", "run"]);
    assert_eq!(
        keys(&path(&op.selection, &["mlflowGetRun", "apiError"]).selection),
        ["helpUrl", "code", "message"]
    );
    let run = path(&root.selection, &["run"]);
    let expected = [
        "info",
        "experiment",
        "modelVersions",
        "data",
        "inputs",
        "outputs",
    ];
    assert_eq!(keys(&run.selection), expected);
    assert_eq!(path(&run.selection, &["info"]).selection.len(), 9);
    let dataset = path(&run.selection, &["inputs", "datasetInputs", "dataset"]);
    let expected = [
        "digest",
        "name",
        "profile",
        "schema",
        "source",
        "sourceType",
    ];
    assert_eq!(keys(&dataset.selection), expected);
    let tags = path(&run.selection, &["experiment", "tags"]);
    assert_eq!(keys(&tags.selection), ["key", "value"]);
    assert!(path(&tags.selection, &["key"]).selection.is_empty());
}

#[test]
fn get_experiment_and_metrics_documents() {
    let op = only(GET_EXPERIMENT);
    assert_eq!(op.name.as_deref(), Some("MlflowGetExperimentQuery"));
    let root = path(&op.selection, &["mlflowGetExperiment"]);
    assert_eq!(root.arguments, vec![("input".to_string(), var("input"))]);
    let experiment = path(&root.selection, &["experiment"]);
    assert_eq!(experiment.selection.len(), 8);
    assert_eq!(
        keys(&path(&experiment.selection, &["tags"]).selection),
        ["key", "value"]
    );

    let op = only(GET_METRICS);
    assert_eq!(op.name.as_deref(), Some("GetMetricHistoryBulkInterval"));
    let root = path(&op.selection, &["mlflowGetMetricHistoryBulkInterval"]);
    assert_eq!(root.arguments, vec![("input".to_string(), var("data"))]);
    assert_eq!(keys(&root.selection), ["__typename", "metrics", "apiError"]);
    let metrics = path(&root.selection, &["metrics"]);
    assert_eq!(
        keys(&metrics.selection),
        ["timestamp", "step", "runId", "key", "value"]
    );
}

#[test]
fn documents_with_apollo_typename() {
    for text in [GET_RUN, GET_EXPERIMENT, GET_METRICS] {
        let with = only(&text.replace('}', " __typename }"));
        assert!(all_have_typename(&with.selection));
        assert_eq!(
            strip_typename(&with.selection),
            strip_typename(&only(text).selection)
        );
    }
}

#[test]
fn shorthand_aliases_comments_and_bom() {
    let op = only("\u{FEFF}{ a, b: c(x: 1) # a comment, ignored\r\n d }");
    assert_eq!((op.kind, op.name), (OperationKind::Query, None));
    assert_eq!(keys(&op.selection), ["a", "b", "d"]);
    let Selection::Field(b) = &op.selection[1] else {
        panic!()
    };
    assert_eq!((b.alias.as_deref(), b.name.as_str()), (Some("b"), "c"));
    assert_eq!(b.arguments, vec![("x".to_string(), Value::Int(1))]);
}

#[test]
fn operation_kinds_and_selection_by_name() {
    let doc = parse("query A { a } mutation B { b } subscription C { c }").unwrap();
    let kinds: Vec<_> = doc.operations.iter().map(|op| op.kind).collect();
    use OperationKind::*;
    assert_eq!(kinds, [Query, Mutation, Subscription]);
    assert_eq!(keys(&doc.operation(Some("B")).unwrap().selection), ["b"]);
    assert_eq!(
        doc.operation(Some("X")).unwrap_err(),
        "Unknown operation named 'X'."
    );
    assert_eq!(
        doc.operation(None).unwrap_err(),
        "Must provide operation name if query contains multiple operations."
    );
    let fragments_only = parse("fragment F on T { a }").unwrap();
    assert!(fragments_only.operations.is_empty());
    assert_eq!(
        fragments_only.operation(None).unwrap_err(),
        "Must provide an operation."
    );
    assert_eq!(
        fragments_only.operation(Some("A")).unwrap_err(),
        "Unknown operation named 'A'."
    );
    assert_eq!(only("query { a }").name, None);
    assert_eq!(
        err("query A { a } query A { b }"),
        "There can be only one operation named 'A'."
    );
    assert_eq!(
        err("{ a } query A { b }"),
        "This anonymous operation must be the only defined operation."
    );
}

#[test]
fn fragments_and_inline_fragments() {
    let op = only(
        "query Q($a: [Int!]! = [1] @d(x: 2), $b: In = {x: [A]}) @x { \
           f @include(if: $a) { ...F @z ... on T @y { g } ... @skip(if: true) { h } } \
         } \
         fragment F on Run @w { id ...G } \
         fragment G on Run { name }",
    );
    let f = path(&op.selection, &["f"]);
    let g = || Field {
        alias: None,
        name: "g".to_string(),
        arguments: vec![],
        selection: vec![],
    };
    let leaf = |name: &str| {
        Selection::Field(Field {
            name: name.to_string(),
            ..g()
        })
    };
    let expected = vec![
        inline(
            Some("Run".to_string()),
            vec![
                leaf("id"),
                inline(Some("Run".to_string()), vec![leaf("name")]),
            ],
        ),
        inline(Some("T".to_string()), vec![leaf("g")]),
        inline(None, vec![leaf("h")]),
    ];
    assert_eq!(f.selection, expected);
    // A fragment may be defined before it is used, and used twice.
    let op = only("fragment F on T { a } { x: b { ...F } y: b { ...F } }");
    let unaliased = |key| Field {
        alias: None,
        ..path(&op.selection, &[key]).clone()
    };
    assert_eq!(unaliased("x"), unaliased("y"));
    let a = Field {
        name: "a".to_string(),
        ..g()
    };
    let expected = inline(Some("T".to_string()), vec![Selection::Field(a)]);
    assert_eq!(path(&op.selection, &["x"]).selection, [expected]);
    assert_eq!(err("{ ...Missing }"), "Unknown fragment 'Missing'.");
    assert_eq!(
        err("{ a } fragment F on T { a } fragment F on T { b }"),
        "There can be only one fragment named 'F'."
    );
}

#[test]
fn fragment_cycles() {
    assert_eq!(
        err("{ ...A } fragment A on T { ...B } fragment B on T { a ...A }"),
        "Cannot spread fragment 'A' within itself via 'B'."
    );
    assert_eq!(
        err("{ ...A } fragment A on T { a ...A }"),
        "Cannot spread fragment 'A' within itself."
    );
    assert_eq!(
        err("{ ...A } fragment A on T { ...B } fragment B on T { ...C } fragment C on T { ...B }"),
        "Cannot spread fragment 'B' within itself via 'C'."
    );
}

#[test]
fn fragment_explosion_is_bounded() {
    // F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^30 selections if unbounded.
    let mut text = String::from("{ ...F0 }");
    for i in 0..30 {
        text += &format!(" fragment F{i} on T {{ ...F{0} ...F{0} }}", i + 1);
    }
    text += " fragment F30 on T { a }";
    assert_eq!(
        err(&text),
        "the document expands to too many selections, over the limit of 10000"
    );
    // Few selections, but each copy carries a large argument.
    let big = "x".repeat(100_000);
    let text = format!(
        "{{ {} }} fragment F on T {{ a(s: \"{big}\") }}",
        "...F ".repeat(20)
    );
    assert_eq!(
        err(&text),
        "the document copies too many bytes of fragments, over the limit of 1048576"
    );
    // Fragments may nest within limits but not past them once expanded.
    let deep = format!("{} ...F {}", "{a ".repeat(40), "}".repeat(40));
    let fragment = format!("fragment F on T {}", nested(40));
    assert_eq!(
        err(&format!("{deep} {fragment}")),
        "the document nests too deeply once fragments are expanded, over the limit of 64"
    );
}

#[test]
fn depth_limit() {
    assert!(parse(&nested(64)).is_ok());
    assert_eq!(
        err(&nested(65)),
        "the document nests too deeply, over the limit of 64 (line 1, column 193)"
    );
    let list = format!("{{ f(v: {}1{}) }}", "[".repeat(63), "]".repeat(63));
    assert!(parse(&list).is_ok());
    let list = format!("{{ f(v: {}", "[".repeat(100_000));
    assert!(err(&list).starts_with("the document nests too deeply, over the limit of 64"));
    let object = format!("{{ f(v: {}", "{a: ".repeat(100_000));
    assert!(err(&object).starts_with("the document nests too deeply, over the limit of 64"));
    let list_type = format!("query($v: {}Int", "[".repeat(100_000));
    assert!(err(&list_type).starts_with("the document nests too deeply, over the limit of 64"));
    assert!(err(&"{a ".repeat(100_000)).starts_with("the document nests too deeply"));
}

#[test]
fn scalar_values() {
    assert_eq!(value("$v"), var("v"));
    assert_eq!(value("null"), Value::Null);
    assert_eq!(value("true"), Value::Bool(true));
    assert_eq!(value("false"), Value::Bool(false));
    assert_eq!(value("-0"), Value::Int(0));
    assert_eq!(value("-9223372036854775808"), Value::Int(i64::MIN));
    assert_eq!(value("1.5"), Value::Float(1.5));
    assert_eq!(value("-2e3"), Value::Float(-2000.0));
    assert_eq!(value("6.02E+23"), Value::Float(6.02e23));
    assert_eq!(value("1e-2"), Value::Float(0.01));
    assert_eq!(value("RED"), Value::Enum("RED".to_string()));
    assert_eq!(value("\"\""), Value::String(String::new()));
}

#[test]
fn list_and_object_values() {
    let expected = Value::List(vec![
        Value::Int(1),
        Value::List(vec![]),
        Value::Object(vec![
            ("a".to_string(), Value::Enum("B".to_string())),
            ("c".to_string(), Value::Object(vec![])),
        ]),
    ]);
    assert_eq!(value("[1, [], {a: B c: {}}]"), expected);
}

#[test]
fn string_escapes() {
    let decoded =
        string(r#""q\" b\\ s\/ \b\f\n\r\t \u00e9 \u20AC \uD83D\uDE00 \u{1F600} \u{0041}""#);
    assert_eq!(decoded, "q\" b\\ s/ \u{8}\u{c}\n\r\t é € 😀 😀 A");
    assert_eq!(string("\"unicode as is: 😀 é\""), "unicode as is: 😀 é");
}

#[test]
fn block_strings() {
    let text = "\"\"\"\n    Hello,\n      World!\n\n    Yours,\n      GraphQL.\n  \"\"\"";
    assert_eq!(string(text), "Hello,\n  World!\n\nYours,\n  GraphQL.");
    assert_eq!(string(r#"""" a \""" b """"#), r#" a """ b "#);
    assert_eq!(
        string("\"\"\"  first\r\n    second\r      third\n\"\"\""),
        "  first\nsecond\n  third"
    );
    assert_eq!(string("\"\"\"\n \n\t\n\"\"\""), "");
    assert_eq!(string(r#""""no \n escapes""""#), r"no \n escapes");
}

#[test]
fn to_json_substitutes_variables() {
    let v = value(r#"{id: $id, n: 3, f: 2.5, s: "x", e: ACTIVE, l: [$missing, null, true]}"#);
    let variables = json!({"id": {"deep": [1]}, "unused": 1});
    let variables = variables.as_object().unwrap();
    let expected = json!({"id": {"deep": [1]}, "n": 3, "f": 2.5, "s": "x", "e": "ACTIVE", "l": [null, null, true]});
    assert_eq!(v.to_json(variables), expected);
}

#[test]
fn syntax_errors_with_positions() {
    let cases = [
        ("", "Syntax Error: Unexpected <EOF>. (line 1, column 1)"),
        ("  # just a comment\n", "Syntax Error: Unexpected <EOF>. (line 2, column 1)"),
        ("{}", "Syntax Error: Expected Name, found \"}\". (line 1, column 2)"),
        ("{ a", "Syntax Error: Expected Name, found <EOF>. (line 1, column 4)"),
        ("query {\n  a(x: \"abc\n}", "Syntax Error: Unterminated string. (line 2, column 12)"),
        ("{ a(x: \"\"\"abc) }", "Syntax Error: Unterminated string. (line 1, column 17)"),
        ("fragment on on T { a }", "Syntax Error: Unexpected Name \"on\". (line 1, column 10)"),
        ("fragment F T { a }", "Syntax Error: Expected \"on\", found Name \"T\". (line 1, column 12)"),
        ("{ a ? }", "Syntax Error: Unexpected character: \"?\". (line 1, column 5)"),
        ("{ a(x: 'b') }", "Syntax Error: Unexpected single quote character ('), did you mean to use a double quote (\")? (line 1, column 8)"),
        ("{ a(x: 01) }", "Syntax Error: Invalid number, unexpected digit after 0: \"1\". (line 1, column 9)"),
        ("{ a(x: 1.) }", "Syntax Error: Invalid number, expected digit but got: \")\". (line 1, column 10)"),
        ("{ a(x: 1x) }", "Syntax Error: Invalid number, expected digit but got: \"x\". (line 1, column 9)"),
        ("{ a(x: 9223372036854775808) }", "Syntax Error: Int \"9223372036854775808\" does not fit in a 64-bit integer. (line 1, column 8)"),
        ("{ a(x: 1e999) }", "Syntax Error: Float \"1e999\" is out of range. (line 1, column 8)"),
        ("{ a(x: \"\\q\") }", "Syntax Error: Invalid character escape sequence: \"\\q\". (line 1, column 9)"),
        ("{ a(x: \"\\uD800\") }", "Syntax Error: Invalid Unicode escape sequence: \"\\uD800\". (line 1, column 9)"),
        ("{ a(x: \"\\u{110000}\") }", "Syntax Error: Invalid Unicode escape sequence: \"\\u{110000}\". (line 1, column 9)"),
        ("{ a(x: \"\\u12\") }", "Syntax Error: Invalid Unicode escape sequence: \"\\u12\")\". (line 1, column 9)"),
        ("{ a(x: ) }", "Syntax Error: Unexpected \")\". (line 1, column 8)"),
        ("{ a() }", "Syntax Error: Expected Name, found \")\". (line 1, column 5)"),
        ("query ($x: Int = $y) { a }", "Syntax Error: Unexpected variable \"$y\" in constant value. (line 1, column 18)"),
        ("query Q() { a }", "Syntax Error: Expected \"$\", found \")\". (line 1, column 9)"),
        ("{ ...on }", "Syntax Error: Expected Name, found \"}\". (line 1, column 9)"),
        ("{ a } }", "Syntax Error: Unexpected \"}\". (line 1, column 7)"),
        ("type Query { a: Int }", "Syntax Error: Unexpected Name \"type\". (line 1, column 1)"),
        ("{ a(x: \"é\" y: ?) }", "Syntax Error: Unexpected character: \"?\". (line 1, column 15)"),
        ("{\r\n\r\n  a(x: [\u{7}]) }", "Syntax Error: Unexpected character: U+0007. (line 3, column 9)"),
    ];
    for (text, expected) in cases {
        assert_eq!(err(text), expected, "parsing {text:?}");
    }
}

#[test]
fn size_limit() {
    let padding = " ".repeat(MAX_DOCUMENT_BYTES);
    assert_eq!(
        err(&format!("{{ a }}{padding}")),
        "the document is 1048581 bytes, over the limit of 1048576"
    );
    assert!(parse(&format!("{{ a }}{}", &padding[5..])).is_ok());
}
