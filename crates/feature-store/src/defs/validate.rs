//! From a YAML file to a valid [`Definitions`]: the file's shape (serde, with the
//! line and column of a mistake), then the set as a whole (references, names).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{
    parse_ttl, DefinitionError, Definitions, Entity, FeatureDef, FeatureService, FeatureView,
    JoinKeyDef, MessageFormat, Projection, Source, SourceKind, ValueType,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    entities: Vec<RawEntity>,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    feature_views: Vec<RawView>,
    #[serde(default)]
    feature_services: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: String,
    join_keys: Vec<RawKey>,
    value_type: Option<ValueType>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawKey {
    Name(String),
    Typed(JoinKeyDef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
    topic: Option<String>,
    format: Option<MessageFormat>,
    avro_schema: Option<String>,
    batch_source: Option<String>,
    #[serde(default = "default_timestamp_field")]
    timestamp_field: String,
    created_timestamp_column: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn default_timestamp_field() -> String {
    "event_timestamp".into()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTtl {
    Seconds(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    name: String,
    #[serde(default)]
    entities: Vec<String>,
    ttl: Option<RawTtl>,
    source: String,
    #[serde(default = "yes")]
    online: bool,
    schema: Vec<FeatureDef>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    features: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Where `name` is defined in `text` (the first `name: <name>` line), for messages.
fn line_of(text: &str, name: &str) -> String {
    text.lines()
        .position(|l| {
            let l = l
                .trim_start()
                .trim_start_matches("- ")
                .trim_start_matches('{');
            l.strip_prefix("name:").is_some_and(|v| {
                let v = v.split([',', '}']).next().unwrap_or("").trim();
                v.trim_matches(|c| c == '"' || c == '\'') == name
            })
        })
        .map(|i| format!(" (line {})", i + 1))
        .unwrap_or_default()
}

pub(super) fn from_yaml(file: &str, text: &str) -> Result<Definitions, DefinitionError> {
    let raw: RawFile =
        serde_norway::from_str(text).map_err(|e| DefinitionError(format!("{file}: {e}")))?;
    let at = |what: &str, name: &str, msg: String| {
        DefinitionError(format!(
            "{file}: {what} `{name}`{}: {msg}",
            line_of(text, name)
        ))
    };
    let mut defs = Definitions::default();
    for e in raw.entities {
        let mut keys = Vec::with_capacity(e.join_keys.len());
        for k in e.join_keys {
            keys.push(match (k, e.value_type) {
                (RawKey::Typed(k), _) => k,
                (RawKey::Name(name), Some(value_type)) => JoinKeyDef { name, value_type },
                (RawKey::Name(_), None) => {
                    return Err(at("entity", &e.name, "give the entity a `value_type` (int64 or string), or each join key one: `{name: ..., value_type: ...}`".into()));
                }
            });
        }
        let entity = Entity {
            name: e.name.clone(),
            join_keys: keys,
            description: e.description,
            tags: e.tags,
        };
        if defs.entities.insert(e.name.clone(), entity).is_some() {
            return Err(at("entity", &e.name, "defined twice".into()));
        }
    }
    for s in raw.sources {
        let need = |field: Option<String>, what: &str| {
            field.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                at(
                    "source",
                    &s.name,
                    format!("a {} source needs `{what}`", s.kind),
                )
            })
        };
        let kind = match s.kind.as_str() {
            "parquet" => SourceKind::Parquet {
                path: need(s.path.clone(), "path")?,
            },
            "push" => SourceKind::Push {
                batch_source: s.batch_source.clone(),
            },
            "kafka" => {
                let format = s.format.unwrap_or(MessageFormat::Json);
                match (format, &s.avro_schema) {
                    (MessageFormat::Avro, None) => {
                        return Err(at(
                            "source",
                            &s.name,
                            "format avro needs `avro_schema`: the writer's schema, as JSON".into(),
                        ))
                    }
                    (MessageFormat::Json, Some(_)) => {
                        return Err(at(
                            "source",
                            &s.name,
                            "`avro_schema` applies to format avro only".into(),
                        ))
                    }
                    (MessageFormat::Avro, Some(text)) => {
                        let schema = crate::online::avro::AvroSchema::parse(text).map_err(|e| {
                            at("source", &s.name, format!("its `avro_schema`: {e}"))
                        })?;
                        if !schema.field_names().contains(&s.timestamp_field.as_str()) {
                            return Err(at(
                                "source",
                                &s.name,
                                format!(
                                    "its `avro_schema` has no field `{}` (the timestamp field)",
                                    s.timestamp_field
                                ),
                            ));
                        }
                    }
                    (MessageFormat::Json, None) => {}
                }
                SourceKind::Kafka {
                    topic: need(s.topic.clone(), "topic")?,
                    format,
                    batch_source: s.batch_source.clone(),
                    avro_schema: s.avro_schema.clone(),
                }
            }
            other => {
                return Err(at(
                    "source",
                    &s.name,
                    format!("unknown type `{other}`: use parquet, push or kafka"),
                ))
            }
        };
        let misplaced: &[(&str, bool)] = match &kind {
            SourceKind::Parquet { .. } => &[
                ("topic", s.topic.is_some()),
                ("format", s.format.is_some()),
                ("avro_schema", s.avro_schema.is_some()),
                ("batch_source", s.batch_source.is_some()),
            ],
            SourceKind::Push { .. } => &[
                ("path", s.path.is_some()),
                ("topic", s.topic.is_some()),
                ("format", s.format.is_some()),
                ("avro_schema", s.avro_schema.is_some()),
            ],
            SourceKind::Kafka { .. } => &[("path", s.path.is_some())],
        };
        if let Some((field, _)) = misplaced.iter().find(|(_, set)| *set) {
            return Err(at(
                "source",
                &s.name,
                format!("`{field}` does not apply to a {} source", s.kind),
            ));
        }
        let source = Source {
            name: s.name.clone(),
            kind,
            timestamp_field: s.timestamp_field,
            created_timestamp_column: s.created_timestamp_column,
            description: s.description,
            tags: s.tags,
        };
        if defs.sources.insert(s.name.clone(), source).is_some() {
            return Err(at("source", &s.name, "defined twice".into()));
        }
    }
    for v in raw.feature_views {
        let ttl_nanos = match v.ttl {
            None => Ok(0),
            Some(RawTtl::Seconds(s)) => parse_ttl(&s.to_string()),
            Some(RawTtl::Text(t)) => parse_ttl(&t),
        }
        .map_err(|m| at("feature view", &v.name, m))?;
        let view = FeatureView {
            name: v.name.clone(),
            entities: v.entities,
            ttl_nanos,
            source: v.source,
            online: v.online,
            schema: v.schema,
            description: v.description,
            tags: v.tags,
        };
        if defs.feature_views.insert(v.name.clone(), view).is_some() {
            return Err(at("feature view", &v.name, "defined twice".into()));
        }
    }
    for s in raw.feature_services {
        let mut projections: Vec<Projection> = Vec::new();
        for r in &s.features {
            let (view, feature) = match r.split_once(':') {
                Some((v, f)) => (v, Some(f)),
                None => (r.as_str(), None),
            };
            let i = match projections.iter().position(|p| p.view == view) {
                Some(i) => i,
                None => {
                    projections.push(Projection {
                        view: view.to_owned(),
                        features: Vec::new(),
                    });
                    projections.len() - 1
                }
            };
            let p = &mut projections[i];
            match feature {
                Some(f) if p.features.iter().any(|x| x == f) => {
                    return Err(at(
                        "feature service",
                        &s.name,
                        format!("`{r}` is listed twice"),
                    ))
                }
                Some(f) => p.features.push(f.to_owned()),
                None if s
                    .features
                    .iter()
                    .filter(|x| x.as_str() == view || x.starts_with(&format!("{view}:")))
                    .count()
                    > 1 =>
                {
                    return Err(at(
                        "feature service",
                        &s.name,
                        format!("view `{view}` is listed whole and again"),
                    ))
                }
                None => {}
            }
        }
        let service = FeatureService {
            name: s.name.clone(),
            projections,
            description: s.description,
            tags: s.tags,
        };
        if defs
            .feature_services
            .insert(s.name.clone(), service)
            .is_some()
        {
            return Err(at("feature service", &s.name, "defined twice".into()));
        }
    }
    check(&defs).map_err(|e| {
        // Name the line of the object the message starts with.
        let line =
            e.0.split('`')
                .nth(1)
                .map(|name| line_of(text, name))
                .unwrap_or_default();
        DefinitionError(format!("{file}{line}: {}", e.0))
    })?;
    Ok(defs)
}

/// A name that can stand in a feature reference (`view:feature`) and a column name.
fn check_name(what: &str, name: &str) -> Result<(), DefinitionError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DefinitionError(format!(
            "{what} `{name}`: a name is letters, digits, `_`, `-` and `.` (no spaces or `:`)"
        )))
    }
}

