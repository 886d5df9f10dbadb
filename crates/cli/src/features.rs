//! `mlops features apply|list|describe|materialize|get|historical`: the feature store's
//! definitions, its online store and training data.

use std::path::PathBuf;

use anyhow::Context;
use mlops_feature_store::offline::ipc::{Decoder, Encoder};
use mlops_proto::featurestore::v1 as pb;
use serde_json::{json, Value};

use crate::client::FeatureStoreClient as Client;
use crate::output::{print_json, Output};
use crate::table;

/// The feature store's commands.
#[derive(Debug, clap::Subcommand)]
pub enum FeaturesCmd {
    /// Apply a YAML definition set: afterwards the store holds exactly its entities,
    /// sources, feature views and feature services (what is not in it is removed).
    /// Applying the same file twice changes nothing.
    Apply {
        /// The definition file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Report what would change without applying it.
        #[arg(long)]
        dry_run: bool,
    },
    /// The definitions, by kind and name.
    List {
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// One definition, in full.
    Describe {
        /// Its name.
        name: String,
        /// Its kind, when several kinds share the name.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Copy the newest value of every key of online feature views into the online store,
    /// from their sources' rows with an event time in [--start, --end].
    Materialize {
        /// The views (repeat, or separate with commas); none: every online view.
        #[arg(long, value_delimiter = ',')]
        views: Vec<String>,
        /// From (RFC 3339); none: from the beginning.
        #[arg(long, value_parser = time_arg, conflicts_with = "incremental")]
        start: Option<prost_types::Timestamp>,
        /// Up to (RFC 3339, or now), included.
        #[arg(long, value_parser = time_arg)]
        end: prost_types::Timestamp,
        /// From where each view's last run ended.
        #[arg(long)]
        incremental: bool,
    },
    /// Online values for entity rows: `--entity driver_id=1001,1002` (`KEY:string=...` keeps
    /// numbers as strings); one row per entity row, with each value's status when it has none.
    Get {
        /// Feature references, `view:feature` (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',', required_unless_present = "service")]
        features: Vec<String>,
        /// A feature service instead of feature references.
        #[arg(long, conflicts_with = "features")]
        service: Option<String>,
        /// Name the columns `view__feature`.
        #[arg(long)]
        full_feature_names: bool,
        /// A join key's column of values (repeat for each key).
        #[arg(long = "entity", value_parser = entity_column, required = true)]
        entities: Vec<EntityColumn>,
    },
    /// Training data: the features known at each row's time, joined onto an entity table
    /// (a local Parquet file with the join keys and the time column); writes a local
    /// Parquet file with the entity table's rows, in order, and the features.
    Historical {
        /// The entity table (local Parquet).
        #[arg(long)]
        entities: PathBuf,
        /// Feature references, `view:feature` (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',', required_unless_present = "service")]
        features: Vec<String>,
        /// A feature service instead of feature references.
        #[arg(long, conflicts_with = "features")]
        service: Option<String>,
        /// Name the columns `view__feature`.
        #[arg(long)]
        full_feature_names: bool,
        /// The entity table's time column.
        #[arg(long, default_value = "event_timestamp")]
        timestamp_column: String,
        /// Only feature rows created by each entity row's time (a source's created
        /// timestamp column): what was known then, not what a later backfill wrote.
        #[arg(long)]
        filter_by_created_timestamp: bool,
        /// Where to write the training table (local Parquet).
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// `name=v1,v2,...`, or `name:string=...` to keep numbers as strings.
#[derive(Debug, Clone)]
pub struct EntityColumn {
    name: String,
    values: Vec<pb::Value>,
}

fn entity_column(s: &str) -> Result<EntityColumn, String> {
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write KEY=v1,v2 (or KEY:string=v1,v2)"))?;
    let (name, strings) = match name.split_once(':') {
        Some((n, "string")) => (n, true),
        Some((_, t)) => return Err(format!("`{t}`: the only type to force is `string`")),
        None => (name, false),
    };
    use pb::value::Kind;
    let values = values
        .split(',')
        .map(|v| pb::Value {
            kind: Some(match v.parse::<i64>() {
                Ok(i) if !strings => Kind::Int64Value(i),
                _ => Kind::StringValue(v.to_owned()),
            }),
        })
        .collect();
    Ok(EntityColumn {
        name: name.to_owned(),
        values,
    })
}

/// An RFC 3339 time, or `now`, as a protobuf timestamp.
fn time_arg(s: &str) -> Result<prost_types::Timestamp, String> {
    let t = if s == "now" {
        chrono::Utc::now()
    } else {
        chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("`{s}`: {e} (write 2024-01-31T12:00:00Z, or now)"))?
            .with_timezone(&chrono::Utc)
    };
    Ok(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

fn show_value(v: &pb::Value) -> String {
    use pb::value::Kind;
    match &v.kind {
        None => "null".into(),
        Some(Kind::Int64Value(i)) => i.to_string(),
        Some(Kind::Int32Value(i)) => i.to_string(),
        Some(Kind::DoubleValue(d)) => d.to_string(),
        Some(Kind::FloatValue(f)) => f.to_string(),
        Some(Kind::StringValue(s)) => s.clone(),
        Some(Kind::BytesValue(b)) => format!("{} bytes", b.len()),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::UnixTimestampNanos(n)) => n.to_string(),
    }
}

fn value_json(v: &pb::Value) -> Value {
    use pb::value::Kind;
    match &v.kind {
        None => Value::Null,
        Some(Kind::Int64Value(i)) => json!(i),
        Some(Kind::Int32Value(i)) => json!(i),
        Some(Kind::DoubleValue(d)) => json!(d),
        Some(Kind::FloatValue(f)) => json!(f),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BytesValue(b)) => json!(b.to_vec()),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::UnixTimestampNanos(n)) => json!(n),
    }
}

fn status_name(s: i32) -> &'static str {
    match pb::FieldStatus::try_from(s) {
        Ok(pb::FieldStatus::Present) => "PRESENT",
        Ok(pb::FieldStatus::NullValue) => "NULL_VALUE",
        Ok(pb::FieldStatus::NotFound) => "NOT_FOUND",
        Ok(pb::FieldStatus::OutsideMaxAge) => "OUTSIDE_MAX_AGE",
        _ => "INVALID",
    }
}

/// A kind of definition.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Entities.
    Entity,
    /// Data sources.
    Source,
    /// Feature views.
    FeatureView,
    /// Feature services.
    FeatureService,
}

