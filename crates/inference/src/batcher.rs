//! Dynamic batching with Triton's semantics: requests queue per loaded version, and one task
//! per version collects them into batches (up to `max_batch_size` rows, waiting at most
//! `max_queue_delay_us` from the oldest, run at once on a `preferred_batch_size`), runs each
//! batch once and cuts the outputs back into each request's rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_model::{Model, Tensor};
use tokio::sync::{mpsc, oneshot};

use crate::error::{InferenceError, Result};
use crate::metrics::ModelSeries;
use crate::models::{executed, run, timed_out, Stats};
use crate::settings::Settings;

/// What one computation took.
pub(crate) struct Ran {
    pub(crate) outputs: Vec<Tensor>,
    pub(crate) queued: Duration,
}

pub(crate) struct Job {
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) rows: usize,
    pub(crate) arrived: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) reply: oneshot::Sender<Result<Ran>>,
}

/// Collects jobs into batches and runs them, one batch at a time, until the queue closes
/// (the model was unloaded or replaced and its last request has been answered).
pub(crate) async fn batcher(loaded: Arc<BatchTarget>, mut jobs: mpsc::Receiver<Job>) {
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
pub(crate) struct BatchTarget {
    pub(crate) name: String,
    pub(crate) model: Arc<Model>,
    pub(crate) settings: Settings,
    pub(crate) stats: Arc<Stats>,
    pub(crate) series: ModelSeries,
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
