//! A window's performance kept up to date: estimated (CBPE) when the window closes,
//! realised whenever labels for its rows come; stored, published as gauges, and, past
//! the monitor's alert threshold, as a `PerformanceDegraded` event (at most one per
//! monitor per its cooldown).

use mlops_events::Envelope;
use mlops_proto::events::{topics, v1 as events};
use mlops_storage::now_millis;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::outcomes::{self, PerformanceSpec};
use crate::store::{Monitor, Reference, Store, StoredWindow, WindowPerformance};

/// Keeps windows' performance.
#[derive(Clone)]
pub struct Tracker {
    store: Store,
    metrics: Metrics,
}

impl Tracker {
    pub fn new(store: Store, metrics: Metrics) -> Self {
        Tracker { store, metrics }
    }

    /// A closed window of `m` (which measures performance): its estimate, and its
    /// realised performance from the labels that came before it closed.
    pub async fn closed(&self, m: &Monitor, reference: &Reference, w: &StoredWindow) -> Result<()> {
        let Some(spec) = &m.spec.performance else {
            return Ok(());
        };
        let mut p = self.current(m, &w.id, &w.model_version).await?;
        p.window_start_ms = w.state.first_ms;
        p.window_end_ms = w.state.last_ms;
        p.estimated = match &reference.cbpe {
            Some(cbpe) => {
                let rows = self.store.window_scores(&w.id).await?;
                outcomes::estimated(spec, cbpe, &rows).unwrap_or_else(|why| outcomes::Metrics {
                    notes: vec![format!("not estimated: {why}")],
                    ..Default::default()
                })
            }
            None => outcomes::Metrics::default(),
        };
        self.realise(spec, &mut p).await?;
        self.save(m, spec, p).await
    }

    /// Labels came for rows of `window_id`: its realised performance again.
    pub async fn labelled(&self, m: &Monitor, window_id: &str) -> Result<()> {
        let Some(spec) = &m.spec.performance else {
            return Ok(());
        };
        let mut p = self.current(m, window_id, "").await?;
        self.realise(spec, &mut p).await?;
        self.save(m, spec, p).await
    }

    /// The stored performance of a window, or an empty one.
    async fn current(
        &self,
        m: &Monitor,
        window_id: &str,
        version: &str,
    ) -> Result<WindowPerformance> {
        Ok(match self.store.window_performance(window_id).await? {
            Some(p) => p,
            None => WindowPerformance {
                window_id: window_id.to_owned(),
                monitor: m.name.clone(),
                model_version: version.to_owned(),
                rows: 0,
                labelled_rows: 0,
                window_start_ms: 0,
                window_end_ms: 0,
                realised: Default::default(),
                estimated: Default::default(),
                degraded: false,
                updated_at_ms: 0,
            },
        })
    }

    async fn realise(&self, spec: &PerformanceSpec, p: &mut WindowPerformance) -> Result<()> {
        let (rows, version, joined) = self.store.window_outcomes(&p.window_id).await?;
        p.rows = rows;
        if p.model_version.is_empty() {
            p.model_version = version;
        }
        p.labelled_rows = joined.len() as i64;
        p.realised = outcomes::realised(spec, &joined).unwrap_or_else(|why| outcomes::Metrics {
            notes: vec![format!("not computed: {why}")],
            ..Default::default()
        });
        Ok(())
    }

    /// Stores `p` with its verdict, its gauges and, when degraded, its event.
    async fn save(
        &self,
        m: &Monitor,
        spec: &PerformanceSpec,
        mut p: WindowPerformance,
    ) -> Result<()> {
        p.updated_at_ms = now_millis();
        // the realised value when there are labels, else the estimate
        let (kind, judged) = if p.labelled_rows > 0 {
            ("realised", &p.realised)
        } else {
            ("estimated", &p.estimated)
        };
        let alert = if spec.alert_metric.is_empty() {
            None
        } else {
            spec.alert(&judged.values)
        };
        p.degraded = alert.is_some();
        let event = alert.map(|value| degraded_event(m, spec, &p, kind, value));
        let published = self.store.save_performance(&p, event).await?;
        for (kind, metrics) in [("realised", &p.realised), ("estimated", &p.estimated)] {
            for (metric, v) in &metrics.values {
                self.metrics
                    .performance
                    .with_label_values(&[&m.name, &m.model, &p.model_version, metric, kind])
                    .set(*v);
            }
        }
        self.metrics
            .labelled_rows
            .with_label_values(&[&m.name, &m.model, &p.model_version])
            .set(p.labelled_rows as f64);
        if published {
            self.metrics
                .performance_events
                .with_label_values(&[&m.name])
                .inc();
        }
        Ok(())
    }
}

fn degraded_event(
    m: &Monitor,
    spec: &PerformanceSpec,
    p: &WindowPerformance,
    kind: &str,
    value: f64,
) -> Envelope {
    let msg = events::PerformanceDegraded {
        monitor: m.name.clone(),
        model: m.model.clone(),
        model_version: p.model_version.clone(),
        window_id: p.window_id.clone(),
        kind: kind.to_owned(),
        metric: spec.alert_metric.clone(),
        value,
        threshold: spec.alert_threshold,
        window_rows: p.rows,
        labelled_rows: p.labelled_rows,
    };
    Envelope::of(
        topics::MONITORING,
        "/mlops/monitoring",
        &m.name,
        format!("monitors/{}", m.name),
        &msg,
    )
}