impl KindArg {
    fn pb(self) -> pb::Kind {
        match self {
            KindArg::Entity => pb::Kind::Entity,
            KindArg::Source => pb::Kind::Source,
            KindArg::FeatureView => pb::Kind::FeatureView,
            KindArg::FeatureService => pb::Kind::FeatureService,
        }
    }
}

fn kind_name(k: i32) -> &'static str {
    match pb::Kind::try_from(k) {
        Ok(pb::Kind::Entity) => "entity",
        Ok(pb::Kind::Source) => "source",
        Ok(pb::Kind::FeatureView) => "feature_view",
        Ok(pb::Kind::FeatureService) => "feature_service",
        _ => "unknown",
    }
}

fn definition_json(d: &pb::Definition) -> Value {
    json!({
        "kind": kind_name(d.kind),
        "name": d.name,
        "version": d.version,
        "updated_at_ms": d.updated_at_ms,
        "spec": serde_json::from_str::<Value>(&d.spec_json).unwrap_or(Value::Null),
    })
}

/// Runs a `mlops features` command.
pub async fn run(mut c: Client, cmd: FeaturesCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        FeaturesCmd::Apply { file, dry_run } => {
            let yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let req = pb::ApplyDefinitionsRequest {
                yaml,
                file_name: file.display().to_string(),
                dry_run,
            };
            out.call(
                c.apply_definitions(req),
                |r| r,
                |r| {
                    let refs = |v: &[pb::DefinitionRef]| -> Vec<Value> {
                        v.iter()
                            .map(|d| json!({"kind": kind_name(d.kind), "name": d.name}))
                            .collect()
                    };
                    Some(json!({
                        "created": refs(&r.created),
                        "changed": refs(&r.changed),
                        "removed": refs(&r.removed),
                        "version": r.version,
                        "dry_run": dry_run,
                    }))
                },
                |r| {
                    let mut rows = Vec::new();
                    for (what, list) in [
                        ("created", &r.created),
                        ("changed", &r.changed),
                        ("removed", &r.removed),
                    ] {
                        for d in list.iter() {
                            rows.push(vec![
                                what.to_owned(),
                                kind_name(d.kind).to_owned(),
                                d.name.clone(),
                            ]);
                        }
                    }
                    if rows.is_empty() {
                        println!("no change (definition version {})", r.version);
                    } else {
                        table::print(&["CHANGE", "KIND", "NAME"], &rows);
                        let verb = if dry_run { "would be" } else { "is now" };
                        println!("definition version {verb} {}", r.version);
                    }
                },
            )
            .await?;
        }
        FeaturesCmd::List { kind } => {
            let req = pb::ListDefinitionsRequest {
                kind: kind.map(|k| k.pb() as i32).unwrap_or(0),
            };
            out.list(
                c.list_definitions(req),
                |r| r.definitions,
                definition_json,
                &["KIND", "NAME", "VERSION", "UPDATED"],
                |d| {
                    vec![
                        kind_name(d.kind).to_owned(),
                        d.name.clone(),
                        d.version.to_string(),
                        table::time(Some(d.updated_at_ms)),
                    ]
                },
            )
            .await?;
        }
        FeaturesCmd::Describe { name, kind } => {
            let found = match kind {
                Some(k) => c
                    .get_definition(pb::GetDefinitionRequest {
                        kind: k.pb() as i32,
                        name,
                    })
                    .await?
                    .into_inner()
                    .definition
                    .into_iter()
                    .collect::<Vec<_>>(),
                None => {
                    let all = c
                        .list_definitions(pb::ListDefinitionsRequest { kind: 0 })
                        .await?
                        .into_inner()
                        .definitions;
                    let found: Vec<_> = all.into_iter().filter(|d| d.name == name).collect();
                    match found.len() {
                        0 => anyhow::bail!("no definition is named `{name}` (`mlops features list` shows them)"),
                        1 => found,
                        _ => anyhow::bail!(
                            "several kinds have a definition named `{name}` ({}): say which with --kind",
                            found.iter().map(|d| kind_name(d.kind)).collect::<Vec<_>>().join(", ")
                        ),
                    }
                }
            };
            for d in &found {
                print_json(&definition_json(d));
            }
        }
        FeaturesCmd::Materialize {
            views,
            start,
            end,
            incremental,
        } => {
            let req = pb::MaterializeRequest {
                feature_views: views,
                start,
                end: Some(end),
                incremental,
            };
            let show_time = |t: &Option<prost_types::Timestamp>| {
                t.as_ref()
                    .map(|t| table::time(Some(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)))
                    .unwrap_or_else(|| "-".into())
            };
            out.list(
                c.materialize(req),
                |r| r.views,
                |v| {
                    json!({"view": v.name, "rows": v.rows, "keys_written": v.keys_written,
                           "start": v.start.as_ref().map(|t| t.seconds), "end": v.end.as_ref().map(|t| t.seconds)})
                },
                &["VIEW", "FROM", "TO", "ROWS", "KEYS WRITTEN", "NEWEST EVENT"],
                |v| {
                    vec![
                        v.name.clone(),
                        show_time(&v.start),
                        show_time(&v.end),
                        v.rows.to_string(),
                        v.keys_written.to_string(),
                        show_time(&v.newest_event),
                    ]
                },
            )
            .await?;
        }
        FeaturesCmd::Get {
            features,
            service,
            full_feature_names,
            entities,
        } => {
            let req = pb::GetOnlineFeaturesRequest {
                features,
                feature_service: service.unwrap_or_default(),
                full_feature_names,
                entities: entities
                    .into_iter()
                    .map(|e| (e.name, pb::Values { values: e.values }))
                    .collect(),
            };
            let r = c.get_online_features(req).await?.into_inner();
            let rows = r.results.first().map(|v| v.values.len()).unwrap_or(0);
            if out.json {
                let list: Vec<Value> = (0..rows)
                    .map(|i| {
                        let mut row = serde_json::Map::new();
                        for (name, v) in r.feature_names.iter().zip(&r.results) {
                            row.insert(name.clone(), json!({"value": value_json(&v.values[i]), "status": status_name(v.statuses[i])}));
                        }
                        Value::Object(row)
                    })
                    .collect();
                print_json(&Value::Array(list));
            } else {
                let header: Vec<&str> = r.feature_names.iter().map(String::as_str).collect();
                let cells: Vec<Vec<String>> = (0..rows)
                    .map(|i| {
                        r.results
                            .iter()
                            .map(|v| match pb::FieldStatus::try_from(v.statuses[i]) {
                                Ok(pb::FieldStatus::Present) => show_value(&v.values[i]),
                                _ => status_name(v.statuses[i]).to_owned(),
                            })
                            .collect()
                    })
                    .collect();
                table::print(&header, &cells);
            }
        }
        FeaturesCmd::Historical {
            entities,
            features,
            service,
            full_feature_names,
            timestamp_column,
            filter_by_created_timestamp,
            output,
        } => {
            let rows = historical(
                &mut c,
                &entities,
                pb::HistoricalQuery {
                    features,
                    feature_service: service.unwrap_or_default(),
                    full_feature_names,
                    timestamp_column,
                    filter_by_created_timestamp,
                    ..Default::default()
                },
                &output,
            )
            .await?;
            if out.json {
                print_json(&json!({"rows": rows, "output": output.display().to_string()}));
            } else {
                println!("{rows} rows written to {}", output.display());
            }
        }
    }
    Ok(())
}

