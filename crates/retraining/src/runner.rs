//! Runs trainers: [`Trainers`] is the runner a service uses, local or Kubernetes. The
//! local runner starts the trainer's command as a child process of the service (for
//! `mlops up` and tests) with its environment, its output in a log file, and a time limit;
//! the Kubernetes runner ([`crate::kubernetes`]) makes a Job of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A trainer to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Its working directory (created).
    pub dir: PathBuf,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    pub timeout: Duration,
    /// The container image (a Kubernetes Job's; a local process ignores it).
    pub image: String,
}

/// How a trainer is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    /// Why, with the end of its log.
    Failed(String),
    /// This runner has no trainer of that retrain (the service restarted).
    Unknown,
}

struct Job {
    child: tokio::process::Child,
    started: Instant,
    timeout: Duration,
    log: PathBuf,
}

/// Trainers as local processes, by retrain id.
#[derive(Clone, Default)]
pub struct LocalRunner {
    jobs: Arc<Mutex<HashMap<String, Job>>>,
}

impl LocalRunner {
    /// Starts the trainer of retrain `id`; answers its process id.
    pub fn start(&self, id: &str, launch: &Launch) -> Result<u32, String> {
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("cannot create {}: {e}", launch.dir.display()))?;
        let log = std::fs::File::create(&launch.log)
            .map_err(|e| format!("cannot create {}: {e}", launch.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot open the trainer's log: {e}"))?;
        let mut cmd = tokio::process::Command::new(&launch.command[0]);
        cmd.args(&launch.command[1..])
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start the trainer `{}`: {e}",
                launch.command.join(" ")
            )
        })?;
        let pid = child.id().unwrap_or(0);
        self.jobs.lock().expect("jobs").insert(
            id.to_owned(),
            Job {
                child,
                started: Instant::now(),
                timeout: launch.timeout,
                log: launch.log.clone(),
            },
        );
        Ok(pid)
    }

    /// How the trainer of retrain `id` is doing; a finished one is forgotten.
    pub fn poll(&self, id: &str) -> Status {
        let mut jobs = self.jobs.lock().expect("jobs");
        let Some(job) = jobs.get_mut(id) else {
            return Status::Unknown;
        };
        let status = match job.child.try_wait() {
            Ok(None) if job.started.elapsed() > job.timeout => {
                let _ = job.child.start_kill();
                Status::Failed(format!(
                    "the trainer ran longer than its timeout ({} s) and was killed{}",
                    job.timeout.as_secs(),
                    tail(&job.log)
                ))
            }
            Ok(None) => return Status::Running,
            Ok(Some(s)) if s.success() => Status::Succeeded,
            Ok(Some(s)) => Status::Failed(format!("the trainer exited with {s}{}", tail(&job.log))),
            Err(e) => Status::Failed(format!("the trainer cannot be waited for: {e}")),
        };
        jobs.remove(id);
        status
    }

    /// Stops the trainer of retrain `id`, if this runner has one.
    pub fn stop(&self, id: &str) {
        if let Some(mut job) = self.jobs.lock().expect("jobs").remove(id) {
            let _ = job.child.start_kill();
        }
    }
}

