//! A model version loaded and serving: its inputs checked against its signature, requests
//! run on it one by one or through its dynamic batcher ([`crate::batcher`]), its statistics.
//! [`crate::manager`] decides which versions are loaded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlops_model::{DataType, IoSpec, Model, Tensor, TensorData};
use tokio::sync::{mpsc, oneshot};

use crate::batcher::{batcher, BatchTarget, Job, Ran};
use crate::error::{invalid, InferenceError, Result};
use crate::metrics::{Metrics, ModelSeries, VariantSeries};
use crate::prediction_log::{Prediction, PredictionLog};
use crate::repository::Selector;
use crate::settings::Settings;
use crate::shadows;
use crate::tensors::{datatype_name, element_size};
use crate::traffic::{self, Fault};
use crate::window::Window;

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
    /// What its deployment follows (the alias, the pinned version, or the default).
    pub target: Selector,
    /// The traffic variant it serves: "stable", a variant's name, or "shadow".
    pub variant: String,
    /// Its requests since the analysis last looked.
    pub window: Arc<Window>,
    /// Whether every input and output has a free first dimension (the batch).
    pub batchable: bool,
    /// Its statistics.
    pub stats: Arc<Stats>,
    series: ModelSeries,
    queue: Option<mpsc::Sender<Job>>,
    max_tensor_bytes: u64,
    log: PredictionLog,
    /// The share of its predictions logged ([`PredictionLog::share`]).
    log_share: f64,
    variant_series: VariantSeries,
    /// Requests of at most this many rows run on the request's own task: their computation
    /// is shorter than handing it to a blocking thread and back ([`INLINE_BUDGET`]).
    inline_rows: usize,
}

/// The longest computation run on the request's task instead of a blocking thread: a few
/// tens of microseconds, less than the wake-ups a hand-off costs, and short enough not to
/// hold up the other requests the runtime's workers serve.
const INLINE_BUDGET: Duration = Duration::from_micros(50);

/// How many rows fit [`INLINE_BUDGET`] when one row took `one_row` (0: none).
fn inline_rows(one_row: Duration) -> usize {
    if one_row.is_zero() || one_row >= INLINE_BUDGET {
        return 0;
    }
    ((INLINE_BUDGET.as_nanos() / one_row.as_nanos()) as usize).min(64)
}

/// How one request reaches a loaded version.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Its id, for the prediction log.
    pub request_id: &'a str,
    /// Faults to inject (a rehearsal of a rollout).
    pub fault: Fault,
}

