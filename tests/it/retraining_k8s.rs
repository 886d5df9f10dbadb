//! The retraining service's Kubernetes Job runner against a fake API server
//! ([`crate::fake_kubernetes`]) whose Jobs run as local processes: the Job it creates from
//! the chart's template, a trainer that succeeds, one that fails (its log's end in the
//! reason), one past its deadline, a Job created twice, a stopped Job deleted, an API that
//! refuses the Job, and a whole retrain whose trainer runs as Jobs. No cluster runs here:
//! `make test` validates the Job the runner made (written to MLOPS_TEST_RENDERED_JOB) against
//! Kubernetes' schema with kubernetes-validate.

use std::time::{Duration, Instant};

use mlops_retraining::kubernetes::{JobRunner, JobSettings};
use mlops_retraining::runner::{Launch, Status};

use mlops_proto::retraining::v1 as pb;
use mlops_tests::Bus;

use crate::fake_kubernetes::FakeKubernetes;
use crate::retraining::{champion, client, finished, platform, policy, retraining_with};

/// The Job template the chart ships (helm/mlops/files/retraining-job.yaml), as the chart
/// puts it in its ConfigMap.
pub(crate) const TEMPLATE: &str = include_str!("../../helm/mlops/files/retraining-job.yaml");

fn runner(fake: &FakeKubernetes) -> JobRunner {
    JobRunner::new(&JobSettings {
        api_url: fake.url.clone(),
        namespace: "ml".into(),
        template: TEMPLATE.into(),
        default_image: "registry.local/mlops-trainer:1".into(),
    })
    .expect("a runner")
}

fn launch(script: &str, timeout: Duration) -> Launch {
    Launch {
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("GREETING".into(), "hello".into())],
        dir: std::env::temp_dir(),
        log: std::env::temp_dir().join("unused.log"),
        timeout,
        image: String::new(),
    }
}

