//! Trainers as Kubernetes Jobs. A Job is made from a template (a Job manifest in YAML, from
//! the chart's ConfigMap: resources, volumes, node selection, service account, whatever
//! the cluster needs); the runner sets what belongs to the attempt: its name, labels, the
//! trainer container's image, command and environment, its deadline (the trainer's timeout,
//! as `activeDeadlineSeconds`) and `backoffLimit: 0` (the pipeline retries, with backoff, as
//! a new Job). The Job's status is read back: `Complete` is success; `Failed` (its deadline
//! passed, its pod failed, it was evicted) is a failure with the condition's reason and the
//! end of the pod's log.
//!
//! The API is called over HTTPS with the pod's service account (its token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount`, the server from
//! `KUBERNETES_SERVICE_HOST`), or at a given URL; only the five calls a Job needs: create,
//! read and delete a Job, list its pods, read a pod's log. The client is reqwest (already in
//! the build for the object store) rather than kube and k8s-openapi, whose generated API
//! types would cost minutes of compile time on two cores for these five calls.

use std::time::Duration;

use serde_json::{json, Value};

use crate::runner::{Launch, Status};

/// Where the service account's credentials are mounted in a pod.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the API server and make Jobs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// `https://HOST:PORT`; empty: in-cluster (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_url: String,
    /// The namespace Jobs go in; empty: the pod's own.
    pub namespace: String,
    /// The Job template: a Job manifest, YAML.
    pub template: String,
    /// The trainer's image when the policy names none.
    pub default_image: String,
}

/// Why the runner could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KubeError(pub String);

fn kerr(msg: impl Into<String>) -> KubeError {
    KubeError(msg.into())
}

/// Trainers as Jobs in one namespace.
#[derive(Clone)]
pub struct JobRunner {
    http: reqwest::Client,
    base: String,
    namespace: String,
    /// The service account's token file: read at each call, since the kubelet rotates it.
    token: Option<std::path::PathBuf>,
    template: Value,
    default_image: String,
}

