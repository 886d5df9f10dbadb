//! Following the prediction log (`mlops.inference.predictions`) as one consumer group
//! over every replica: each batch of predictions goes into the open windows of the
//! monitors that follow its deployment, one window per monitor and model version, in one
//! transaction with the partitions' offsets (see `store::windows`); a window that closes
//! (by rows, by time, or because the monitor's reference changed) is then tested against
//! its reference and reported like a pushed one, with its `DriftDetected` event.
//!
//! A malformed event is skipped and counted, never retried; a database error leaves the
//! batch uncommitted on the bus, so it comes again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use mlops_events::{Delivery, EventBus, Subscription};
use mlops_proto::events::{topics, v1 as ev};
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::now_millis;

use crate::drift::{self, DatasetDrift};
use crate::error::{MonitoringError, Result};
use crate::histogram::{self, Histogram, Side};
use crate::metrics::Metrics;
use crate::references::{Loaded, References};
use crate::sketch;
use crate::store::{
    ColumnProfile, LoggedPrediction, Monitor, Report, Store, StoredWindow, WindowSource,
};
use crate::tracker::Tracker;
use crate::windows::Values;
use crate::windows::{logged_rows, LoggedRows, WindowState};

/// Most events applied in one transaction.
const BATCH: usize = 2048;
/// How long a batch waits for more events after its first.
const LINGER: Duration = Duration::from_millis(100);
/// How often expired time windows are closed and closed windows reported.
const SWEEP: Duration = Duration::from_secs(1);
/// Attempts at a batch whose windows another writer changed meanwhile.
const ATTEMPTS: usize = 5;

/// The prediction log's follower.
#[derive(Clone)]
pub struct Follower {
    /// The consumer group, also the key of its offsets in the database.
    group: String,
    store: Store,
    references: References,
    metrics: Metrics,
    tracker: Tracker,
    /// How long predictions and labels are kept for the join.
    retention: Duration,
}

/// The predictions an event of the prediction log carries: a `PredictionsLogged`'s, in
/// order, or a single `PredictionLogged`.
fn predictions(
    e: &mlops_events::Envelope,
) -> std::result::Result<Vec<ev::PredictionLogged>, mlops_events::DecodeError> {
    if e.is::<ev::PredictionLogged>() {
        Ok(vec![e.decode::<ev::PredictionLogged>()?])
    } else {
        Ok(e.decode::<ev::PredictionsLogged>()?.predictions)
    }
}

/// About one sweep in a hundred prunes (every couple of minutes per replica).
fn rand_tick() -> bool {
    uuid::Uuid::new_v4().as_u128().is_multiple_of(100)
}

/// What one batch did.
struct Applied {
    /// Events applied, and events applied before.
    applied: usize,
    duplicate: usize,
    /// The open windows' rows: monitor, model version, rows.
    open: Vec<(String, String, u64)>,
    /// Monitors whose capture this batch completed.
    captured: Vec<String>,
}

/// One prediction's rows for one monitor.
struct Item {
    request_id: String,
    partition: i32,
    offset: i64,
    time_ms: i64,
    rows: Arc<LoggedRows>,
}

impl Follower {
    pub fn new(
        group: &str,
        store: Store,
        references: References,
        metrics: Metrics,
        retention: Duration,
    ) -> Self {
        Follower {
            retention,
            group: group.to_owned(),
            tracker: Tracker::new(store.clone(), metrics.clone()),
            store,
            references,
            metrics,
        }
    }