async fn settle(r: &JobRunner, name: &str) -> Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match r.poll(name).await.expect("poll") {
            Status::Running if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            s => return s,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_made_from_the_template_and_their_outcome_read_back() {
    let fake = FakeKubernetes::start().await;
    let r = runner(&fake);
    assert_eq!(r.poll("retrain-none-1").await.unwrap(), Status::Unknown);

    let ok = JobRunner::job_name("0123456789abcdef", 1);
    r.start(
        &ok,
        "0123456789abcdef",
        &launch("echo $GREETING", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    // created again (a retried step): the existing Job is kept
    r.start(
        &ok,
        "0123456789abcdef",
        &launch("echo $GREETING", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(settle(&r, &ok).await, Status::Succeeded);
    let created = fake.created();
    assert_eq!(created.len(), 1);
    let job = &created[0];
    // `make test` validates the Job the runner made against Kubernetes' schema
    // (kubernetes-validate, after the Rust tests)
    if let Ok(out) = std::env::var("MLOPS_TEST_RENDERED_JOB") {
        std::fs::write(&out, serde_json::to_vec_pretty(job).unwrap()).unwrap();
    }
    assert_eq!(job["metadata"]["name"], ok.as_str());
    assert_eq!(
        job["metadata"]["labels"]["mlops.retrain-id"],
        "0123456789abcdef"
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 60);
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.local/mlops-trainer:1");
    assert_eq!(c["command"][0], "sh");
    assert!(c["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "GREETING" && e["value"] == "hello"));

    let failing = JobRunner::job_name("failing", 1);
    r.start(
        &failing,
        "failing",
        &launch(
            "echo loading data; echo out of memory >&2; exit 3",
            Duration::from_secs(60),
        ),
    )
    .await
    .unwrap();
    match settle(&r, &failing).await {
        Status::Failed(why) => {
            assert!(why.contains("BackoffLimitExceeded"), "{why}");
            assert!(why.contains("out of memory"), "{why}");
        }
        s => panic!("{s:?}"),
    }

    let slow = JobRunner::job_name("slow", 1);
    r.start(&slow, "slow", &launch("sleep 30", Duration::from_secs(1)))
        .await
        .unwrap();
    match settle(&r, &slow).await {
        Status::Failed(why) => assert!(why.contains("DeadlineExceeded"), "{why}"),
        s => panic!("{s:?}"),
    }

    // a stopped retrain's Job is deleted, its pod with it
    let stopped = JobRunner::job_name("stopped", 1);
    r.start(
        &stopped,
        "stopped",
        &launch("sleep 30", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(r.poll(&stopped).await.unwrap(), Status::Running);
    r.stop(&stopped).await.unwrap();
    assert_eq!(fake.deleted(), vec![stopped.clone()]);
    assert_eq!(r.poll(&stopped).await.unwrap(), Status::Unknown);
    r.stop(&stopped)
        .await
        .expect("deleting a Job that is gone is fine");

    // the API refuses a Job without a command: its message is the error
    let bad = Launch {
        command: vec![],
        ..launch("", Duration::from_secs(1))
    };
    let e = r.start("retrain-bad-1", "bad", &bad).await.unwrap_err();
    assert!(e.0.contains("command and image are required"), "{e}");
}

/// The whole pipeline on the Job runner: the trainer's Job gets its training set as an
/// artifact of its run, and a failed first attempt is retried as a second Job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrain_runs_its_trainer_as_a_job_and_retries_a_failed_one() {
    let fake = FakeKubernetes::start().await;
    let sb = platform(Bus::InProcess).await;
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("job.yaml");
    std::fs::write(&template, TEMPLATE).unwrap();
    let (url, template) = (fake.url.clone(), template.display().to_string());
    let rt = retraining_with(&sb, dir.path(), move |c| {
        c.runner = "kubernetes".into();
        c.kubernetes_api_url = url;
        c.kubernetes_namespace = "ml".into();
        c.kubernetes_job_template = template;
        c.kubernetes_default_image = "registry.local/mlops-trainer:1".into();
    })
    .await;
    let mut c = client(rt.addr).await;
    let model = "jobbed";
    let mut p = policy(model);
    let trainer = p.trainer.as_mut().unwrap();
    // the first attempt fails (no marker yet), the second trains
    let marker = dir.path().join("tried");
    trainer.command = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "if [ -e {m} ]; then exec {t}; else touch {m}; echo first attempt fails >&2; exit 1; fi",
            m = marker.display(),
            t = crate::retraining::TRAINER
        ),
    ];
    trainer.retries = 1;
    c.set_policy(pb::SetPolicyRequest { policy: Some(p) })
        .await
        .unwrap();
    let r = mlops_tests::houses::start_retrain(&mut c, model).await;
    let r = finished(&mut c, model, &r.id).await;
    assert_eq!(r.state, "PROMOTED", "{:#?}", r.transitions);
    assert_eq!(r.attempts, 2);
    assert_eq!(champion(&sb, model).await, r.version);
    let jobs = fake.created();
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            JobRunner::job_name(&r.id, 1).as_str(),
            JobRunner::job_name(&r.id, 2).as_str()
        ]
    );
    let env = jobs[1]["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let var = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(var("MLOPS_RUN_ID").as_deref(), Some(r.run_id.as_str()));
    assert_eq!(
        var("MLOPS_TRAINING_DATA_ARTIFACT").as_deref(),
        Some("training/training.parquet")
    );
    assert_eq!(var("MLOPS_TRAINING_DATA"), None);
    // the run links the Job's log
    let run = crate::get_run(&mut sb.tracking_client().await, &r.run_id).await;
    let tags = run.data.unwrap().tags;
    let logs = tags.iter().find(|t| t.key == "mlops.trainer_logs").unwrap();
    assert_eq!(
        logs.value,
        format!("kubectl -n ml logs job/{}", JobRunner::job_name(&r.id, 2))
    );
    rt.stop().await;
    sb.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_api_and_a_bad_template_say_so() {
    let r = JobRunner::new(&JobSettings {
        api_url: "http://127.0.0.1:9".into(),
        namespace: "ml".into(),
        template: TEMPLATE.into(),
        default_image: "img:1".into(),
    })
    .unwrap();
    let e = r.poll("x").await.unwrap_err();
    assert!(
        e.0.contains("the Kubernetes API at http://127.0.0.1:9"),
        "{e}"
    );
    let e = JobRunner::new(&JobSettings {
        api_url: "http://127.0.0.1:9".into(),
        namespace: String::new(),
        template: "kind: Pod".into(),
        default_image: String::new(),
    })
    .err()
    .unwrap();
    assert!(e.0.contains("kind: Job"), "{e}");
}