/// Streams the local Parquet `entities` with `query`, writes the answer to `output`;
/// returns its row count.
async fn historical(
    c: &mut Client,
    entities: &PathBuf,
    query: pb::HistoricalQuery,
    output: &PathBuf,
) -> anyhow::Result<i64> {
    use pb::get_historical_features_request::Part;
    let file =
        std::fs::File::open(entities).with_context(|| format!("opening {}", entities.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a Parquet file", entities.display()))?
        .build()?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    let mut enc = Encoder::new(&schema, 1 << 20).map_err(anyhow::Error::msg)?;
    let mut msgs = vec![pb::GetHistoricalFeaturesRequest {
        part: Some(Part::Query(query)),
    }];
    for batch in reader {
        enc.write(&batch?).map_err(anyhow::Error::msg)?;
        msgs.extend(
            enc.take()
                .into_iter()
                .map(|c| pb::GetHistoricalFeaturesRequest {
                    part: Some(Part::ArrowIpc(c)),
                }),
        );
    }
    enc.finish().map_err(anyhow::Error::msg)?;
    msgs.extend(
        enc.take()
            .into_iter()
            .map(|c| pb::GetHistoricalFeaturesRequest {
                part: Some(Part::ArrowIpc(c)),
            }),
    );
    let mut answer = c
        .get_historical_features(futures::stream::iter(msgs))
        .await?
        .into_inner();
    let mut dec = Decoder::new();
    let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    let mut rows = 0;
    while let Some(m) = answer.message().await? {
        match m.part {
            Some(pb::get_historical_features_response::Part::ArrowIpc(chunk)) => {
                for batch in dec.push(chunk).map_err(anyhow::Error::msg)? {
                    if writer.is_none() {
                        let f = std::fs::File::create(output)
                            .with_context(|| format!("creating {}", output.display()))?;
                        writer = Some(parquet::arrow::ArrowWriter::try_new(
                            f,
                            batch.schema(),
                            None,
                        )?);
                    }
                    writer.as_mut().expect("created above").write(&batch)?;
                }
            }
            Some(pb::get_historical_features_response::Part::Summary(s)) => rows = s.rows,
            None => {}
        }
    }
    match writer {
        Some(w) => {
            w.close()?;
        }
        None => {
            // No rows: still a file, with the schema.
            let schema = dec.schema().context("the answer carried no table")?;
            let f = std::fs::File::create(output)
                .with_context(|| format!("creating {}", output.display()))?;
            parquet::arrow::ArrowWriter::try_new(f, schema, None)?.close()?;
        }
    }
    Ok(rows)
}
