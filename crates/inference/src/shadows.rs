//! Where shadows run: a thread of their own at the lowest CPU priority (nice 19), with a
//! runtime of its own. A copy of a request sent to a shadow then takes only the CPU that
//! callers leave: when the cores are busy the kernel runs the callers' requests first, so
//! a shadow's work cannot slow them through the CPU either. At most a bounded number of
//! copies wait or run at once; beyond that a copy is dropped and counted
//! (`mlops_inference_shadow_dropped_total`), so a shadow that cannot keep up sheds copies
//! instead of holding memory. One lane serves every model of the process.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus::IntCounter;

/// Most copies waiting or running on the process's lane.
pub const MAX_IN_FLIGHT: usize = 1024;

/// The nice value of the lane's thread: the lowest priority.
const NICE: i32 = 19;

/// A thread at the lowest priority running shadows, with a bound on those in flight.
pub struct Lane {
    handle: tokio::runtime::Handle,
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
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("mlops-shadows".into())
            .spawn(move || {
                crate::priority::lower_priority(NICE, "shadows");
                // Its tasks run while this waits, for the life of the process.
                runtime.block_on(std::future::pending::<()>());
            })?;
        Ok(Lane {
            handle,
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
        self.handle.spawn(async move {
            let _done = done;
            shadow.await;
        });
        true
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