impl Loaded {
    /// `model`, version `version` of registered model `model_id` (named `name`), ready to
    /// serve with `settings`: with dynamic batching on (and a batch dimension), its batcher
    /// task runs until the last holder of the returned value drops it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: &str,
        model_id: String,
        version: i64,
        model: Arc<Model>,
        settings: Settings,
        target: Selector,
        variant: &str,
        metrics: &Metrics,
        max_tensor_bytes: u64,
        log: PredictionLog,
        one_row: Duration,
    ) -> Loaded {
        let series = metrics.series(name, version);
        let variant_series = metrics.variant(name, variant);
        let batchable = model
            .inputs()
            .iter()
            .chain(model.outputs())
            .all(|s| matches!(s.shape.first(), Some(None)));
        let stats = Arc::new(Stats::default());
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
        let log_share = log.share(settings.prediction_log_sample);
        Loaded {
            name: name.to_owned(),
            model_id,
            version,
            model,
            settings,
            target,
            variant: variant.to_owned(),
            window: Arc::default(),
            batchable,
            stats,
            series,
            queue,
            max_tensor_bytes,
            log_share,
            log,
            variant_series,
            inline_rows: inline_rows(one_row),
        }
    }

    /// The id a request is known by: `given`, else (when predictions are logged, so that
    /// labels can join on it later) a new one, returned in the response.
    pub fn request_id(&self, given: &str) -> String {
        if given.is_empty() && self.log_share > 0.0 {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            given.to_owned()
        }
    }

    /// Runs `rounds` requests of one row (zeros, empty strings) straight on the model, off
    /// the request path, so the first real request does not pay for cold caches and a model
    /// that cannot run fails here. Values a model refuses (an encoder that knows no empty
    /// string) are not a failure: the model ran its checks; anything else is. Returns the
    /// fastest round (`Duration::MAX` when the model refused the values).
    pub(crate) fn warm_up(model: &Model, rounds: usize) -> Result<Duration> {
        let inputs = model
            .inputs()
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec.shape.iter().map(|d| d.unwrap_or(1)).collect();
                let n = shape.iter().product();
                let data = match spec.dtype {
                    DataType::Bool => TensorData::Bool(vec![false; n]),
                    DataType::U8 => TensorData::U8(vec![0; n]),
                    DataType::U16 => TensorData::U16(vec![0; n]),
                    DataType::U32 => TensorData::U32(vec![0; n]),
                    DataType::U64 => TensorData::U64(vec![0; n]),
                    DataType::I8 => TensorData::I8(vec![0; n]),
                    DataType::I16 => TensorData::I16(vec![0; n]),
                    DataType::I32 => TensorData::I32(vec![0; n]),
                    DataType::I64 => TensorData::I64(vec![0; n]),
                    DataType::F32 => TensorData::F32(vec![0.0; n]),
                    DataType::F64 => TensorData::F64(vec![0.0; n]),
                    DataType::String => TensorData::String(vec![Vec::new(); n]),
                };
                Tensor::new(shape, data)
                    .ok_or_else(|| InferenceError::Internal("a warm-up tensor does not fit".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut fastest = Duration::MAX;
        for _ in 0..rounds {
            let started = Instant::now();
            match model.run(&inputs) {
                Ok(_) => fastest = fastest.min(started.elapsed()),
                Err(mlops_model::RunError::InvalidInput(_)) => {}
                Err(mlops_model::RunError::Failed(m)) => {
                    return Err(InferenceError::FailedPrecondition(format!(
                        "the model failed its warm-up request: {m}"
                    )))
                }
            }
        }
        Ok(fastest)
    }

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
        call: &Call<'_>,
        rows: usize,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Tensor>> {
        let arrived = Instant::now();
        let request_id = call.request_id;
        let prediction = Prediction {
            request_id,
            deployment: &self.name,
            model_id: &self.model_id,
            version: self.version,
            variant: &self.variant,
        };
        // Encoded before the request runs (its tensors move into it), only when logged.
        let logged = PredictionLog::sampled(self.log_share)
            .then(|| self.log.begin(&prediction, &inputs, self.model.inputs()));
        let timeout = timeout.or_else(|| {
            (self.settings.default_timeout_us > 0)
                .then(|| Duration::from_micros(self.settings.default_timeout_us))
        });
        self.series.pending.inc();
        let ran = match self.injected(call.fault).await {
            Some(e) => Err(e),
            None => match &self.queue {
                Some(queue) => self.batched(queue, rows, inputs, arrived, timeout).await,
                None => self.direct(rows, inputs, arrived, timeout).await,
            },
        };
        self.series.pending.dec();
        let elapsed = arrived.elapsed();
        let own_failure =
            matches!(&ran, Err(e) if !matches!(e, InferenceError::InvalidArgument(_)));
        self.window.record(!own_failure, elapsed);
        self.variant_series.observe(ran.is_ok(), elapsed);
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
                if let Some(pending) = logged {
                    self.log.record(
                        &prediction,
                        pending,
                        &ran.outputs,
                        self.model.outputs(),
                        elapsed,
                    );
                }
                Ok(ran.outputs)
            }
            Err(e) => {
                add(&self.stats.fail, elapsed);
                self.series.failed(e.reason());
                Err(e)
            }
        }
    }

    /// [`Loaded::infer`], then, when there is a `shadow`, the same request on it
    /// ([`Loaded::mirror`]): its copy is taken before (the inputs move into this run) and sent
    /// once this one has answered, so a shadow never runs ahead of the request it copies.
    pub async fn infer_shadowed(
        &self,
        call: &Call<'_>,
        rows: usize,
        inputs: Vec<Tensor>,
        timeout: Option<Duration>,
        shadow: Option<(Arc<Loaded>, Fault)>,
    ) -> Result<Vec<Tensor>> {
        let mirrored = shadow.map(|(shadow, fault)| (shadow, fault, self.named(&inputs)));
        let outputs = self.infer(call, rows, inputs, timeout).await;
        if let Some((shadow, fault, named)) = mirrored {
            shadow.mirror(call.request_id.to_owned(), fault, named);
        }
        outputs
    }

    /// `inputs` (in this model's order) with their names, for another version's
    /// [`Loaded::arrange`].
    pub fn named(&self, inputs: &[Tensor]) -> Vec<(String, Tensor)> {
        self.model
            .inputs()
            .iter()
            .zip(inputs)
            .map(|(s, t)| (s.name.clone(), t.clone()))
            .collect()
    }

    /// Runs a copy of a request on this version (a shadow) in the background, on the
    /// shadows' own low-priority thread ([`shadows`]): its answer goes to the prediction log
    /// and its statistics, never to the caller, and its slowness or failure cannot reach the
    /// caller's request. When that thread already holds as many copies as it takes, this one
    /// is dropped and counted.
    fn mirror(self: Arc<Self>, request_id: String, fault: Fault, named: Vec<(String, Tensor)>) {
        shadows::spawn(async move {
            let (rows, inputs) = match self.arrange(named) {
                Ok(r) => r,
                Err(e) => {
                    self.rejected(&e);
                    return;
                }
            };
            let call = Call {
                request_id: &request_id,
                fault,
            };
            if let Err(e) = self.infer(&call, rows, inputs, None).await {
                tracing::debug!(model = %self.name, version = self.version, error = %e, "the shadow failed");
            }
        });
    }

    /// Applies `fault`: its delay, then an error at its rate.
    async fn injected(&self, fault: Fault) -> Option<InferenceError> {
        if fault.delay_us > 0 {
            tokio::time::sleep(Duration::from_micros(fault.delay_us)).await;
        }
        (fault.error_rate > 0.0 && traffic::draw() < fault.error_rate).then(|| {
            InferenceError::Unavailable(format!(
                "injected fault: variant {:?} of model {:?} answers {:.1}% of its requests with an error",
                self.variant,
                self.name,
                fault.error_rate * 100.0
            ))
        })
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
        let deadline = timeout.map(|t| arrived + t);
        if rows <= self.inline_rows {
            let started = Instant::now();
            if deadline.is_some_and(|d| started > d) {
                return Err(timed_out());
            }
            let outputs = run(&self.model, &inputs)?;
            let computed = started.elapsed();
            executed(&self.stats, &self.series, rows, computed);
            return Ok(Ran {
                outputs,
                queued: started - arrived,
            });
        }
        let model = self.model.clone();
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
pub(crate) fn executed(stats: &Stats, series: &ModelSeries, rows: usize, computed: Duration) {
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

pub(crate) fn timed_out() -> InferenceError {
    InferenceError::Timeout("the request timed out before the model ran it".into())
}

pub(crate) fn run(model: &Model, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fast_models_run_inline_and_only_small_requests() {
        assert_eq!(inline_rows(Duration::from_micros(2)), 25);
        assert_eq!(
            inline_rows(Duration::from_nanos(100)),
            64,
            "at most 64 rows"
        );
        assert_eq!(
            inline_rows(Duration::from_micros(60)),
            0,
            "slower than the budget"
        );
        assert_eq!(
            inline_rows(Duration::MAX),
            0,
            "a warm-up that measured nothing"
        );
    }
}
