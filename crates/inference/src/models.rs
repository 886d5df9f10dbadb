//! The models served here: loading from the repository, their states, and running requests on
//! them, one by one or in dynamic batches.
//!
//! A model name has one slot: loading, ready (one version), failed (with the reason) or
//! unloaded. A reload of a ready model keeps the old version serving until the new one is
//! loaded, then swaps; requests already holding the old version finish on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mlops_model::{IoSpec, Model, Tensor};
use tokio::sync::{mpsc, oneshot};

use crate::error::{invalid, InferenceError, Result};
use crate::metrics::{Metrics, ModelSeries};
use crate::repository::{Repository, Resolved, Selector};
use crate::settings::Settings;
use crate::store::{Store, Stored};
use crate::tensors::{datatype_name, element_size};

/// Cumulative statistics of one loaded version, as `ModelStatistics` reports them.
#[derive(Default)]
pub struct Stats {
    /// Requests answered and their summed duration (ns).
    pub success: (AtomicU64, AtomicU64),
    /// Requests failed and their summed duration (ns).
    pub fail: (AtomicU64, AtomicU64),
    /// Requests queued and their summed wait (ns).
    pub queue: (AtomicU64, AtomicU64),
    /// Computations and their summed duration (ns).
    pub compute: (AtomicU64, AtomicU64),
    /// Rows inferred.
    pub inference_count: AtomicU64,
    /// Model executions.
    pub execution_count: AtomicU64,
    /// Milliseconds since the epoch of the last answered request.
    pub last_inference_ms: AtomicU64,
    /// Per batch size: executions and their summed compute (ns).
    pub batches: Mutex<BTreeMap<u64, (u64, u64)>>,
}

fn add(pair: &(AtomicU64, AtomicU64), d: Duration) {
    pair.0.fetch_add(1, Ordering::Relaxed);
    pair.1.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

/// What one computation took.
struct Ran {
    outputs: Vec<Tensor>,
    queued: Duration,
}

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    arrived: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Ran>>,
}

/// A model version loaded and serving.
pub struct Loaded {
    /// The registered model's name.
    pub name: String,
    /// Its stable id.
    pub model_id: String,
    /// The version served.
    pub version: i64,
    /// The runnable model.
    pub model: Arc<Model>,
    /// How it is served.
    pub settings: Settings,
    /// Whether every input and output has a free first dimension (the batch).
    pub batchable: bool,
    /// Its statistics.
    pub stats: Arc<Stats>,
    series: ModelSeries,
    queue: Option<mpsc::Sender<Job>>,
    max_tensor_bytes: u64,
}

impl Loaded {
    /// The row count and the inputs in the model's order, checked against its signature and
    /// limits: every input once, known names, datatypes, ranks, fixed dimensions, one row
    /// count, at most `max_batch_size` rows.
    pub fn arrange(&self, mut given: Vec<(String, Tensor)>) -> Result<(usize, Vec<Tensor>)> {
        let specs = self.model.inputs();
        if let Some((name, _)) = given
            .iter()
            .find(|(n, _)| !specs.iter().any(|s| &s.name == n))
        {
            return Err(invalid(format!(
                "unexpected input {name:?}: model {:?} takes {}",
                self.name,
                describe(specs)
            )));
        }
        let mut out = Vec::with_capacity(specs.len());
        let mut rows = None;
        for spec in specs {
            let at = given
                .iter()
                .position(|(n, _)| n == &spec.name)
                .ok_or_else(|| {
                    invalid(format!(
                        "missing input {:?}: model {:?} takes {}",
                        spec.name,
                        self.name,
                        describe(specs)
                    ))
                })?;
            let (_, t) = given.swap_remove(at);
            if given.iter().any(|(n, _)| n == &spec.name) {
                return Err(invalid(format!("input {:?} is given twice", spec.name)));
            }
            check_tensor(spec, &t)?;
            if self.batchable {
                let r = t.shape[0];
                match rows {
                    None => rows = Some(r),
                    Some(prev) if prev != r => {
                        return Err(invalid(format!(
                            "inputs disagree on the batch size (first dimension): {prev} and {r} for {:?}",
                            spec.name
                        )))
                    }
                    _ => {}
                }
            }
            let bytes = match &t.data {
                mlops_model::TensorData::String(v) => v.iter().map(|s| s.len() as u64 + 4).sum(),
                d => d.len() as u64 * element_size(d.dtype()).unwrap_or(1) as u64,
            };
            self.check_size(&spec.name, bytes)?;
            out.push(t);
        }
        let rows = rows.unwrap_or(1);
        if self.batchable && rows as u64 > self.settings.max_batch_size as u64 {
            return Err(invalid(format!(
                "the batch holds {rows} rows; model {:?} takes at most {} per request (max_batch_size)",
                self.name, self.settings.max_batch_size
            )));
        }
        if self.batchable && rows == 0 {
            return Err(invalid("the batch holds no rows"));
        }
        Ok((rows, out))
    }

