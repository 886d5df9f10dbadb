//! `mlops monitor report --html FILE`: a drift report as one self-contained page — the
//! verdicts in a table, and per column a chart of the reference's and the window's
//! distributions in the same bins (inline SVG and CSS: no script, nothing fetched, so the
//! page opens anywhere, offline, and can be attached to a ticket).

use std::fmt::Write;

use mlops_proto::monitoring::v1 as pb;

/// Chart size, in CSS pixels (tilted category labels add to the height).
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 180.0;
const PAD: f64 = 28.0;
/// A tick label's average character width (10px sans-serif), to tell whether category
/// labels fit under their bars side by side; and its height.
const CHAR_W: f64 = 6.0;
const TICK_H: f64 = 10.0;
/// The characters of a category label shown (the full name is in the bar's tooltip).
const LABEL_CHARS: usize = 12;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn score(s: Option<f64>) -> String {
    s.map_or("–".into(), |s| format!("{s:.6}"))
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A compact axis label.
fn num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e5).contains(&x.abs()) {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{x:.2e}")
    }
}

/// The page of report `r`.
pub fn render(r: &pb::DriftReport) -> String {
    let mut h = String::new();
    let verdict = if r.dataset_drift {
        "<span class=\"bad\">dataset drift</span>"
    } else {
        "<span class=\"ok\">no dataset drift</span>"
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Drift report: {monitor}</title><style>{CSS}</style></head><body>\
         <h1>Drift report <code>{monitor}</code></h1>\
         <p class=\"summary\">{verdict}: {drifted} of {columns} columns drifted \
         (share {share:.3}, drift at {drift_share:.3})</p>\
         <table class=\"meta\"><tr><th>report</th><td>{id}</td></tr>\
         <tr><th>created</th><td>{created}</td></tr>\
         <tr><th>window</th><td>{rows} rows{version}{source}</td></tr>\
         <tr><th>reference</th><td>version {reference}</td></tr></table>",
        monitor = esc(&r.monitor),
        drifted = r.drifted_columns,
        columns = r.columns.len(),
        share = r.share,
        drift_share = r.drift_share,
        id = esc(&r.id),
        created = time(r.created_at_ms),
        rows = r.rows,
        version = if r.model_version.is_empty() {
            String::new()
        } else {
            format!(", model version {}", esc(&r.model_version))
        },
        source = if r.source == "prediction_log" {
            format!(
                ", from the prediction log ({} to {})",
                time(r.window_start_ms),
                time(r.window_end_ms)
            )
        } else {
            String::new()
        },
        reference = r.reference_version,
    );
    h.push_str(
        "<h2>Columns</h2><table class=\"columns\"><thead><tr><th>column</th><th>type</th>\
         <th>method</th><th>threshold</th><th>score</th><th>drift</th><th>rows (ref / cur)</th>\
         <th>note</th></tr></thead><tbody>",
    );
    for c in &r.columns {
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td><a href=\"#col-{anchor}\">{name}</a></td><td>{ty}</td>\
             <td>{method}</td><td>{threshold}</td><td>{score}</td><td>{drift}</td>\
             <td>{rc} / {cc}</td><td>{note}</td></tr>",
            class = if c.drifted { "drifted" } else { "" },
            anchor = anchor(&c.column),
            name = esc(&c.column),
            ty = type_name(c.r#type),
            method = esc(&c.method),
            threshold = num(c.threshold),
            score = score(c.adjusted_score.or(c.score)),
            drift = if c.drifted { "drifted" } else { "–" },
            rc = c.reference_count,
            cc = c.current_count,
            note = esc(&c.note),
        );
    }
    h.push_str("</tbody></table><h2>Distributions</h2>");
    h.push_str(
        "<p class=\"legend\"><span class=\"sw ref\"></span> reference \
         <span class=\"sw cur\"></span> current window (share of each one's values)</p>",
    );
    for c in &r.columns {
        let _ = write!(
            h,
            "<section class=\"chart\" id=\"col-{}\"><h3>{}{}</h3>",
            anchor(&c.column),
            esc(&c.column),
            if c.drifted {
                " <span class=\"bad\">drifted</span>"
            } else {
                ""
            }
        );
        match &c.histogram {
            Some(hist) if !hist.reference.is_empty() => h.push_str(&chart(hist)),
            _ => h.push_str("<p class=\"none\">no chart: a side has no values</p>"),
        }
        h.push_str("</section>");
    }
    h.push_str("</body></html>\n");
    h
}

