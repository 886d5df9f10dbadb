//! Unit tests of the grammar for registered models and model versions.

use super::tests::*;
use super::*;

#[test]
fn registered_model_filters() {
    let f = parse_filter(
        "name = 'churn' and attributes.name LIKE 'ch%' and attr.name ILIKE '%URN' \
         and name IN ('a', 'b') and name NOT IN ('c') and name != 'x' \
         and tags.`team name` = 'ml' and tags.t IS NULL",
        Entity::RegisteredModel,
    );
    let name = || Field::Attribute(Attribute::ModelName);
    assert_eq!(
        f,
        Ok(Filter {
            clauses: vec![
                clause(name(), Op::Eq, s("churn")),
                clause(name(), Op::Like, s("ch%")),
                clause(name(), Op::ILike, s("%URN")),
                clause(name(), Op::In, list(&["a", "b"])),
                clause(name(), Op::NotIn, list(&["c"])),
                clause(name(), Op::Ne, s("x")),
                clause(tag("team name"), Op::Eq, s("ml")),
                clause(tag("t"), Op::IsNull, Value::None),
            ]
        })
    );
    assert_eq!(
        parse_filter("", Entity::RegisteredModel),
        Ok(Filter::default())
    );
}

#[test]
fn model_version_filters() {
    let f = parse_filter(
        "name = 'churn' and version_number >= 2 and attributes.version_number != 5 \
         and run_id IN ('r1', 'r2') and run_id NOT IN ('r3') and run_id = 'r4' \
         and source_path LIKE 's3://models/%' and tags.stage != 'old'",
        Entity::ModelVersion,
    );
    assert_eq!(
        f,
        Ok(Filter {
            clauses: vec![
                clause(Field::Attribute(Attribute::ModelName), Op::Eq, s("churn")),
                clause(
                    Field::Attribute(Attribute::VersionNumber),
                    Op::Ge,
                    Value::Number(2.0)
                ),
                clause(
                    Field::Attribute(Attribute::VersionNumber),
                    Op::Ne,
                    Value::Number(5.0)
                ),
                clause(
                    Field::Attribute(Attribute::RunId),
                    Op::In,
                    list(&["r1", "r2"])
                ),
                clause(Field::Attribute(Attribute::RunId), Op::NotIn, list(&["r3"])),
                clause(Field::Attribute(Attribute::RunId), Op::Eq, s("r4")),
                clause(
                    Field::Attribute(Attribute::SourcePath),
                    Op::Like,
                    s("s3://models/%")
                ),
                clause(tag("stage"), Op::Ne, s("old")),
            ]
        })
    );
    for (text, op) in [
        ("=", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        ("<=", Op::Le),
        (">", Op::Gt),
        (">=", Op::Ge),
    ] {
        assert_eq!(
            parse_filter(&format!("version_number {text} 3"), Entity::ModelVersion),
            Ok(Filter {
                clauses: vec![clause(
                    Field::Attribute(Attribute::VersionNumber),
                    op,
                    Value::Number(3.0)
                )]
            })
        );
    }
    let rendered = f.clone().unwrap().to_string();
    assert_eq!(
        parse_filter(&rendered, Entity::ModelVersion),
        f,
        "{rendered}"
    );
}

#[test]
fn registry_attributes_names_and_types() {
    for (attr, name, numeric) in [
        (Attribute::ModelName, "name", false),
        (Attribute::VersionNumber, "version_number", true),
        (Attribute::SourcePath, "source_path", false),
        (Attribute::CreationTimestamp, "creation_timestamp", true),
        (
            Attribute::LastUpdatedTimestamp,
            "last_updated_timestamp",
            true,
        ),
        (Attribute::RunId, "run_id", false),
    ] {
        assert_eq!(attr.name(), name);
        assert_eq!(attr.to_string(), name);
        assert_eq!(attr.is_numeric(), numeric, "{name}");
        assert_eq!(Field::Attribute(attr).is_numeric(), numeric, "{name}");
    }
    assert_eq!(
        Field::Attribute(Attribute::VersionNumber).allowed_ops(),
        &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge]
    );
    assert!(Field::Attribute(Attribute::SourcePath)
        .allowed_ops()
        .contains(&Op::ILike));
}

#[test]
fn registry_order_by_forms() {
    for (name, attr) in [
        ("name", Attribute::ModelName),
        ("creation_timestamp", Attribute::CreationTimestamp),
        (
            "attributes.last_updated_timestamp",
            Attribute::LastUpdatedTimestamp,
        ),
    ] {
        assert_eq!(
            order(&format!("{name} DESC"), Entity::RegisteredModel),
            OrderBy {
                field: Field::Attribute(attr),
                ascending: false
            },
            "{name}"
        );
    }
    for (name, attr) in [
        ("name", Attribute::ModelName),
        ("version_number", Attribute::VersionNumber),
        ("attr.creation_timestamp", Attribute::CreationTimestamp),
        ("last_updated_timestamp", Attribute::LastUpdatedTimestamp),
    ] {
        assert_eq!(
            order(&format!(" {name}  asc "), Entity::ModelVersion),
            OrderBy {
                field: Field::Attribute(attr),
                ascending: true
            },
            "{name}"
        );
    }
    assert_eq!(order("tags.t", Entity::RegisteredModel).field, tag("t"));
    assert_eq!(
        order("tags.`a b` DESC", Entity::ModelVersion).field,
        tag("a b")
    );
    assert_eq!(
        order("version_number DESC", Entity::ModelVersion).to_string(),
        "attributes.version_number DESC"
    );
}