    /// Refuses an input whose datatype is not the model's (unknown names pass: [`Loaded::arrange`]
    /// reports them with the model's inputs).
    pub fn check_datatype(&self, name: &str, dtype: mlops_model::DataType) -> Result<()> {
        match self.model.inputs().iter().find(|s| s.name == name) {
            Some(spec) if spec.dtype != dtype => Err(invalid(format!(
                "input {name:?} has datatype {}; the model expects {}",
                datatype_name(dtype),
                datatype_name(spec.dtype)
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a tensor of `bytes` bytes over the size limit, before it is decoded.
    pub fn check_size(&self, name: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_tensor_bytes {
            return Err(invalid(format!(
                "input {name:?} is {bytes} bytes, over the limit of {} (--max-tensor-bytes)",
                self.max_tensor_bytes
            )));
        }
        Ok(())
    }

    /// Runs `inputs` (from [`Loaded::arrange`]), in a dynamic batch when the model has one,
    /// waiting at most `timeout` (else the model's default) before computation starts.
    pub async fn infer(
        &self,
        rows: usize,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Tensor>> {
        let arrived = Instant::now();
        let timeout = timeout.or_else(|| {
            (self.settings.default_timeout_us > 0)
                .then(|| Duration::from_micros(self.settings.default_timeout_us))
        });
        self.series.pending.inc();
        let ran = match &self.queue {
            Some(queue) => self.batched(queue, rows, inputs, arrived, timeout).await,
            None => self.direct(rows, inputs, arrived, timeout).await,
        };
        self.series.pending.dec();
        let elapsed = arrived.elapsed();
        match ran {
            Ok(ran) => {
                add(&self.stats.success, elapsed);
                add(&self.stats.queue, ran.queued);
                self.stats
                    .inference_count
                    .fetch_add(rows as u64, Ordering::Relaxed);
                self.stats
                    .last_inference_ms
                    .store(mlops_storage::now_millis() as u64, Ordering::Relaxed);
                self.series.success.inc();
                self.series.count.inc_by(rows as u64);
                self.series.request_us.inc_by(elapsed.as_micros() as u64);
                self.series.queue_us.inc_by(ran.queued.as_micros() as u64);
                self.series.latency.observe(elapsed.as_secs_f64());
                Ok(ran.outputs)
            }
            Err(e) => {
                add(&self.stats.fail, elapsed);
                self.series.failed(e.reason());
                Err(e)
            }
        }
    }

    /// Counts a request refused before it reached [`Loaded::infer`] (a bad input).
    pub fn rejected(&self, e: &InferenceError) {
        add(&self.stats.fail, Duration::ZERO);
        self.series.failed(e.reason());
    }

    async fn direct(
        &self,
        rows: usize,
        inputs: Vec<Tensor>,
        arrived: Instant,
        timeout: Option<Duration>,
    ) -> Result<Ran> {
        let model = self.model.clone();
        let deadline = timeout.map(|t| arrived + t);
        let ran = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            if deadline.is_some_and(|d| started > d) {
                return Err(timed_out());
            }
            let outputs = run(&model, &inputs)?;
            Ok((outputs, started - arrived, started.elapsed()))
        })
        .await
        .map_err(|e| {
            InferenceError::Internal(format!("the model's computation panicked: {e}"))
        })??;
        let (outputs, queued, computed) = ran;
        executed(&self.stats, &self.series, rows, computed);
        Ok(Ran { outputs, queued })
    }

    async fn batched(
        &self,
        queue: &mpsc::Sender<Job>,
        rows: usize,
        inputs: Vec<Tensor>,
        arrived: Instant,
        timeout: Option<Duration>,
    ) -> Result<Ran> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            arrived,
            deadline: timeout.map(|t| arrived + t),
            reply,
        };
        queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferenceError::Exhausted(format!(
                "the queue of model {:?} is full ({} requests waiting, max_queue_size); retry with backoff",
                self.name, self.settings.max_queue_size
            )),
            mpsc::error::TrySendError::Closed(_) => {
                InferenceError::Unavailable(format!("model {:?} was unloaded", self.name))
            }
        })?;
        answer.await.map_err(|_| {
            InferenceError::Unavailable(format!(
                "model {:?} was unloaded before the request ran",
                self.name
            ))
        })?
    }
}

