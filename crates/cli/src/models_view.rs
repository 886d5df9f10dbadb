//! How `mlops models` shows models, versions and gate results: tables and lines for
//! people, JSON for scripts.

use mlops_proto::registry::v1 as pb;
use serde_json::json;

use crate::table;

pub fn stage_name(s: i32) -> &'static str {
    match pb::Stage::try_from(s).unwrap_or(pb::Stage::None) {
        pb::Stage::None => "None",
        pb::Stage::Staging => "Staging",
        pb::Stage::Production => "Production",
        pb::Stage::Archived => "Archived",
    }
}

pub fn status_name(s: i32) -> &'static str {
    pb::ModelVersionStatus::try_from(s)
        .map(|s| s.as_str_name())
        .unwrap_or("?")
}

pub fn spec_text(t: &pb::TensorSpec) -> String {
    let shape = match &t.shape {
        None => String::new(),
        Some(s) => format!(
            "[{}]",
            s.dims
                .iter()
                .map(|d| match &d.value {
                    Some(pb::dim::Value::Size(n)) => n.to_string(),
                    Some(pb::dim::Value::Symbol(s)) => s.clone(),
                    None => "?".into(),
                })
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    format!("{}: {}{shape}", t.name, t.elem_type)
}

pub fn tags_json(tags: &[pb::Tag]) -> serde_json::Value {
    json!(tags
        .iter()
        .map(|t| (t.key.clone(), json!(t.value)))
        .collect::<serde_json::Map<_, _>>())
}

pub fn gate_json(g: &pb::GateResult) -> serde_json::Value {
    json!({
        "id": g.id, "candidate_version": g.candidate_version, "baseline_version": g.baseline_version,
        "baseline_alias": g.baseline_alias, "passed": g.passed, "summary": g.summary, "timestamp": g.timestamp,
        "dataset": g.dataset,
        "metrics": g.metrics.iter().map(|m| json!({
            "metric": m.metric, "passed": m.passed, "candidate_value": m.candidate_value,
            "baseline_value": m.baseline_value, "reason": m.reason, "candidate_source": m.candidate_source,
        })).collect::<Vec<_>>(),
    })
}

pub fn version_json(v: &pb::ModelVersion) -> serde_json::Value {
    let l = v.lineage.clone().unwrap_or_default();
    json!({
        "name": v.name, "version": v.version, "status": status_name(v.status), "status_message": v.status_message,
        "stage": stage_name(v.current_stage), "aliases": v.aliases, "source": v.source, "run_id": v.run_id,
        "storage_location": v.storage_location, "size_bytes": v.size_bytes, "description": v.description,
        "creation_timestamp": v.creation_timestamp, "last_updated_timestamp": v.last_updated_timestamp,
        "tags": tags_json(&v.tags),
        "lineage": {
            "run_id": l.run_id, "experiment_id": l.experiment_id, "run_name": l.run_name,
            "artifact_path": l.artifact_path, "uploaded_file": l.uploaded_file,
            "datasets": l.datasets.iter().map(|d| json!({"name": d.name, "digest": d.digest, "context": d.context, "source_type": d.source_type})).collect::<Vec<_>>(),
            "metrics": l.metrics.iter().map(|m| (m.key.clone(), json!(m.value))).collect::<serde_json::Map<_, _>>(),
            "params": tags_json(&l.params),
        },
        "signature": v.signature.as_ref().map(|s| json!({
            "format": s.format, "file": s.file,
            "inputs": s.inputs.iter().map(spec_text).collect::<Vec<_>>(),
            "outputs": s.outputs.iter().map(spec_text).collect::<Vec<_>>(),
        })),
        "last_gate": v.last_gate.as_ref().map(gate_json),
    })
}

pub fn model_json(m: &pb::RegisteredModel) -> serde_json::Value {
    let p = m.gate_policy.clone().unwrap_or_default();
    json!({
        "name": m.name, "id": m.id, "description": m.description,
        "creation_timestamp": m.creation_timestamp, "last_updated_timestamp": m.last_updated_timestamp,
        "aliases": m.aliases.iter().map(|a| (a.alias.clone(), json!(a.version))).collect::<serde_json::Map<_, _>>(),
        "latest_versions": m.latest_versions.iter().map(|v| json!({"version": v.version, "stage": stage_name(v.current_stage), "status": status_name(v.status)})).collect::<Vec<_>>(),
        "gate_policy": {"require_passed_gate": p.require_passed_gate, "aliases": p.aliases},
        "tags": tags_json(&m.tags),
    })
}

/// The columns of a table of models; [`model_row`] fills them.
pub const MODEL_HEADER: &[&str] = &["NAME", "ALIASES", "LATEST BY STAGE", "UPDATED"];

pub fn model_row(m: &pb::RegisteredModel) -> Vec<String> {
    vec![
        m.name.clone(),
        m.aliases
            .iter()
            .map(|a| format!("{}=v{}", a.alias, a.version))
            .collect::<Vec<_>>()
            .join(" "),
        m.latest_versions
            .iter()
            .map(|v| format!("{}=v{}", stage_name(v.current_stage), v.version))
            .collect::<Vec<_>>()
            .join(" "),
        table::time(Some(m.last_updated_timestamp)),
    ]
}

/// The columns of a table of versions; [`version_row`] fills them.
pub const VERSION_HEADER: &[&str] = &[
    "VERSION", "STATUS", "STAGE", "ALIASES", "RUN", "CREATED", "GATE",
];

pub fn version_row(v: &pb::ModelVersion) -> Vec<String> {
    vec![
        v.version.to_string(),
        status_name(v.status).into(),
        stage_name(v.current_stage).into(),
        v.aliases.join(","),
        v.run_id.clone(),
        table::time(Some(v.creation_timestamp)),
        v.last_gate
            .as_ref()
            .map(|g| if g.passed { "passed" } else { "failed" })
            .unwrap_or("-")
            .into(),
    ]
}

pub fn print_model(m: &pb::RegisteredModel) {
    println!("{} (id {})", m.name, m.id);
    if !m.description.is_empty() {
        println!("  description {}", m.description);
    }
    println!("  created     {}", table::time(Some(m.creation_timestamp)));
    println!(
        "  updated     {}",
        table::time(Some(m.last_updated_timestamp))
    );
    for a in &m.aliases {
        println!("  alias       {} -> version {}", a.alias, a.version);
    }
    for v in &m.latest_versions {
        println!(
            "  latest      {} version {} ({})",
            stage_name(v.current_stage),
            v.version,
            status_name(v.status)
        );
    }
    let p = m.gate_policy.clone().unwrap_or_default();
    if p.require_passed_gate {
        let which = if p.aliases.is_empty() {
            "every alias".to_owned()
        } else {
            p.aliases.join(", ")
        };
        println!("  gate policy a passed gate before {which} moves");
    }
    for t in &m.tags {
        println!("  tag         {} = {}", t.key, t.value);
    }
}

pub fn print_version(v: &pb::ModelVersion) {
    println!("{} version {}", v.name, v.version);
    println!("  status      {}", status_name(v.status));
    if !v.status_message.is_empty() {
        println!("  reason      {}", v.status_message);
    }
    println!("  stage       {}", stage_name(v.current_stage));
    if !v.aliases.is_empty() {
        println!("  aliases     {}", v.aliases.join(", "));
    }
    println!("  source      {}", v.source);
    println!(
        "  stored at   {} ({} bytes)",
        v.storage_location, v.size_bytes
    );
    println!("  created     {}", table::time(Some(v.creation_timestamp)));
    if !v.description.is_empty() {
        println!("  description {}", v.description);
    }
    for t in &v.tags {
        println!("  tag         {} = {}", t.key, t.value);
    }
    if let Some(l) = &v.lineage {
        println!("lineage");
        if !l.run_id.is_empty() {
            println!(
                "  run         {} ({}) in experiment {}",
                l.run_id, l.run_name, l.experiment_id
            );
            println!("  artifact    {}", l.artifact_path);
        }
        if !l.uploaded_file.is_empty() {
            println!("  uploaded    {}", l.uploaded_file);
        }
        for d in &l.datasets {
            println!(
                "  dataset     {} ({}) digest {} from {}",
                d.name, d.context, d.digest, d.source_type
            );
        }
        for m in &l.metrics {
            println!("  metric      {} = {}", m.key, m.value);
        }
        for p in &l.params {
            println!("  param       {} = {}", p.key, p.value);
        }
    }
    if let Some(s) = &v.signature {
        println!("signature ({} in {})", s.format, s.file);
        for i in &s.inputs {
            println!("  input       {}", spec_text(i));
        }
        for o in &s.outputs {
            println!("  output      {}", spec_text(o));
        }
    }
    if let Some(g) = &v.last_gate {
        println!("last gate     #{} {}", g.id, g.summary);
    }
}

pub fn print_gate(g: &pb::GateResult) {
    let baseline = match (g.baseline_version, g.baseline_alias.as_str()) {
        (0, _) => "no baseline (absolute thresholds)".to_owned(),
        (v, "") => format!("version {v}"),
        (v, a) => format!("version {v} (alias {a})"),
    };
    println!(
        "gate #{}: {} version {} against {}",
        g.id, g.name, g.candidate_version, baseline
    );
    let rows: Vec<Vec<String>> = g
        .metrics
        .iter()
        .map(|m| {
            vec![
                m.metric.clone(),
                if m.passed { "pass" } else { "FAIL" }.into(),
                format!("{}", m.candidate_value),
                m.baseline_value
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                m.reason.clone(),
            ]
        })
        .collect();
    table::print(&["METRIC", "RESULT", "CANDIDATE", "BASELINE", "WHY"], &rows);
    println!("{}", g.summary);
}