/// Stops a trainer left by an earlier process of the service (it was killed): the
/// process `pid`, if it still runs the same program.
pub fn stop_orphan(pid: u32, program: &str) {
    if pid == 0 {
        return;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = |p: &[u8]| {
        Path::new(&String::from_utf8_lossy(p).into_owned())
            .file_name()
            .map(|n| n.to_owned())
    };
    if !first.is_empty() && name(first) == name(program.as_bytes()) {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
}

/// The runner of a service.
#[derive(Clone)]
pub enum Trainers {
    /// Child processes of the service.
    Local(LocalRunner),
    /// Kubernetes Jobs.
    Kubernetes(crate::kubernetes::JobRunner),
}

impl Trainers {
    /// Whether the trainer reads the service's files (a local path to the training set);
    /// a Job gets the training set as an artifact of its run instead.
    pub fn shares_files(&self) -> bool {
        matches!(self, Trainers::Local(_))
    }

    /// Starts attempt `attempt` of retrain `id`; answers the local process id (0 for a Job).
    pub async fn start(&self, id: &str, attempt: i64, launch: &Launch) -> Result<u32, String> {
        match self {
            Trainers::Local(r) => r.start(id, launch),
            Trainers::Kubernetes(k) => k
                .start(
                    &crate::kubernetes::JobRunner::job_name(id, attempt),
                    id,
                    launch,
                )
                .await
                .map(|()| 0)
                .map_err(|e| e.0),
        }
    }

    /// How attempt `attempt` of retrain `id` is doing; an error is the runner's (the API
    /// unreachable), to be asked again.
    pub async fn poll(&self, id: &str, attempt: i64) -> Result<Status, String> {
        match self {
            Trainers::Local(r) => Ok(r.poll(id)),
            Trainers::Kubernetes(k) => k
                .poll(&crate::kubernetes::JobRunner::job_name(id, attempt))
                .await
                .map_err(|e| e.0),
        }
    }

    /// Stops attempt `attempt` of retrain `id`.
    pub async fn stop(&self, id: &str, attempt: i64) {
        match self {
            Trainers::Local(r) => r.stop(id),
            Trainers::Kubernetes(k) => {
                let name = crate::kubernetes::JobRunner::job_name(id, attempt);
                if let Err(e) = k.stop(&name).await {
                    tracing::warn!(job = %name, error = %e, "cannot delete a trainer's Job");
                }
            }
        }
    }

    /// Where the trainer's log of an attempt can be read.
    pub fn logs(&self, id: &str, attempt: i64, local_log: &Path) -> String {
        match self {
            Trainers::Local(_) => local_log.display().to_string(),
            Trainers::Kubernetes(k) => {
                k.logs_hint(&crate::kubernetes::JobRunner::job_name(id, attempt))
            }
        }
    }
}

/// The last lines of a log, to say why a trainer failed.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut lines = lines;
    lines.reverse();
    format!(
        "; the end of its log ({}): {}",
        log.display(),
        lines.join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(dir: &Path, script: &str, timeout: Duration) -> Launch {
        Launch {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello".into())],
            dir: dir.join("work"),
            log: dir.join("trainer.log"),
            timeout,
            image: String::new(),
        }
    }

    async fn wait(r: &LocalRunner, id: &str) -> Status {
        loop {
            match r.poll(id) {
                Status::Running => tokio::time::sleep(Duration::from_millis(20)).await,
                s => return s,
            }
        }
    }

    #[tokio::test]
    async fn a_trainer_gets_its_environment_and_its_failure_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let r = LocalRunner::default();
        assert_eq!(r.poll("a"), Status::Unknown);
        r.start(
            "a",
            &launch(
                dir.path(),
                "echo $GREETING > out.txt",
                Duration::from_secs(30),
            ),
        )
        .unwrap();
        assert_eq!(wait(&r, "a").await, Status::Succeeded);
        let out = std::fs::read_to_string(dir.path().join("work/out.txt")).unwrap();
        assert_eq!(out.trim(), "hello");
        r.start(
            "b",
            &launch(dir.path(), "echo boom >&2; exit 3", Duration::from_secs(30)),
        )
        .unwrap();
        match wait(&r, "b").await {
            Status::Failed(why) => {
                assert!(
                    why.contains("exit status: 3") && why.contains("boom"),
                    "{why}"
                )
            }
            s => panic!("{s:?}"),
        }
        r.start(
            "c",
            &launch(dir.path(), "sleep 30", Duration::from_millis(100)),
        )
        .unwrap();
        match wait(&r, "c").await {
            Status::Failed(why) => assert!(why.contains("timeout"), "{why}"),
            s => panic!("{s:?}"),
        }
        let missing = Launch {
            command: vec!["/nonexistent/trainer".into()],
            ..launch(dir.path(), "", Duration::from_secs(1))
        };
        assert!(r
            .start("d", &missing)
            .unwrap_err()
            .contains("/nonexistent/trainer"));
    }
}