/// Counts one execution of `rows` rows that took `computed`.
fn executed(stats: &Stats, series: &ModelSeries, rows: usize, computed: Duration) {
    stats.execution_count.fetch_add(1, Ordering::Relaxed);
    add(&stats.compute, computed);
    {
        let mut b = stats.batches.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.entry(rows as u64).or_default();
        e.0 += 1;
        e.1 += computed.as_nanos() as u64;
    }
    series.exec_count.inc();
    series.compute_us.inc_by(computed.as_micros() as u64);
    series.batch.observe(rows as f64);
}

fn timed_out() -> InferenceError {
    InferenceError::Timeout("the request timed out before the model ran it".into())
}

fn run(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    model.run(inputs).map_err(|e| match e {
        mlops_model::RunError::InvalidInput(m) => InferenceError::InvalidArgument(m),
        mlops_model::RunError::Failed(m) => InferenceError::Internal(m),
    })
}

/// `x: FP32 [-1, 30], y: INT64 [-1]`.
pub fn describe(specs: &[IoSpec]) -> String {
    specs
        .iter()
        .map(|s| {
            format!(
                "{:?}: {} {:?}",
                s.name,
                datatype_name(s.dtype),
                dims(&s.shape)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A declared shape with `-1` for a free dimension, as the protocol writes it.
pub fn dims(shape: &[Option<usize>]) -> Vec<i64> {
    shape
        .iter()
        .map(|d| d.map(|d| d as i64).unwrap_or(-1))
        .collect()
}

fn check_tensor(spec: &IoSpec, t: &Tensor) -> Result<()> {
    if t.dtype() != spec.dtype {
        return Err(invalid(format!(
            "input {:?} has datatype {}; the model expects {}",
            spec.name,
            datatype_name(t.dtype()),
            datatype_name(spec.dtype)
        )));
    }
    let fits = t.shape.len() == spec.shape.len()
        && t.shape
            .iter()
            .zip(&spec.shape)
            .all(|(&got, want)| want.is_none_or(|w| w == got));
    if !fits {
        return Err(invalid(format!(
            "input {:?} has shape {:?}; the model expects {:?} (-1: any size)",
            spec.name,
            t.shape,
            dims(&spec.shape)
        )));
    }
    Ok(())
}

/// Collects jobs into batches and runs them, one batch at a time, until the queue closes
/// (the model was unloaded or replaced and its last request has been answered).
async fn batcher(loaded: Arc<BatchTarget>, mut jobs: mpsc::Receiver<Job>) {
    let settings = &loaded.settings;
    let max = settings.max_batch_size as usize;
    let delay = Duration::from_micros(settings.max_queue_delay_us);
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match jobs.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let window = tokio::time::Instant::from_std(first.arrived + delay);
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < max
            && !settings
                .preferred_batch_size
                .iter()
                .any(|&p| p as usize == rows)
        {
            let next = match jobs.try_recv() {
                Ok(j) => Some(j),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(window, jobs.recv())
                        .await
                        .unwrap_or_default()
                }
            };
            let Some(job) = next else { break };
            if rows + job.rows > max {
                carry = Some(job);
                break;
            }
            rows += job.rows;
            batch.push(job);
        }
        let now = Instant::now();
        let (late, batch): (Vec<Job>, Vec<Job>) = batch
            .into_iter()
            .partition(|j| j.deadline.is_some_and(|d| now > d));
        for job in late {
            let _ = job.reply.send(Err(timed_out()));
        }
        if batch.is_empty() {
            continue;
        }
        let target = loaded.clone();
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let outcome = target.run_batch(&batch);
            (batch, outcome)
        })
        .await;
        let (batch, outcome) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(model = %loaded.name, error = %e, "a batch's computation panicked");
                continue;
            }
        };
        let computed = started.elapsed();
        match outcome {
            Ok(parts) => {
                let rows = batch.iter().map(|j| j.rows).sum();
                executed(&loaded.stats, &loaded.series, rows, computed);
                for (job, outputs) in batch.into_iter().zip(parts) {
                    let queued = started.saturating_duration_since(job.arrived);
                    let _ = job.reply.send(Ok(Ran { outputs, queued }));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(InferenceError::Internal(message.clone())));
                }
            }
        }
    }
}

