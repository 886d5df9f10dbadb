//! CPU priorities of the work that must not slow requests: shadows ([`crate::shadows`], nice
//! 19) and loading a version ([`off_peak`], nice 10).

use crate::error::{InferenceError, Result};

/// The nice value of a thread loading and warming up a version: below the requests', so a
/// swap takes the CPU they leave, yet not the lowest (shadows'), so a load on busy cores
/// still ends.
pub const LOAD_NICE: i32 = 10;

/// Lowers the calling thread to `nice` (on Linux a thread's nice value is its own); what
/// runs there is named in the warning when it cannot.
pub(crate) fn lower_priority(nice: i32, what: &str) {
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %err, "{what} run at the callers' priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (nice, what);
}

/// Runs `load` on a thread of its own at [`LOAD_NICE`]. Loading a version (parsing and
/// optimizing its graph) and warming it up take tens of milliseconds of CPU; on the
/// runtime's blocking threads, at the requests' priority, they took it from requests being
/// served, and a swap showed in their p99. The warm-up keeps its fastest round, so being
/// preempted does not change what it measures.
pub(crate) async fn off_peak<T, F>(load: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mlops-model-load".into())
        .spawn(move || {
            lower_priority(LOAD_NICE, "model loads");
            let _ = tx.send(load());
        })
        .map_err(|e| InferenceError::Internal(format!("no thread to load on: {e}")))?;
    rx.await
        .map_err(|_| InferenceError::Internal("loading panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_load_runs_below_the_callers_priority_and_a_panic_is_an_error() {
        let here = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let caller = here();
        assert_eq!(off_peak(here).await.unwrap(), LOAD_NICE.max(caller));
        assert_eq!(here(), caller, "the caller's thread keeps its priority");
        let err = off_peak(|| -> i32 { panic!("a load that panics") })
            .await
            .unwrap_err();
        assert!(matches!(err, InferenceError::Internal(m) if m.contains("panicked")));
    }
}
