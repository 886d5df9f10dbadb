//! A fake Kubernetes API server that speaks the part of the Job API the retraining
//! service's Job runner calls (create, read and delete a Job; list a Job's pods; read a
//! pod's log), and runs each Job's trainer container as a local process with the Job's
//! command and environment, so its status is real: `Complete` when the process exits 0,
//! `Failed` (`BackoffLimitExceeded`) otherwise, `Failed` (`DeadlineExceeded`) when it
//! outlives `activeDeadlineSeconds`. What was created is kept for the tests to inspect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

struct Job {
    manifest: Value,
    child: std::process::Child,
    started: Instant,
    deadline: Option<Duration>,
    log: std::path::PathBuf,
    /// "Complete" or "Failed:<reason>" once over.
    outcome: Option<String>,
}

#[derive(Default)]
struct Jobs {
    by_name: HashMap<String, Job>,
    /// Every manifest created, in order (deleted ones too).
    created: Vec<Value>,
    deleted: Vec<String>,
}

/// The fake server; its API lives while this value does.
#[derive(Clone)]
pub(crate) struct FakeKubernetes {
    pub(crate) url: String,
    jobs: Arc<Mutex<Jobs>>,
    _dir: Arc<tempfile::TempDir>,
}

type Shared = (Arc<Mutex<Jobs>>, std::path::PathBuf);

impl FakeKubernetes {
    pub(crate) async fn start() -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let jobs = Arc::new(Mutex::new(Jobs::default()));
        let state: Shared = (jobs.clone(), dir.path().to_owned());
        let app = Router::new()
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs",
                axum::routing::post(create),
            )
            .route(
                "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                get(read).delete(delete),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(pods))
            .route("/api/v1/namespaces/{ns}/pods/{pod}/log", get(log))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeKubernetes {
            url: format!("http://{addr}"),
            jobs,
            _dir: dir,
        }
    }

    /// Every Job manifest created so far, in order.
    pub(crate) fn created(&self) -> Vec<Value> {
        self.jobs.lock().unwrap().created.clone()
    }

    /// The names of the Jobs deleted so far.
    pub(crate) fn deleted(&self) -> Vec<String> {
        self.jobs.lock().unwrap().deleted.clone()
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Json<Value>) {
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": reason, "message": message, "code": code.as_u16()}),
        ),
    )
}

async fn create(
    State((jobs, dir)): State<Shared>,
    Path(ns): Path<String>,
    Json(manifest): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let name = manifest["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut jobs = jobs.lock().unwrap();
    if jobs.by_name.contains_key(&name) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    let c = &manifest["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<String> = c["command"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if command.is_empty() || c["image"].as_str().unwrap_or_default().is_empty() {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "spec.template.spec.containers[0]: command and image are required",
        );
    }
    let log = dir.join(format!("{ns}-{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(&command[0])
        .args(&command[1..])
        .envs(c["env"].as_array().into_iter().flatten().map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        }))
        .current_dir(&dir)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn();
    let child = match child {
        Ok(c) => c,
        // as a pod whose image cannot start: the Job fails
        Err(_) => std::process::Command::new("false").spawn().unwrap(),
    };
    jobs.created.push(manifest.clone());
    jobs.by_name.insert(
        name,
        Job {
            deadline: manifest["spec"]["activeDeadlineSeconds"]
                .as_u64()
                .map(Duration::from_secs),
            manifest: manifest.clone(),
            child,
            started: Instant::now(),
            log,
            outcome: None,
        },
    );
    (StatusCode::CREATED, Json(manifest))
}

async fn read(
    State((jobs, _)): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    let mut jobs = jobs.lock().unwrap();
    let Some(job) = jobs.by_name.get_mut(&name) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("jobs.batch \"{name}\" not found"),
        );
    };
    if job.outcome.is_none() {
        match job.child.try_wait().unwrap() {
            Some(s) if s.success() => job.outcome = Some("Complete".into()),
            Some(_) => job.outcome = Some("Failed:BackoffLimitExceeded".into()),
            None if job.deadline.is_some_and(|d| job.started.elapsed() > d) => {
                let _ = job.child.kill();
                let _ = job.child.wait();
                job.outcome = Some("Failed:DeadlineExceeded".into());
            }
            None => {}
        }
    }
    let mut answer = job.manifest.clone();
    answer["status"] = match job.outcome.as_deref() {
        None => json!({"active": 1}),
        Some("Complete") => json!({"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}),
        Some(failed) => {
            let reason = failed.trim_start_matches("Failed:");
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                   "reason": reason, "message": format!("Job failed: {reason}")}]})
        }
    };
    (StatusCode::OK, Json(answer))
}

async fn delete(
    State((jobs, _)): State<Shared>,
    Path((_ns, name)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    let mut jobs = jobs.lock().unwrap();
    match jobs.by_name.remove(&name) {
        Some(mut job) => {
            let _ = job.child.kill();
            let _ = job.child.wait();
            jobs.deleted.push(name);
            (
                StatusCode::OK,
                Json(json!({"kind": "Status", "status": "Success"})),
            )
        }
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("jobs.batch \"{name}\" not found"),
        ),
    }
}

async fn pods(
    State((jobs, _)): State<Shared>,
    Path(_ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let name = selector.strip_prefix("job-name=").unwrap_or_default();
    let jobs = jobs.lock().unwrap();
    let items: Vec<Value> = jobs
        .by_name
        .contains_key(name)
        .then(|| json!({"metadata": {"name": format!("{name}-pod"), "labels": {"job-name": name}}}))
        .into_iter()
        .collect();
    Json(json!({"kind": "PodList", "items": items}))
}

async fn log(
    State((jobs, _)): State<Shared>,
    Path((_ns, pod)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let jobs = jobs.lock().unwrap();
    let Some(job) = pod.strip_suffix("-pod").and_then(|n| jobs.by_name.get(n)) else {
        return (StatusCode::NOT_FOUND, "pod not found".into());
    };
    let text = std::fs::read_to_string(&job.log).unwrap_or_default();
    let tail: usize = q
        .get("tailLines")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(tail);
    (StatusCode::OK, lines[start..].join("\n"))
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for job in self.by_name.values_mut() {
            let _ = job.child.kill();
        }
    }
}