/// What the batcher needs of a loaded model (it must not hold the [`Loaded`] itself, whose
/// queue sender it would keep open).
struct BatchTarget {
    name: String,
    model: Arc<Model>,
    settings: Settings,
    stats: Arc<Stats>,
    series: ModelSeries,
}

impl BatchTarget {
    /// Stacks the jobs' inputs, runs them once and cuts every output back into each job's rows.
    fn run_batch(&self, batch: &[Job]) -> Result<Vec<Vec<Tensor>>> {
        if batch.len() == 1 {
            return Ok(vec![run(&self.model, &batch[0].inputs)?]);
        }
        let inputs = (0..batch[0].inputs.len())
            .map(|i| {
                let parts: Vec<&Tensor> = batch.iter().map(|j| &j.inputs[i]).collect();
                Tensor::concat_rows(&parts)
                    .ok_or_else(|| InferenceError::Internal("inputs do not stack".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs = run(&self.model, &inputs)?;
        let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
        let mut per_job: Vec<Vec<Tensor>> = batch.iter().map(|_| Vec::new()).collect();
        for out in outputs {
            let parts = out.split_rows(&rows).ok_or_else(|| {
                InferenceError::Internal(format!(
                    "an output of {} rows does not split into the batch's {rows:?}",
                    out.rows()
                ))
            })?;
            for (job, part) in per_job.iter_mut().zip(parts) {
                job.push(part);
            }
        }
        Ok(per_job)
    }
}

/// The state of a model name here.
#[derive(Clone)]
pub enum Slot {
    /// Being loaded; the version if known.
    Loading,
    /// Serving.
    Ready(Arc<Loaded>),
    /// The last load failed; why.
    Failed(String),
    /// Unloaded by a request.
    Unloaded,
}

impl Slot {
    /// Triton's state name and reason.
    pub fn state(&self) -> (&'static str, String) {
        match self {
            Slot::Loading => ("LOADING", String::new()),
            Slot::Ready(_) => ("READY", String::new()),
            Slot::Failed(reason) => ("UNAVAILABLE", reason.clone()),
            Slot::Unloaded => ("UNAVAILABLE", "unloaded".into()),
        }
    }
}

/// Every model here.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    repository: Repository,
    store: Store,
    defaults: Settings,
    metrics: Metrics,
    max_tensor_bytes: u64,
    slots: RwLock<HashMap<String, Slot>>,
    /// One load at a time per name.
    loading: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Manager {
    /// A manager loading from `repository`, remembering in `store`.
    pub fn new(
        repository: Repository,
        store: Store,
        defaults: Settings,
        metrics: Metrics,
        max_tensor_bytes: u64,
    ) -> Self {
        Manager {
            inner: Arc::new(Inner {
                repository,
                store,
                defaults,
                metrics,
                max_tensor_bytes,
                slots: RwLock::new(HashMap::new()),
                loading: Default::default(),
            }),
        }
    }

    /// The service's default settings.
    pub fn defaults(&self) -> &Settings {
        &self.inner.defaults
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.inner.repository
    }

    /// The slot of `name`, if it was ever loaded here.
    pub fn slot(&self, name: &str) -> Option<Slot> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every slot, by name.
    pub fn slots(&self) -> BTreeMap<String, Slot> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn set(&self, name: &str, slot: Slot) -> Option<Slot> {
        let mut slots = self.inner.slots.write().unwrap_or_else(|p| p.into_inner());
        slots.insert(name.to_owned(), slot)
    }

    /// The ready model `name`, at `version` when given (0 or empty: the one served).
    pub fn ready(&self, name: &str, version: &str) -> Result<Arc<Loaded>> {
        let slot = self.slot(name);
        let loaded = match slot {
            Some(Slot::Ready(l)) => l,
            Some(other) => {
                let (state, reason) = other.state();
                return Err(InferenceError::Unavailable(format!(
                    "model {name:?} is not ready here: {state}{}",
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({reason})")
                    }
                )));
            }
            None => {
                return Err(InferenceError::NotFound(format!(
                    "model {name:?} is not loaded here; load it first (RepositoryModelLoad, or `mlops serve load {name}`)"
                )))
            }
        };
        if !version.is_empty() && version != loaded.version.to_string() {
            let _: i64 = version.parse().map_err(|_| {
                invalid(format!("model version {version:?} is not a version number"))
            })?;
            return Err(InferenceError::Unavailable(format!(
                "version {version} of model {name:?} is not loaded here; version {} is",
                loaded.version
            )));
        }
        Ok(loaded)
    }

    /// Loads (or reloads) `name` at the version `selector` names, with `settings`, and records
    /// it so a restart loads it again. The old version, if any, serves until the swap.
    pub async fn load(
        &self,
        name: &str,
        selector: Selector,
        settings: Settings,
    ) -> Result<Arc<Loaded>> {
        let lock = {
            let mut loading = self.inner.loading.lock().await;
            loading.entry(name.to_owned()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let previous = self.slot(name);
        if !matches!(previous, Some(Slot::Ready(_))) {
            self.set(name, Slot::Loading);
        }
        match self.load_version(name, &selector, settings.clone()).await {
            Ok(loaded) => {
                self.inner
                    .store
                    .put(&Stored {
                        name: name.to_owned(),
                        selector,
                        settings,
                        version: loaded.version,
                    })
                    .await?;
                let old = self.set(name, Slot::Ready(loaded.clone()));
                if !matches!(old, Some(Slot::Ready(_))) {
                    self.inner.metrics.loaded.inc();
                }
                tracing::info!(model = %name, version = loaded.version, "model loaded");
                Ok(loaded)
            }
            Err(e) => {
                self.inner.metrics.load_failed(name);
                tracing::warn!(model = %name, error = %e, "model load failed");
                match previous {
                    // The old version keeps serving.
                    Some(Slot::Ready(old)) => {
                        self.set(name, Slot::Ready(old));
                    }
                    // A model the registry does not know leaves no trace.
                    _ if matches!(e, InferenceError::NotFound(_)) => {
                        let mut slots = self.inner.slots.write().unwrap_or_else(|p| p.into_inner());
                        match previous {
                            Some(p) => slots.insert(name.to_owned(), p),
                            None => slots.remove(name),
                        };
                    }
                    _ => {
                        self.set(name, Slot::Failed(e.to_string()));
                    }
                }
                Err(e)
            }
        }
    }

    async fn load_version(
        &self,
        name: &str,
        selector: &Selector,
        settings: Settings,
    ) -> Result<Arc<Loaded>> {
        let resolved: Resolved = self.inner.repository.resolve(name, selector).await?;
        let bytes = tokio::fs::read(&resolved.path).await.map_err(|e| {
            InferenceError::Internal(format!("reading {}: {e}", resolved.path.display()))
        })?;
        let model = tokio::task::spawn_blocking(move || Model::load(&bytes))
            .await
            .map_err(|e| InferenceError::Internal(format!("loading panicked: {e}")))?
            .map_err(|e| {
                InferenceError::FailedPrecondition(format!(
                    "version {} of model {name:?} cannot be served: {e}",
                    resolved.version
                ))
            })?;
        let model = Arc::new(model);
        let batchable = model
            .inputs()
            .iter()
            .chain(model.outputs())
            .all(|s| matches!(s.shape.first(), Some(None)));
        let stats = Arc::new(Stats::default());
        let series = self.inner.metrics.series(name, resolved.version);
        let queue = (settings.dynamic_batching && batchable).then(|| {
            let (tx, rx) = mpsc::channel(settings.max_queue_size as usize);
            let target = Arc::new(BatchTarget {
                name: name.to_owned(),
                model: model.clone(),
                settings: settings.clone(),
                stats: stats.clone(),
                series: series.clone(),
            });
            tokio::spawn(batcher(target, rx));
            tx
        });
        Ok(Arc::new(Loaded {
            name: name.to_owned(),
            model_id: resolved.model_id,
            version: resolved.version,
            model,
            settings,
            batchable,
            stats,
            series,
            queue,
            max_tensor_bytes: self.inner.max_tensor_bytes,
        }))
    }

    /// Stops serving `name` and forgets it, so a restart does not load it again. Requests
    /// already running finish.
    pub async fn unload(&self, name: &str) -> Result<()> {
        let forgotten = self.inner.store.remove(name).await?;
        let old = {
            let mut slots = self.inner.slots.write().unwrap_or_else(|p| p.into_inner());
            match slots.get(name) {
                Some(_) => slots.insert(name.to_owned(), Slot::Unloaded),
                None => None,
            }
        };
        if matches!(old, Some(Slot::Ready(_))) {
            self.inner.metrics.loaded.dec();
        }
        if old.is_none() && !forgotten {
            return Err(InferenceError::NotFound(format!(
                "model {name:?} is not loaded here"
            )));
        }
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Loads every model recorded before a restart, retrying while the registry cannot be
    /// reached; a model that cannot be loaded for another reason is left failed, with why.
    pub async fn restore(
        &self,
        stop: mlops_runtime::shutdown::CancellationToken,
    ) -> anyhow::Result<()> {
        let stored = self.inner.store.all().await?;
        for s in stored {
            let mut wait = Duration::from_millis(200);
            loop {
                match self
                    .load(&s.name, s.selector.clone(), s.settings.clone())
                    .await
                {
                    Ok(_) => break,
                    Err(InferenceError::Unavailable(reason)) => {
                        tracing::warn!(model = %s.name, %reason, "cannot restore the model yet; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        tracing::error!(model = %s.name, error = %e, "cannot restore the model");
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stored settings of `name`, or the defaults.
    pub fn settings_of(&self, name: &str) -> Settings {
        if let Some(Slot::Ready(l)) = self.slot(name) {
            return l.settings.clone();
        }
        self.inner.defaults.clone()
    }
}