    /// Follows the log until `stop`; resubscribes after a bus or database error.
    pub async fn run(self, bus: Arc<dyn EventBus>, stop: CancellationToken) -> anyhow::Result<()> {
        let mut wait = Duration::from_millis(200);
        let mut sub: Option<Box<dyn Subscription>> = None;
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.is_cancelled() {
            let Some(s) = sub.as_mut() else {
                match bus.subscribe(&self.group, &[topics::PREDICTIONS]).await {
                    Ok(s) => sub = Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot follow the prediction log yet; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                }
                continue;
            };
            // the first event raced against the sweep; the rest taken without a race, so
            // nothing taken is dropped
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                _ = sweep.tick() => {
                    self.sweep().await;
                    continue;
                }
                next = s.next() => next,
            };
            let batch = match first {
                Ok(d) => s.fill_batch(d, BATCH, LINGER).await,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the prediction log failed; resubscribing");
                    sub = None;
                    continue;
                }
            };
            if let Err(e) = self.apply(&batch).await {
                // not committed on the bus: the batch comes again
                tracing::warn!(error = %e, events = batch.len(), "applying prediction-log events failed; retrying");
                sub = None;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
                continue;
            }
            wait = Duration::from_millis(200);
            if let Err(e) = s.commit_batch(&batch).await {
                // harmless: the database's offsets skip what comes again
                tracing::warn!(error = %e, "committing prediction-log offsets failed");
            }
            self.report_closed().await;
        }
        Ok(())
    }

    /// Closes the time windows whose time is up, and reports the closed windows; now and
    /// then forgets predictions and labels older than the retention.
    pub async fn sweep(&self) {
        if rand_tick() {
            let before = now_millis() - self.retention.as_millis() as i64;
            if let Err(e) = self.store.prune_outcomes(before).await {
                tracing::warn!(error = %e, "pruning old predictions and labels failed");
            }
        }
        match self.store.complete_captures().await {
            Ok(done) => {
                for m in done {
                    if let Err(e) = crate::capture::finish(&self.store, &self.references, &m).await
                    {
                        tracing::warn!(monitor = %m.name, error = %e, "making the captured rows a reference failed; retrying later");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading complete captures failed"),
        }
        match self.store.close_expired_windows(now_millis()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(windows = n, "closed expired windows"),
            Err(e) => tracing::warn!(error = %e, "closing expired windows failed"),
        }
        self.report_closed().await;
    }

    /// Applies a batch of the log to the windows, with the partitions' offsets, in one
    /// transaction (retried when the sweeper closed a window meanwhile).
    pub async fn apply(&self, batch: &[Delivery]) -> Result<()> {
        let monitors: Vec<Monitor> = self
            .store
            .monitors()
            .await?
            .into_iter()
            .filter(|m| {
                m.spec.prediction_log.is_some()
                    && (m.reference_version > 0 || m.capture.as_ref().is_some_and(|c| c.running()))
            })
            .collect();
        let mut following: HashMap<&str, Vec<&Monitor>> = HashMap::new();
        for m in &monitors {
            if let Some(p) = &m.spec.prediction_log {
                following.entry(p.deployment(&m.model)).or_default().push(m);
            }
        }
        let count = |outcome: &str, n: usize| {
            self.metrics
                .log_events
                .with_label_values(&[outcome])
                .inc_by(n as u64);
        };
        let mut work: BTreeMap<(usize, String), Vec<Item>> = BTreeMap::new();
        for d in batch {
            let predictions = match predictions(&d.envelope) {
                Ok(p) => p,
                Err(err) => {
                    count("malformed", 1);
                    tracing::debug!(offset = d.offset, error = %err, "skipped a prediction-log event");
                    continue;
                }
            };
            for e in predictions {
                let Some(ms) = following.get(e.deployment.as_str()) else {
                    count("unmonitored", 1);
                    continue;
                };
                let time_ms = match e.time_unix_nano / 1_000_000 {
                    0 => now_millis(),
                    t => t,
                };
                for m in ms {
                    let spec = m
                        .spec
                        .prediction_log
                        .as_ref()
                        .expect("followed monitors have a source");
                    match logged_rows(&e, &spec.input_columns) {
                        Ok(rows) => {
                            let at = monitors
                                .iter()
                                .position(|x| x.name == m.name)
                                .unwrap_or_default();
                            work.entry((at, e.version.to_string()))
                                .or_default()
                                .push(Item {
                                    request_id: e.request_id.clone(),
                                    partition: d.partition,
                                    offset: d.offset,
                                    time_ms,
                                    rows: Arc::new(rows),
                                });
                        }
                        Err(why) => {
                            count("malformed", 1);
                            tracing::debug!(monitor = %m.name, offset = d.offset, reason = %why, "skipped a prediction");
                        }
                    }
                }
            }
        }
        let mut loaded: HashMap<usize, Arc<Loaded>> = HashMap::new();
        for &(at, _) in work.keys() {
            let m = &monitors[at];
            if m.reference_version == 0 {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = loaded.entry(at) {
                v.insert(
                    self.references
                        .get(&self.store, &m.name, m.reference_version)
                        .await?,
                );
            }
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for d in batch {
            let n = next.entry(d.partition).or_insert(0);
            *n = (*n).max(d.offset + 1);
        }
        for attempt in 1..=ATTEMPTS {
            match self.apply_once(&monitors, &loaded, &work, &next).await {
                Err(MonitoringError::Unavailable(why))
                    if why == crate::store::CONFLICT && attempt < ATTEMPTS =>
                {
                    continue
                }
                Err(e) => return Err(e),
                Ok(Applied {
                    applied,
                    duplicate,
                    open,
                    captured,
                }) => {
                    count("applied", applied);
                    count("duplicate", duplicate);
                    for (monitor, version, rows) in open {
                        self.metrics
                            .open_window_rows
                            .with_label_values(&[&monitor, &version])
                            .set(rows as f64);
                    }
                    for name in captured {
                        self.finish_capture(&name).await;
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Makes a complete capture of monitor `name` its next reference (a failure is
    /// retried by the sweep).
    async fn finish_capture(&self, name: &str) {
        let done = match self.store.monitor(name).await {
            Ok(m) => crate::capture::finish(&self.store, &self.references, &m).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!(monitor = %name, error = %e, "making the captured rows a reference failed; retrying later");
        }
    }

    /// One attempt of [`Follower::apply`].
    async fn apply_once(
        &self,
        monitors: &[Monitor],
        loaded: &HashMap<usize, Arc<Loaded>>,
        work: &BTreeMap<(usize, String), Vec<Item>>,
        next: &BTreeMap<i32, i64>,
    ) -> Result<Applied> {
        let mut tx = self.store.db().begin().await?;
        let partitions: Vec<i32> = next.keys().copied().collect();
        let applied_up_to = self
            .store
            .log_offsets(&mut tx, &self.group, topics::PREDICTIONS, &partitions)
            .await?;
        let fresh = |i: &Item| i.offset >= applied_up_to.get(&i.partition).copied().unwrap_or(0);
        let (mut applied, mut duplicate, mut open) = (0, 0, Vec::new());
        let mut captured = Vec::new();
        for (at, m) in monitors.iter().enumerate() {
            let Some(c) = m.capture.as_ref().filter(|c| c.running()) else {
                continue;
            };
            let mut items: Vec<&Item> = work
                .range((at, String::new())..)
                .take_while(|((a, _), _)| *a == at)
                .flat_map(|(_, items)| items)
                .filter(|i| fresh(i))
                .collect();
            if items.is_empty() {
                continue;
            }
            if m.reference_version == 0 {
                // no windows yet: these events are applied here alone
                applied += items.len();
            }
            items.sort_by_key(|i| (i.time_ms, i.partition, i.offset));
            let rows: Vec<&LoggedRows> = items.iter().map(|i| i.rows.as_ref()).collect();
            let offered = rows.iter().map(|r| r.rows).sum::<usize>();
            let names: Vec<String> = m.spec.columns.iter().map(|c| c.name.clone()).collect();
            let taken = self
                .store
                .take_capture_rows(&mut tx, &m.name, &c.id, offered, |keep| {
                    crate::capture::encode_chunk(&rows, keep, &names)
                })
                .await?;
            if taken.is_some_and(|t| t.complete) {
                captured.push(m.name.clone());
            }
        }
        for ((at, version), items) in work {
            let m = &monitors[*at];
            if m.reference_version == 0 {
                continue;
            }
            let spec = m
                .spec
                .prediction_log
                .as_ref()
                .expect("followed monitors have a source");
            let reference = &loaded[at].reference;
            let mut window = self.store.open_window(&mut tx, &m.name, version).await?;
            let mut logged = Vec::new();
            for item in items {
                if !fresh(item) {
                    duplicate += 1;
                    continue;
                }
                applied += 1;
                let index: Vec<Option<usize>> = {
                    let names: HashMap<&str, usize> = item
                        .rows
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, (n, _))| (n.as_str(), i))
                        .collect();
                    reference
                        .profile
                        .iter()
                        .map(|c| names.get(c.name.as_str()).copied())
                        .collect()
                };
                let time_window = spec.time_window(item.time_ms);
                let kept = m.spec.performance.as_ref().map(|p| {
                    let column = |name: &str| {
                        item.rows
                            .columns
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v)
                    };
                    (column(&p.prediction_column), column(&p.score_column))
                });
                for r in 0..item.rows.rows {
                    if let Some(w) = window.as_mut() {
                        let full = spec.window_rows > 0 && w.state.rows >= spec.window_rows as u64;
                        let later = time_window.is_some_and(|(start, _)| start > w.window_start);
                        if full || later || w.reference_version != m.reference_version {
                            w.closed = true;
                            self.store.put_window(&mut tx, w).await?;
                            window = None;
                        }
                    }
                    let w = window.get_or_insert_with(|| {
                        let (start, end, expires) = match time_window {
                            Some((s, e)) => (s, e, e + spec.window_seconds * 1000),
                            None => (item.time_ms, i64::MAX, i64::MAX),
                        };
                        StoredWindow {
                            id: uuid::Uuid::new_v4().to_string(),
                            monitor: m.name.clone(),
                            model_version: version.clone(),
                            reference_version: m.reference_version,
                            window_start: start,
                            window_end: end,
                            expires_at: expires,
                            closed: false,
                            state: WindowState::new(&reference.profile),
                            revision: 0,
                        }
                    });
                    w.state.add_row(&item.rows, &index, r, item.time_ms);
                    if let Some((Some(prediction), score)) = kept {
                        let prediction = match prediction {
                            Values::Numbers(v) | Values::Integers(v) => {
                                crate::table::number_text(v[r])
                            }
                            Values::Texts(v) => v[r].clone(),
                        };
                        let score = match score {
                            Some(Values::Numbers(v) | Values::Integers(v)) if v[r].is_finite() => {
                                Some(v[r])
                            }
                            _ => None,
                        };
                        if let Some(prediction) = prediction {
                            logged.push(LoggedPrediction {
                                request_id: item.request_id.clone(),
                                row: r as i64,
                                model_version: version.clone(),
                                window_id: w.id.clone(),
                                prediction,
                                score,
                            });
                        }
                    }
                }
            }
            if !logged.is_empty() {
                self.store
                    .insert_predictions(&mut tx, &m.name, &logged)
                    .await?;
            }
            if let Some(mut w) = window {
                // a window that is full closes now, not at the next prediction
                w.closed = spec.window_rows > 0 && w.state.rows >= spec.window_rows as u64;
                self.store.put_window(&mut tx, &w).await?;
                let rows = if w.closed { 0 } else { w.state.rows };
                open.push((m.name.clone(), version.clone(), rows));
            }
        }
        for (&p, &n) in next {
            if n > applied_up_to.get(&p).copied().unwrap_or(0) {
                self.store
                    .set_log_offset(&mut tx, &self.group, topics::PREDICTIONS, p, n)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Applied {
            applied,
            duplicate,
            open,
            captured,
        })
    }

    /// Tests and reports every closed window (a replica that loses the race skips it).
    pub async fn report_closed(&self) {
        let windows = match self.store.closed_windows(64).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "reading closed windows failed");
                return;
            }
        };
        for w in windows {
            if let Err(e) = self.report(w).await {
                tracing::warn!(error = %e, "reporting a prediction-log window failed; retrying later");
            }
        }
    }

    async fn report(&self, w: StoredWindow) -> Result<()> {
        let started = std::time::Instant::now();
        let m = match self.store.monitor(&w.monitor).await {
            Ok(m) => m,
            Err(MonitoringError::NotFound(_)) => return self.store.drop_window(&w.id).await,
            Err(e) => return Err(e),
        };
        let loaded = match self
            .references
            .get(&self.store, &w.monitor, w.reference_version)
            .await
        {
            Ok(l) => l,
            Err(MonitoringError::NotFound(_)) => return self.store.drop_window(&w.id).await,
            Err(e) => return Err(e),
        };
        let options = m.spec.options.clone();
        let state = w.state.clone();
        let l = loaded.clone();
        let drift = tokio::task::spawn_blocking(move || {
            window_drift(&l.reference.profile, &l.samples, &state.columns, &options)
        })
        .await
        .map_err(|e| MonitoringError::Internal(format!("testing a window: {e}")))??;
        let report = Report {
            id: uuid::Uuid::new_v4().to_string(),
            monitor: w.monitor.clone(),
            reference_version: w.reference_version,
            model_version: w.model_version.clone(),
            rows: w.state.rows as i64,
            drift,
            event_published: false,
            created_at_ms: now_millis(),
            source: WindowSource::PredictionLog {
                start_ms: w.state.first_ms,
                end_ms: w.state.last_ms,
            },
        };
        let model = m.model.clone();
        let Some(saved) = self
            .store
            .finish_window(&w.id, report, |r| crate::service::drift_event(&model, r))
            .await?
        else {
            return Ok(());
        };
        if let Err(e) = self.tracker.closed(&m, &loaded.reference, &w).await {
            tracing::warn!(monitor = %m.name, window = %w.id, error = %e, "the window's performance could not be stored");
        }
        self.metrics.report(
            &m.name,
            &m.model,
            &saved.model_version,
            saved.rows,
            &saved.drift,
        );
        let _ = self
            .metrics
            .open_window_rows
            .remove_label_values(&[&m.name, &saved.model_version]);
        if saved.event_published {
            self.metrics
                .drift_events
                .with_label_values(&[&m.name])
                .inc();
        }
        self.metrics
            .report_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The drift of a window's column sketches against the reference's columns (its profile
/// and samples, in the same order), with their charts.
pub fn window_drift(
    profile: &[ColumnProfile],
    samples: &[drift::Sample],
    columns: &[sketch::ColumnSketch],
    options: &drift::DriftOptions,
) -> Result<DatasetDrift> {
    let mut tested = Vec::with_capacity(columns.len());
    for ((c, r), s) in profile.iter().zip(samples).zip(columns) {
        let d = sketch::sketch_drift(
            &c.name,
            c.column_type,
            r,
            s,
            options.method_for(&c.name, c.column_type),
            options.threshold_for(&c.name, c.column_type),
        )
        .map_err(|e| MonitoringError::Internal(format!("testing column {:?}: {e}", c.name)))?;
        tested.push((c.name.clone(), d, sketch_histogram(r, s)));
    }
    Ok(crate::report::finish(tested, options))
}

/// The chart of a reference column against a window's sketch of it.
pub fn sketch_histogram(
    reference: &drift::Sample,
    current: &sketch::ColumnSketch,
) -> Option<Histogram> {
    match current {
        sketch::ColumnSketch::Numerical(n) if !n.is_exact() => {
            let (values, weights) = n.weighted();
            histogram::numerical(
                &Side::of(reference)?,
                &Side {
                    values: &values,
                    weights: Some(&weights),
                },
            )
        }
        other => histogram::histogram(reference, &other.to_sample()?),
    }
}