pub(super) fn check(defs: &Definitions) -> Result<(), DefinitionError> {
    let err = |what: &str, name: &str, msg: String| {
        Err(DefinitionError(format!("{what} `{name}`: {msg}")))
    };
    for e in defs.entities.values() {
        check_name("entity", &e.name)?;
        if e.join_keys.is_empty() {
            return err("entity", &e.name, "needs at least one join key".into());
        }
        let mut seen = BTreeSet::new();
        for k in &e.join_keys {
            check_name("join key", &k.name)?;
            if !seen.insert(&k.name) {
                return err(
                    "entity",
                    &e.name,
                    format!("join key `{}` is listed twice", k.name),
                );
            }
            if !matches!(
                k.value_type,
                ValueType::Int32 | ValueType::Int64 | ValueType::String
            ) {
                return err(
                    "entity",
                    &e.name,
                    format!(
                        "join key `{}` is {}: keys are int32, int64 or string",
                        k.name,
                        k.value_type.as_str()
                    ),
                );
            }
        }
    }
    for s in defs.sources.values() {
        check_name("source", &s.name)?;
        if s.timestamp_field.trim().is_empty() {
            return err("source", &s.name, "`timestamp_field` is empty".into());
        }
        let batch = match &s.kind {
            SourceKind::Parquet { .. } => None,
            SourceKind::Push { batch_source } | SourceKind::Kafka { batch_source, .. } => {
                batch_source.as_ref()
            }
        };
        if let Some(b) = batch {
            match defs.sources.get(b) {
                Some(Source {
                    kind: SourceKind::Parquet { .. },
                    ..
                }) => {}
                Some(_) => {
                    return err(
                        "source",
                        &s.name,
                        format!("its batch source `{b}` is not a parquet source"),
                    )
                }
                None => {
                    return err(
                        "source",
                        &s.name,
                        format!("its batch source `{b}` is not defined"),
                    )
                }
            }
        }
    }
    for v in defs.feature_views.values() {
        check_name("feature view", &v.name)?;
        if v.ttl_nanos < 0 {
            return err(
                "feature view",
                &v.name,
                "a negative TTL is not allowed (0 is unlimited)".into(),
            );
        }
        let Some(source) = defs.sources.get(&v.source) else {
            return err(
                "feature view",
                &v.name,
                format!("source `{}` is not defined", v.source),
            );
        };
        let mut columns: BTreeMap<&str, String> = BTreeMap::new();
        columns.insert(
            &source.timestamp_field,
            "the source's timestamp field".into(),
        );
        if let Some(c) = &source.created_timestamp_column {
            columns.insert(c, "the source's created timestamp column".into());
        }
        for name in &v.entities {
            let Some(entity) = defs.entities.get(name) else {
                let known: Vec<_> = defs.entities.keys().map(String::as_str).collect();
                return err(
                    "feature view",
                    &v.name,
                    format!(
                        "entity `{name}` is not defined (defined: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            };
            for k in &entity.join_keys {
                if let Some(other) =
                    columns.insert(&k.name, format!("a join key of entity `{name}`"))
                {
                    return err(
                        "feature view",
                        &v.name,
                        format!(
                            "column `{}` is both {other} and a join key of entity `{name}`",
                            k.name
                        ),
                    );
                }
            }
        }
        if v.schema.is_empty() {
            return err(
                "feature view",
                &v.name,
                "its schema lists no feature".into(),
            );
        }
        for f in &v.schema {
            check_name("feature", &f.name)?;
            if let Some(other) = columns.insert(&f.name, "a feature".into()) {
                return err(
                    "feature view",
                    &v.name,
                    format!("feature `{}` is also {other}", f.name),
                );
            }
        }
        // an Avro source's messages can only hold its schema's fields
        if let SourceKind::Kafka {
            avro_schema: Some(text),
            ..
        } = &source.kind
        {
            if let Ok(schema) = crate::online::avro::AvroSchema::parse(text) {
                let fields = schema.field_names();
                if let Some((c, what)) = columns.iter().find(|(c, _)| !fields.contains(c)) {
                    return err(
                        "feature view",
                        &v.name,
                        format!(
                            "column `{c}` ({what}) is not a field of source `{}`'s avro_schema",
                            source.name
                        ),
                    );
                }
            }
        }
    }
    for s in defs.feature_services.values() {
        check_name("feature service", &s.name)?;
        if s.projections.is_empty() {
            return err("feature service", &s.name, "lists no feature".into());
        }
        for p in &s.projections {
            let Some(view) = defs.feature_views.get(&p.view) else {
                return err(
                    "feature service",
                    &s.name,
                    format!("feature view `{}` is not defined", p.view),
                );
            };
            for f in &p.features {
                if !view.schema.iter().any(|d| &d.name == f) {
                    return err(
                        "feature service",
                        &s.name,
                        format!("feature view `{}` has no feature `{f}`", p.view),
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