fn type_name(t: i32) -> &'static str {
    match pb::ColumnType::try_from(t) {
        Ok(pb::ColumnType::Numerical) => "numerical",
        Ok(pb::ColumnType::Categorical) => "categorical",
        _ => "",
    }
}

/// A column name as an HTML id.
fn anchor(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A category's name as a tick label: at most [`LABEL_CHARS`] characters.
fn category_label(c: &str) -> String {
    if c.chars().count() <= LABEL_CHARS {
        c.to_owned()
    } else {
        c.chars().take(LABEL_CHARS - 1).chain(['…']).collect()
    }
}

/// Side-by-side bars of the reference's and the window's shares per bin, in SVG.
fn chart(hist: &pb::Histogram) -> String {
    let bins = hist.reference.len().min(hist.current.len());
    let top = hist
        .reference
        .iter()
        .chain(&hist.current)
        .fold(0.0f64, |m, &x| m.max(x))
        .max(1e-12);
    let labels: Vec<String> = hist
        .categories
        .iter()
        .take(bins)
        .map(|c| category_label(c))
        .collect();
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * CHAR_W;
    // Labels wider than their bars' slot would run into each other: tilt them by 45° (each
    // ending under its bar), which takes `reach` below the axis and left of the first bar.
    let tilt = widest > (WIDTH - 2.0 * PAD) / bins.max(1) as f64 - CHAR_W;
    let reach = if tilt {
        widest * std::f64::consts::FRAC_1_SQRT_2
    } else {
        0.0
    };
    let left = if tilt {
        let slot = (WIDTH - 2.0 * PAD) / bins.max(1) as f64;
        PAD.max(reach + TICK_H - slot / 2.0 + 4.0)
    } else {
        PAD
    };
    let svg_h = HEIGHT + reach;
    let plot_w = WIDTH - left - PAD;
    let plot_h = HEIGHT - 2.0 * PAD;
    let slot = plot_w / bins.max(1) as f64;
    let bar = (slot * 0.42).max(0.5);
    let base = HEIGHT - PAD;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{svg_h:.0}\" \
         viewBox=\"0 0 {WIDTH} {svg_h:.0}\" role=\"img\">\
         <line x1=\"{left:.2}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" class=\"axis\"/>\
         <text x=\"2\" y=\"{PAD}\" class=\"tick\">{top}</text>",
        right = WIDTH - PAD,
        top = num(top),
    );
    for i in 0..bins {
        let x = left + i as f64 * slot;
        for (j, (v, class)) in [(hist.reference[i], "ref"), (hist.current[i], "cur")]
            .into_iter()
            .enumerate()
        {
            let height = v / top * plot_h;
            let _ = write!(
                s,
                "<rect class=\"{class}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{bar:.2}\" height=\"{height:.2}\">\
                 <title>{}: {v:.4}</title></rect>",
                x + slot * 0.08 + j as f64 * bar,
                base - height,
                esc(&bin_label(hist, i)),
            );
        }
    }
    // labels: the first and last edges of a numerical chart, each category's name
    if hist.categories.is_empty() {
        if let (Some(first), Some(last)) = (hist.edges.first(), hist.edges.last()) {
            let _ = write!(
                s,
                "<text x=\"{left:.2}\" y=\"{y}\" class=\"tick\">{}</text>\
                 <text x=\"{right}\" y=\"{y}\" class=\"tick end\">{}</text>",
                num(*first),
                num(*last),
                y = HEIGHT - 8.0,
                right = WIDTH - PAD,
            );
        }
    } else {
        for (i, label) in labels.iter().enumerate() {
            let x = left + (i as f64 + 0.5) * slot;
            if tilt {
                let y = base + TICK_H;
                let _ = write!(
                    s,
                    "<text x=\"{x:.2}\" y=\"{y}\" transform=\"rotate(-45 {x:.2} {y})\" \
                     class=\"tick end\">{}</text>",
                    esc(label)
                );
            } else {
                let _ = write!(
                    s,
                    "<text x=\"{x:.2}\" y=\"{}\" class=\"tick mid\">{}</text>",
                    HEIGHT - 8.0,
                    esc(label)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

fn bin_label(hist: &pb::Histogram, i: usize) -> String {
    match hist.categories.get(i) {
        Some(c) => c.clone(),
        None => match (hist.edges.get(i), hist.edges.get(i + 1)) {
            (Some(a), Some(b)) => format!("[{}, {})", num(*a), num(*b)),
            _ => format!("bin {i}"),
        },
    }
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px;margin:8px 0}\
table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}\
table.meta th{color:#666;font-weight:normal}tr.drifted td{background:#fdecea}\
.bad{color:#b3261e;font-weight:600}.ok{color:#1e7b34;font-weight:600}\
.summary{font-size:16px}.chart{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}\
rect.ref{fill:#9aa5b1}rect.cur{fill:#d9534f}.axis{stroke:#888}\
.tick{font-size:10px;fill:#555}.tick.end{text-anchor:end}.tick.mid{text-anchor:middle}\
.sw{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
.sw.ref{background:#9aa5b1}.sw.cur{background:#d9534f}.none{color:#888}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_renders_escaped_with_a_chart_per_column() {
        let r = pb::DriftReport {
            monitor: "m<1>".into(),
            rows: 10,
            dataset_drift: true,
            columns: vec![
                pb::ColumnDrift {
                    column: "x&y".into(),
                    r#type: pb::ColumnType::Numerical as i32,
                    method: "ks".into(),
                    score: Some(0.01),
                    drifted: true,
                    histogram: Some(pb::Histogram {
                        edges: vec![0.0, 1.0, 2.0],
                        reference: vec![0.5, 0.5],
                        current: vec![0.9, 0.1],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                pb::ColumnDrift {
                    column: "c".into(),
                    histogram: Some(pb::Histogram {
                        categories: vec!["a".into(), "<b>".into()],
                        reference: vec![0.5, 0.5],
                        current: vec![0.5, 0.5],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                pb::ColumnDrift {
                    column: "empty".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let page = render(&r);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(
            page.contains("m&lt;1&gt;") && page.contains("x&amp;y") && page.contains("&lt;b&gt;")
        );
        assert!(!page.contains("<b>"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("<rect").count(), 8);
        assert!(page.contains("no chart"));
        assert!(page.contains("dataset drift"));
    }

    #[test]
    fn long_category_labels_are_tilted_inside_the_chart() {
        let few = |names: Vec<String>| pb::Histogram {
            reference: vec![1.0 / names.len() as f64; names.len()],
            current: vec![1.0 / names.len() as f64; names.len()],
            categories: names,
            ..Default::default()
        };
        let short = chart(&few(vec!["basic".into(), "pro".into()]));
        assert!(!short.contains("rotate(") && short.contains("height=\"180\""));

        let many = chart(&few((0..20)
            .map(|i| format!("city-{i:02}-long-name"))
            .collect()));
        assert_eq!(many.matches("rotate(-45").count(), 20);
        assert!(many.contains(">city-00-lon…</text>") && !many.contains("long-name</text>"));
        // the first label, 12 characters tilted left of its bar, starts inside the chart
        let number = |after: &str, end: char| -> f64 {
            let rest = many.split(after).nth(1).unwrap();
            rest[..rest.find(end).unwrap()].parse().unwrap()
        };
        let reach = 12.0 * CHAR_W * std::f64::consts::FRAC_1_SQRT_2;
        let x = number("rotate(-45 ", ' ');
        assert!(x - reach - TICK_H >= 0.0, "{x}");
        let h = number("height=\"", '"');
        assert!(h >= HEIGHT - PAD + TICK_H + reach, "{h}");
    }
}
