//! Where shadows run: a thread of their own at the lowest CPU priority (nice 19), with a
//! runtime of its own. A copy of a request sent to a shadow then takes only the CPU that
//! callers leave: when the cores are busy the kernel runs the callers' requests first, so
//! a shadow's work cannot slow them through the CPU either. At most a bounded number of
//! copies wait or run at once; beyond that a copy is dropped and counted
//! (`mlops_inference_shadow_dropped_total`), so a shadow that cannot keep up sheds copies
//! instead of holding memory. One lane serves every model of the process.
//!
//! Copies are handed over in batches, as the prediction log publishes: the lane takes
//! what its queue holds every [`LINGER`] while copies keep coming, and waits on the queue
//! only once it is empty. A caller's hand-over is then a push onto the queue and wakes no
//! thread (waking one on the other core is a system call and an interrupt on the caller's
//! path); only the first copy after a quiet spell wakes the lane.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::mpsc;

/// Most copies waiting or running on the process's lane.
pub const MAX_IN_FLIGHT: usize = 1024;

/// The nice value of the lane's thread: the lowest priority.
const NICE: i32 = 19;

/// How long the lane lets copies gather before it takes them, while they keep coming.
pub const LINGER: Duration = Duration::from_millis(5);

/// A copy of a request, as the lane runs it.
type Mirrored = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A thread at the lowest priority running shadows, with a bound on those in flight.
pub struct Lane {
    queue: mpsc::UnboundedSender<Mirrored>,
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
    dropped: IntCounter,
}

/// The process's lane, started at its first use; `None` when its thread could not start
/// (shadows then run on the caller's runtime, as tasks of their own).
fn lane() -> Option<&'static Lane> {
    static LANE: OnceLock<Option<Lane>> = OnceLock::new();
    LANE.get_or_init(|| match Lane::start(MAX_IN_FLIGHT) {
        Ok(lane) => Some(lane),
        Err(err) => {
            tracing::warn!(error = %err, "no thread for shadows; they share the callers' threads");
            None
        }
    })
    .as_ref()
}

/// Runs `shadow` on the process's lane; `false` when the lane was full and it was dropped.
pub fn spawn<F>(shadow: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match lane() {
        Some(lane) => lane.spawn(shadow),
        None => {
            tokio::spawn(shadow);
            true
        }
    }
}

impl Lane {
    /// A lane of its own thread holding at most `capacity` copies.
    pub fn start(capacity: usize) -> std::io::Result<Lane> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, copies) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("mlops-shadows".into())
            .spawn(move || {
                crate::priority::lower_priority(NICE, "shadows");
                // For the life of the process: the queue's sender is never dropped.
                runtime.block_on(take(copies));
            })?;
        Ok(Lane {
            queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
            dropped: mlops_runtime::metrics::int_counter(
                "mlops_inference_shadow_dropped_total",
                "copies of requests not sent to a shadow: as many were already waiting or running as the shadows' thread holds",
            ),
        })
    }

    /// Runs `shadow` here; `false` (and counted) when `capacity` are already in flight.
    pub fn spawn<F>(&self, shadow: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.dropped.inc();
            return false;
        }
        let done = Done(self.in_flight.clone());
        let sent = self.queue.send(Box::pin(async move {
            let _done = done;
            shadow.await;
        }));
        // Only if the lane's thread is gone (its runtime panicked): the copy, dropped
        // unsent, has counted itself out of those in flight.
        if sent.is_err() {
            self.dropped.inc();
            return false;
        }
        true
    }
}

/// The lane's loop: waits for a first copy, then takes every copy queued each [`LINGER`]
/// until one goes by with none. Not waiting on the queue in between: a receiver waiting is
/// woken by every send, on the sender's thread.
async fn take(mut copies: mpsc::UnboundedReceiver<Mirrored>) {
    while let Some(first) = copies.recv().await {
        tokio::spawn(first);
        loop {
            tokio::time::sleep(LINGER).await;
            let mut took = false;
            while let Ok(copy) = copies.try_recv() {
                tokio::spawn(copy);
                took = true;
            }
            if !took {
                break;
            }
        }
    }
}

/// Counts a copy out of the lane however it ends (a panic included).
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_lane_drops_copies_and_takes_them_again_once_one_ends() {
        let lane = Lane::start(2).unwrap();
        let before = lane.dropped.get();
        let (release, released) = tokio::sync::watch::channel(false);
        let (ran, mut runs) = tokio::sync::mpsc::unbounded_channel();
        let copy = |n: u32| {
            let (mut released, ran) = (released.clone(), ran.clone());
            async move {
                released.wait_for(|r| *r).await.unwrap();
                ran.send(n).unwrap();
            }
        };
        assert!(lane.spawn(copy(1)) && lane.spawn(copy(2)));
        assert!(!lane.spawn(copy(3)), "two in flight: the third is dropped");
        assert_eq!(lane.dropped.get() - before, 1);
        release.send(true).unwrap();
        let mut got = vec![runs.recv().await.unwrap(), runs.recv().await.unwrap()];
        got.sort();
        assert_eq!(got, [1, 2]);
        // Both ended: room again (the count falls as each task is dropped, just after).
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while lane.in_flight.load(Ordering::Acquire) > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert!(lane.spawn(copy(4)));
        assert_eq!(runs.recv().await.unwrap(), 4);
    }

    #[tokio::test]
    async fn copies_in_bursts_and_after_quiet_spells_all_run() {
        let lane = Lane::start(MAX_IN_FLIGHT).unwrap();
        let (ran, mut runs) = tokio::sync::mpsc::unbounded_channel();
        for round in 0..3u32 {
            // A burst taken while the lane lingers, then a single copy after a spell long
            // enough for the lane to go back to waiting on its queue: it must wake for it.
            for n in 0..50 {
                let ran = ran.clone();
                assert!(lane.spawn(async move { ran.send((round, n)).unwrap() }));
            }
            let mut got = vec![];
            while got.len() < 50 {
                let copy = tokio::time::timeout(std::time::Duration::from_secs(5), runs.recv())
                    .await
                    .expect("every copy of a burst runs")
                    .unwrap();
                got.push(copy);
            }
            got.sort();
            assert_eq!(got, (0..50).map(|n| (round, n)).collect::<Vec<_>>());
            tokio::time::sleep(LINGER * 4).await;
            let ran = ran.clone();
            assert!(lane.spawn(async move { ran.send((round, 99)).unwrap() }));
            let after_quiet = tokio::time::timeout(std::time::Duration::from_secs(5), runs.recv())
                .await
                .expect("a copy after a quiet spell wakes the lane");
            assert_eq!(after_quiet, Some((round, 99)));
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn copies_run_at_the_lowest_priority_and_callers_keep_theirs() {
        let lane = Lane::start(1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(lane.spawn(async move {
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            tx.send(nice.unwrap()).unwrap();
        }));
        assert_eq!(rx.await.unwrap(), NICE);
        let here = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_ne!(here, NICE, "the caller's thread is not lowered");
    }
}