impl JobRunner {
    /// A runner from `settings`, with the pod's service account when in a cluster.
    pub fn new(settings: &JobSettings) -> Result<Self, KubeError> {
        let template: Value = serde_norway::from_str(&settings.template)
            .map_err(|e| kerr(format!("the Job template is not YAML: {e}")))?;
        check_template(&template)?;
        let in_cluster = settings.api_url.trim().is_empty();
        let base = if in_cluster {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                kerr("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset): give kubernetes_api_url")
            })?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        } else {
            settings.api_url.trim_end_matches('/').to_owned()
        };
        let read = |file: &str| std::fs::read(format!("{SERVICE_ACCOUNT}/{file}")).ok();
        let token = Some(std::path::PathBuf::from(format!("{SERVICE_ACCOUNT}/token")))
            .filter(|p| p.exists());
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        if let Some(ca) = read("ca.crt") {
            let cert = reqwest::Certificate::from_pem(&ca)
                .map_err(|e| kerr(format!("the service account's CA: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        let namespace = if settings.namespace.trim().is_empty() {
            read("namespace")
                .map(|n| String::from_utf8_lossy(&n).trim().to_owned())
                .unwrap_or_else(|| "default".into())
        } else {
            settings.namespace.trim().to_owned()
        };
        Ok(JobRunner {
            http: http
                .build()
                .map_err(|e| kerr(format!("the Kubernetes client: {e}")))?,
            base,
            namespace,
            token,
            template,
            default_image: settings.default_image.clone(),
        })
    }

    /// The Job's name for attempt `attempt` of retrain `id` (DNS-1123, at most 63).
    pub fn job_name(id: &str, attempt: i64) -> String {
        format!("retrain-{}-{attempt}", &id[..id.len().min(12)])
    }

    fn jobs_url(&self) -> String {
        format!(
            "{}/apis/batch/v1/namespaces/{}/jobs",
            self.base, self.namespace
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), KubeError> {
        let mut req = self.http.request(method, url);
        if let Some(file) = &self.token {
            let token = std::fs::read_to_string(file).map_err(|e| {
                kerr(format!(
                    "reading the service account's token {}: {e}",
                    file.display()
                ))
            })?;
            req = req.bearer_auth(token.trim());
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).expect("json"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| kerr(format!("the Kubernetes API at {}: {e}", self.base)))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| kerr(format!("the Kubernetes API's answer: {e}")))?;
        Ok((status, text))
    }

    /// Creates the Job of `launch` named `name`; an existing one of that name (a retry of
    /// this call) is kept.
    pub async fn start(
        &self,
        name: &str,
        retrain_id: &str,
        launch: &Launch,
    ) -> Result<(), KubeError> {
        let job = render(
            &self.template,
            name,
            retrain_id,
            launch,
            &self.default_image,
        )?;
        let (status, text) = self
            .call(reqwest::Method::POST, &self.jobs_url(), Some(&job))
            .await?;
        match status {
            200..=299 | 409 => Ok(()),
            _ => Err(kerr(format!(
                "the Kubernetes API refused the Job {name}: {} {}",
                status,
                api_message(&text)
            ))),
        }
    }

    /// How the Job `name` is doing.
    pub async fn poll(&self, name: &str) -> Result<Status, KubeError> {
        let (status, text) = self
            .call(
                reqwest::Method::GET,
                &format!("{}/{name}", self.jobs_url()),
                None,
            )
            .await?;
        match status {
            404 => return Ok(Status::Unknown),
            200..=299 => {}
            _ => {
                return Err(kerr(format!(
                    "reading the Job {name}: {status} {}",
                    api_message(&text)
                )))
            }
        }
        let job: Value = serde_json::from_str(&text)
            .map_err(|e| kerr(format!("the Job {name} does not parse: {e}")))?;
        let condition = |kind: &str| {
            job["status"]["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == kind && c["status"] == "True")
                    .cloned()
            })
        };
        if condition("Complete").is_some() || job["status"]["succeeded"].as_i64().unwrap_or(0) > 0 {
            return Ok(Status::Succeeded);
        }
        if let Some(c) = condition("Failed") {
            let why = format!(
                "the Job {name} failed: {}{}",
                c["reason"].as_str().unwrap_or("Failed"),
                c["message"]
                    .as_str()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
            return Ok(Status::Failed(format!(
                "{why}{}",
                self.log_tail(name).await
            )));
        }
        Ok(Status::Running)
    }

    /// `; the end of its log (pod P): ...` of the Job's newest pod, or nothing.
    async fn log_tail(&self, name: &str) -> String {
        let pods = format!(
            "{}/api/v1/namespaces/{}/pods?labelSelector=job-name%3D{name}",
            self.base, self.namespace
        );
        let Ok((200, text)) = self.call(reqwest::Method::GET, &pods, None).await else {
            return String::new();
        };
        let list: Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(pod) = list["items"]
            .as_array()
            .and_then(|items| items.last())
            .and_then(|p| p["metadata"]["name"].as_str())
            .map(str::to_owned)
        else {
            return String::new();
        };
        let log = format!(
            "{}/api/v1/namespaces/{}/pods/{pod}/log?tailLines=5",
            self.base, self.namespace
        );
        match self.call(reqwest::Method::GET, &log, None).await {
            Ok((200, text)) if !text.trim().is_empty() => format!(
                "; the end of its log (pod {pod}): {}",
                text.trim().lines().collect::<Vec<_>>().join(" | ")
            ),
            _ => String::new(),
        }
    }

    /// Deletes the Job `name` and its pods (a stopped retrain, a timed-out attempt).
    pub async fn stop(&self, name: &str) -> Result<(), KubeError> {
        let body =
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        let (status, text) = self
            .call(
                reqwest::Method::DELETE,
                &format!("{}/{name}", self.jobs_url()),
                Some(&body),
            )
            .await?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(kerr(format!(
                "deleting the Job {name}: {status} {}",
                api_message(&text)
            ))),
        }
    }

    /// Where the Job's log can be read, for the run's tags.
    pub fn logs_hint(&self, name: &str) -> String {
        format!("kubectl -n {} logs job/{name}", self.namespace)
    }
}

/// The `message` of an API `Status` answer, else the text.
fn api_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// A template must be a Job with one container (the trainer's, the first if several).
fn check_template(t: &Value) -> Result<(), KubeError> {
    if t["kind"] != "Job"
        || !t["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("batch/"))
    {
        return Err(kerr(
            "the Job template must be a Job manifest (apiVersion: batch/v1, kind: Job)",
        ));
    }
    if t["spec"]["template"]["spec"]["containers"]
        .as_array()
        .is_none_or(|c| c.is_empty())
    {
        return Err(kerr(
            "the Job template needs spec.template.spec.containers with the trainer's container first",
        ));
    }
    Ok(())
}

/// The Job of one attempt: the template with the attempt's name, labels, image, command,
/// environment and deadline.
pub fn render(
    template: &Value,
    name: &str,
    retrain_id: &str,
    launch: &Launch,
    default_image: &str,
) -> Result<Value, KubeError> {
    check_template(template)?;
    let mut job = template.clone();
    let labels = json!({
        "app.kubernetes.io/managed-by": "mlops-retraining",
        "mlops.retrain-id": retrain_id,
    });
    let merge = |target: &mut Value| {
        if !target.is_object() {
            *target = json!({});
        }
        for (k, v) in labels.as_object().expect("labels") {
            target[k] = v.clone();
        }
    };
    job["metadata"]["name"] = json!(name);
    merge(&mut job["metadata"]["labels"]);
    merge(&mut job["spec"]["template"]["metadata"]["labels"]);
    job["spec"]["backoffLimit"] = json!(0);
    job["spec"]["activeDeadlineSeconds"] = json!(launch.timeout.as_secs().max(1));
    if job["spec"]["template"]["spec"]["restartPolicy"].is_null() {
        job["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    }
    let container = &mut job["spec"]["template"]["spec"]["containers"][0];
    let image = if launch.image.is_empty() {
        default_image
    } else {
        &launch.image
    };
    if !image.is_empty() {
        container["image"] = json!(image);
    }
    if container["image"].as_str().unwrap_or_default().is_empty() {
        return Err(kerr(
            "the trainer has no image: set policy.trainer.image, the Job template's, or kubernetes_default_image",
        ));
    }
    container["command"] = json!(launch.command);
    container.as_object_mut().expect("container").remove("args");
    let mut env: Vec<Value> = container["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let n = e["name"].as_str().unwrap_or_default();
            !launch.env.iter().any(|(k, _)| k == n)
        })
        .collect();
    env.extend(
        launch
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v})),
    );
    container["env"] = json!(env);
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  labels: {team: ml}
spec:
  ttlSecondsAfterFinished: 3600
  template:
    spec:
      serviceAccountName: trainer
      containers:
        - name: trainer
          image: registry.local/trainer:1
          args: [ignored]
          env: [{name: MLOPS_MODEL, value: stale}, {name: KEEP, value: "1"}]
          resources: {limits: {memory: 2Gi}}
"#;

    fn launch() -> Launch {
        Launch {
            command: vec!["python".into(), "train.py".into()],
            env: vec![("MLOPS_MODEL".into(), "houses".into())],
            dir: "/tmp/x".into(),
            log: "/tmp/x.log".into(),
            timeout: Duration::from_secs(600),
            image: String::new(),
        }
    }

    #[test]
    fn a_job_is_the_template_with_the_attempt_in_it() {
        let t: Value = serde_norway::from_str(TEMPLATE).unwrap();
        let job = render(&t, "retrain-abc-1", "abc", &launch(), "").unwrap();
        assert_eq!(job["metadata"]["name"], "retrain-abc-1");
        assert_eq!(job["metadata"]["labels"]["team"], "ml");
        assert_eq!(job["metadata"]["labels"]["mlops.retrain-id"], "abc");
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "mlops-retraining"
        );
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["serviceAccountName"], "trainer");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.local/trainer:1");
        assert_eq!(c["command"], json!(["python", "train.py"]));
        assert!(c.get("args").is_none());
        assert_eq!(c["resources"]["limits"]["memory"], "2Gi");
        assert_eq!(
            c["env"],
            json!([{"name": "KEEP", "value": "1"}, {"name": "MLOPS_MODEL", "value": "houses"}])
        );
        // the policy's image wins over the template's
        let mut l = launch();
        l.image = "registry.local/trainer:2".into();
        let job = render(&t, "n", "abc", &l, "").unwrap();
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.local/trainer:2"
        );
    }

    #[test]
    fn a_template_that_is_no_job_or_a_trainer_without_an_image_is_refused() {
        let pod: Value = serde_norway::from_str("apiVersion: v1\nkind: Pod\n").unwrap();
        assert!(render(&pod, "n", "i", &launch(), "")
            .unwrap_err()
            .0
            .contains("kind: Job"));
        let bare: Value = serde_norway::from_str(
            "apiVersion: batch/v1\nkind: Job\nspec: {template: {spec: {containers: [{name: t}]}}}\n",
        )
        .unwrap();
        assert!(render(&bare, "n", "i", &launch(), "")
            .unwrap_err()
            .0
            .contains("no image"));
        let job = render(&bare, "n", "i", &launch(), "img:1").unwrap();
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["image"],
            "img:1"
        );
        assert_eq!(
            JobRunner::job_name("0123456789abcdef0123", 2),
            "retrain-0123456789ab-2"
        );
    }
}
