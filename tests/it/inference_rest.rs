//! The Open Inference Protocol over HTTP/JSON, spoken as `curl` and `tritonclient.http` do:
//! health, metadata, config, statistics, the repository, inference with JSON data and with
//! Triton's binary tensor data, bad requests, and roles.

use mlops_inference::{Inference, InferenceConfig};
use mlops_tests::Sandbox;
use serde_json::{json, Value};

use crate::inference::{fixture, upload, Fixture};
use crate::oip_http::{f32s, framed, i64s, le_f32, unframed, Http};

fn assert_close(got: &[f64], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "element counts differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w = w.as_f64().unwrap();
        assert!((g - w).abs() <= 1e-5, "element {i}: got {g}, want {w}");
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

async fn sandbox(tweak: impl FnOnce(&mut InferenceConfig) + 'static) -> (Sandbox, Http) {
    let sb = Sandbox::builder()
        .registry()
        .service::<Inference>(tweak)
        .start()
        .await
        .expect("sandbox starts");
    let addr = sb
        .addresses("inference")
        .http
        .expect("inference serves HTTP");
    (sb, Http { addr, token: None })
}

/// An inference request of the first `rows` rows of logreg's input as JSON numbers.
fn logreg_json(f: &Fixture, rows: usize) -> Value {
    let (shape, data) = f.floats("input", rows);
    json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_protocol_over_http_as_triton_does() {
    let (sb, http) = sandbox(|_| {}).await;
    let f = fixture("logreg");
    upload(&sb, "breast", &f.onnx).await;

    for path in ["/v2/health/live", "/v2/health/ready"] {
        let a = http.get(path).await;
        assert_eq!((a.status, a.body.len()), (200, 0), "{path}");
    }
    let server = http.get("/v2").await.json();
    assert_eq!(server["name"], "mlops-inference");
    assert!(server["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));

    // Not loaded: ready is 400 with why, metadata 404; the index lists it as unavailable.
    let err = http.get("/v2/models/breast/ready").await.error(400);
    assert!(err.contains("not loaded here"), "{err}");
    let err = http.get("/v2/models/breast").await.error(404);
    assert!(err.contains("load it first"), "{err}");
    let index = http.post("/v2/repository/index", json!({})).await.json();
    assert_eq!(
        index,
        json!([{"name": "breast", "version": "", "state": "UNAVAILABLE", "reason": "not loaded"}])
    );

    // Loaded over REST with Triton's config parameter (a JSON string, as tritonclient sends).
    let config =
        json!({"max_batch_size": 32, "dynamic_batching": {"max_queue_delay_microseconds": 200}});
    let a = http
        .post(
            "/v2/repository/models/breast/load",
            json!({"parameters": {"config": config.to_string()}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    for path in [
        "/v2/models/breast/ready",
        "/v2/models/breast/versions/1/ready",
    ] {
        assert_eq!(http.get(path).await.status, 200, "{path}");
    }
    let err = http
        .get("/v2/models/breast/versions/2/ready")
        .await
        .error(400);
    assert!(err.contains("version 1 is"), "{err}");
    // tritonclient posts an empty body for the index.
    let a = http.call("POST", "/v2/repository/index", &[], b"").await;
    assert_eq!(
        a.json(),
        json!([{"name": "breast", "version": "1", "state": "READY", "reason": ""}])
    );
    let ready_only = http
        .post("/v2/repository/index", json!({"ready": true}))
        .await
        .json();
    assert_eq!(ready_only.as_array().unwrap().len(), 1);

    let meta = http.get("/v2/models/breast/versions/1").await.json();
    assert_eq!(
        meta,
        json!({
            "name": "breast", "versions": ["1"], "platform": "onnx",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
            ],
        })
    );
    let config = http.get("/v2/models/breast/config").await.json();
    assert_eq!(config["name"], "breast");
    assert_eq!(config["backend"], "mlops");
    assert_eq!(config["max_batch_size"], 32);
    assert_eq!(
        config["input"],
        json!([{"name": "input", "data_type": "TYPE_FP32", "dims": [30]}])
    );
    assert_eq!(config["output"][1]["dims"], json!([2]));
    assert_eq!(
        config["dynamic_batching"]["max_queue_delay_microseconds"],
        200
    );
    assert!(config["dynamic_batching"]["default_queue_policy"]["max_queue_size"].is_u64());

    // Inference with JSON data: every output, as JSON, matching onnxruntime.
    let a = http
        .post("/v2/models/breast/infer", logreg_json(&f, 20))
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("inference-header-content-length"), None);
    let out = a.json();
    assert_eq!(out["model_name"], "breast");
    assert_eq!(out["model_version"], "1");
    // No id given: the prediction log (on by default) made one, for labels to join on.
    let id = out["id"].as_str().expect("a made id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(out["outputs"][0]["name"], "label");
    assert_eq!(out["outputs"][0]["datatype"], "INT64");
    assert_eq!(out["outputs"][0]["shape"], json!([20]));
    assert_eq!(
        out["outputs"][0]["data"].as_array().unwrap(),
        &f.expected("label", 20)
    );
    assert_eq!(out["outputs"][1]["shape"], json!([20, 2]));
    assert_close(
        &numbers(&out["outputs"][1]["data"]),
        &f.expected("probabilities", 20),
    );

    // Nested data, an id echoed, one output asked for by name.
    let (_, data) = f.floats("input", 2);
    let nested: Vec<&[f32]> = data.chunks(30).collect();
    let a = http
        .post(
            "/v2/models/breast/versions/1/infer",
            json!({
                "id": "req-7",
                "inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": nested}],
                "outputs": [{"name": "probabilities"}],
            }),
        )
        .await;
    let out = a.json();
    assert_eq!(out["id"], "req-7");
    assert_eq!(out["outputs"].as_array().unwrap().len(), 1);
    assert_close(
        &numbers(&out["outputs"][0]["data"]),
        &f.expected("probabilities", 2),
    );

    // Statistics count both requests (22 rows), per model and for all.
    let stats = http.get("/v2/models/breast/stats").await.json();
    let s = &stats["model_stats"][0];
    assert_eq!(
        (s["name"].as_str(), s["version"].as_str()),
        (Some("breast"), Some("1"))
    );
    assert_eq!(s["inference_count"], 22);
    assert_eq!(s["inference_stats"]["success"]["count"], 2);
    assert!(s["inference_stats"]["success"]["ns"].as_u64().unwrap() > 0);
    assert!(s["last_inference"].as_u64().unwrap() > 0);
    assert!(s["batch_stats"].is_array());
    let all = http.get("/v2/models/stats").await.json();
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 1);
    assert_eq!(
        http.get("/v2/models/breast/versions/1/stats").await.json()["model_stats"][0]
            ["inference_count"],
        22
    );

    // Unloaded over REST, with the body tritonclient sends.
    let a = http
        .post(
            "/v2/repository/models/breast/unload",
            json!({"parameters": {"unload_dependents": false}}),
        )
        .await;
    assert_eq!(a.status, 200);
    let err = http.get("/v2/models/breast/ready").await.error(400);
    assert!(err.contains("UNAVAILABLE"), "{err}");
    let err = http
        .post("/v2/models/breast/infer", logreg_json(&f, 1))
        .await
        .error(503);
    assert!(err.contains("not ready"), "{err}");
    assert_eq!(
        http.get("/v2/models/stats").await.json(),
        json!({"model_stats": []})
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensor_data_and_strings_as_tritonclient_sends_them() {
    let (sb, http) = sandbox(|_| {}).await;
    let logreg = fixture("logreg");
    let labels = fixture("label_encoder");
    let pipeline = fixture("pipeline");
    for (name, f) in [("breast", &logreg), ("iris", &labels), ("mixed", &pipeline)] {
        upload(&sb, name, &f.onnx).await;
        let a = http
            .post(&format!("/v2/repository/models/{name}/load"), json!({}))
            .await;
        assert_eq!(
            a.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }

    // tritonclient's default: binary input, no outputs named, binary_data_output.
    let (shape, data) = logreg.floats("input", 5);
    let raw = le_f32(&data);
    let a = http
        .post_binary(
            "/v2/models/breast/infer",
            json!({
                "id": "b-1",
                "inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                            "parameters": {"binary_data_size": raw.len()}}],
                "parameters": {"binary_data_output": true},
            }),
            &raw,
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    let (head, bytes) = a.split();
    assert_eq!(head["id"], "b-1");
    let outs = head["outputs"].as_array().unwrap();
    assert_eq!(outs[0]["parameters"], json!({"binary_data_size": 5 * 8}));
    assert_eq!(
        outs[1]["parameters"],
        json!({"binary_data_size": 5 * 2 * 4})
    );
    assert!(outs.iter().all(|o| o.get("data").is_none()));
    assert_eq!(bytes.len(), 40 + 40);
    let want: Vec<i64> = logreg
        .expected("label", 5)
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(i64s(&bytes[..40]), want);
    assert_close(&f32s(&bytes[40..]), &logreg.expected("probabilities", 5));

    // Outputs named in another order, one binary and one JSON.
    let a = http
        .post_binary(
            "/v2/models/breast/infer",
            json!({
                "inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                            "parameters": {"binary_data_size": raw.len()}}],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}},
                            {"name": "label", "parameters": {"binary_data": false}}],
            }),
            &raw,
        )
        .await;
    let (head, bytes) = a.split();
    assert_eq!(head["outputs"][0]["name"], "probabilities");
    assert_close(&f32s(bytes), &logreg.expected("probabilities", 5));
    assert_eq!(head["outputs"][1]["name"], "label");
    assert_eq!(
        head["outputs"][1]["data"].as_array().unwrap(),
        &logreg.expected("label", 5)
    );

    // String labels: JSON strings, or framed bytes when asked as binary.
    let (shape, data) = labels.floats("input", 20);
    let a = http
        .post(
            "/v2/models/iris/infer",
            json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}],
                   "outputs": [{"name": "label"}]}),
        )
        .await;
    let out = a.json();
    assert_eq!(out["outputs"][0]["datatype"], "BYTES");
    assert_eq!(
        out["outputs"][0]["data"].as_array().unwrap(),
        &labels.expected("label", 20)
    );
    let a = http
        .post(
            "/v2/models/iris/infer",
            json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}],
                   "outputs": [{"name": "label", "parameters": {"binary_data": true}}]}),
        )
        .await;
    let (_, bytes) = a.split();
    let want: Vec<String> = labels
        .expected("label", 20)
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unframed(bytes), want);

    // A string input: as JSON strings (with null for the NaNs of the numeric input), then as
    // framed binary after a binary float input.
    let (num_shape, num) = pipeline.floats("num", 20);
    let cat: Vec<&str> = pipeline.tensor("inputs", "cat")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let num_json: Vec<Value> = num
        .iter()
        .map(|v| if v.is_nan() { Value::Null } else { json!(v) })
        .collect();
    let a = http
        .post(
            "/v2/models/mixed/infer",
            json!({"inputs": [
                {"name": "num", "shape": num_shape, "datatype": "FP32", "data": num_json},
                {"name": "cat", "shape": [20, 1], "datatype": "BYTES", "data": cat},
            ]}),
        )
        .await;
    let out = a.json();
    assert_eq!(
        out["outputs"][0]["data"].as_array().unwrap(),
        &pipeline.expected("label", 20),
        "{out}"
    );
    assert_close(
        &numbers(&out["outputs"][1]["data"]),
        &pipeline.expected("probabilities", 20),
    );
    let num_raw = le_f32(&num);
    let cat_raw = framed(&cat);
    let mut both = num_raw.clone();
    both.extend_from_slice(&cat_raw);
    let a = http
        .post_binary(
            "/v2/models/mixed/infer",
            json!({"inputs": [
                {"name": "num", "shape": num_shape, "datatype": "FP32",
                 "parameters": {"binary_data_size": num_raw.len()}},
                {"name": "cat", "shape": [20, 1], "datatype": "BYTES",
                 "parameters": {"binary_data_size": cat_raw.len()}},
            ], "outputs": [{"name": "label", "parameters": {"binary_data": true}}]}),
            &both,
        )
        .await;
    let (_, bytes) = a.split();
    let want: Vec<i64> = pipeline
        .expected("label", 20)
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(i64s(bytes), want);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_say_what_was_expected() {
    let (sb, http) = sandbox(|c| c.server.max_message_bytes = 64 * 1024).await;
    let f = fixture("logreg");
    upload(&sb, "b", &f.onnx).await;
    assert_eq!(
        http.post("/v2/repository/models/b/load", json!({}))
            .await
            .status,
        200
    );
    let good = logreg_json(&f, 2);
    let change = |edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "wrong name",
            change(&|v| v["inputs"][0]["name"] = json!("x")),
            "unexpected input \"x\"",
        ),
        (
            "wrong datatype",
            change(&|v| v["inputs"][0]["datatype"] = json!("FP64")),
            "the model expects FP32",
        ),
        (
            "unknown datatype",
            change(&|v| v["inputs"][0]["datatype"] = json!("FLOAT")),
            "unknown or unsupported datatype",
        ),
        (
            "wrong shape",
            change(&|v| v["inputs"][0]["shape"] = json!([4, 15])),
            "expects [-1, 30]",
        ),
        (
            "short data",
            change(&|v| v["inputs"][0]["shape"] = json!([3, 30])),
            "data holds 60 elements; its shape needs 90",
        ),
        (
            "a string for a float",
            change(&|v| v["inputs"][0]["data"][3] = json!("x")),
            "data element 3 is \"x\"; FP32 takes numbers",
        ),
        (
            "no data",
            change(&|v| {
                v["inputs"][0].as_object_mut().unwrap().remove("data");
            }),
            "has no data",
        ),
        (
            "missing input",
            change(&|v| v["inputs"] = json!([])),
            "missing input \"input\"",
        ),
        (
            "unknown output",
            change(&|v| v["outputs"] = json!([{"name": "proba"}])),
            "unknown output \"proba\"",
        ),
        (
            "bad binary flag",
            change(&|v| v["parameters"] = json!({"binary_data_output": "yes"})),
            "must be true or false",
        ),
        (
            "data and a binary size",
            change(&|v| v["inputs"][0]["parameters"] = json!({"binary_data_size": 240})),
            "has both data and binary_data_size",
        ),
        (
            "no inputs field",
            json!({"id": "x"}),
            "missing field `inputs`",
        ),
        (
            "classification",
            change(&|v| {
                v["outputs"] = json!([{"name": "label", "parameters": {"classification": 2}}])
            }),
            "classification extension",
        ),
    ];
    for (what, body, needle) in cases {
        let err = http.post("/v2/models/b/infer", body).await.error(400);
        assert!(err.contains(needle), "{what}: {err}");
    }
    let err = http
        .call("POST", "/v2/models/b/infer", &[], b"{\"inputs\": [")
        .await
        .error(400);
    assert!(err.contains("not the JSON expected"), "{err}");

    // Binary tensor data that does not add up.
    let (shape, data) = f.floats("input", 2);
    let raw = le_f32(&data);
    let header = |size: usize| {
        json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                           "parameters": {"binary_data_size": size}}]})
    };
    let err = http
        .post_binary("/v2/models/b/infer", header(240), &raw[..100])
        .await
        .error(400);
    assert!(
        err.contains("binary_data_size is 240 but only 100 bytes"),
        "{err}"
    );
    let err = http
        .post_binary("/v2/models/b/infer", header(236), &raw[..236])
        .await
        .error(400);
    assert!(err.contains("need 240"), "{err}");
    let err = http
        .post_binary(
            "/v2/models/b/infer",
            header(240),
            &[raw.clone(), vec![0; 4]].concat(),
        )
        .await
        .error(400);
    assert!(err.contains("4 bytes of binary data follow"), "{err}");
    let err = http
        .call(
            "POST",
            "/v2/models/b/infer",
            &[("Inference-Header-Content-Length", "5000".into())],
            good.to_string().as_bytes(),
        )
        .await
        .error(400);
    assert!(
        err.contains("Inference-Header-Content-Length is 5000"),
        "{err}"
    );
    let err = http
        .call(
            "POST",
            "/v2/models/b/infer",
            &[("Content-Encoding", "gzip".into())],
            good.to_string().as_bytes(),
        )
        .await
        .error(415);
    assert!(err.contains("uncompressed"), "{err}");
    // Over --max-message-bytes (64 KiB here): 413.
    let err = http
        .call("POST", "/v2/models/b/infer", &[], &vec![b' '; 70 * 1024])
        .await
        .error(413);
    assert!(err.contains("--max-message-bytes"), "{err}");

    // Unknown models and routes.
    let err = http
        .post("/v2/models/nope/infer", good.clone())
        .await
        .error(404);
    assert!(err.contains("load it first"), "{err}");
    let err = http
        .post("/v2/repository/models/nope/load", json!({}))
        .await
        .error(404);
    assert!(err.contains("nope"), "{err}");
    let err = http
        .post(
            "/v2/repository/models/b/load",
            json!({"parameters": {"max_batch": 9}}),
        )
        .await
        .error(400);
    assert!(err.contains("known: version, alias"), "{err}");
    let err = http.get("/v3/anything").await.error(404);
    assert!(err.contains("/v2"), "{err}");

    // The failures were counted for the model, and it still answers.
    let stats = http.get("/v2/models/b/stats").await.json();
    assert!(
        stats["model_stats"][0]["inference_stats"]["fail"]["count"]
            .as_u64()
            .unwrap()
            >= 15,
        "{stats}"
    );
    assert_eq!(http.post("/v2/models/b/infer", good).await.status, 200);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_needs_a_reader_and_loading_a_writer() {
    let (sb, http) = sandbox(|c| c.server.auth_tokens = "r:reader,w:writer".parse().unwrap()).await;
    let f = fixture("logreg");
    upload(&sb, "auth", &f.onnx).await;
    let as_ = |token| Http {
        token: Some(token),
        ..http.clone()
    };
    // Health stays open.
    assert_eq!(http.get("/v2/health/live").await.status, 200);
    assert_eq!(http.get("/v2/health/ready").await.status, 200);
    let a = http.get("/v2").await;
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    assert!(a.error(401).contains("missing bearer token"));
    assert!(as_("nobody")
        .get("/v2")
        .await
        .error(401)
        .contains("unknown bearer token"));
    assert_eq!(as_("r").get("/v2").await.status, 200);
    let err = as_("r")
        .post("/v2/repository/models/auth/load", json!({}))
        .await
        .error(403);
    assert!(
        err.contains("needs the writer role; this token has the reader role"),
        "{err}"
    );
    assert_eq!(
        as_("w")
            .post("/v2/repository/models/auth/load", json!({}))
            .await
            .status,
        200
    );
    let a = as_("r")
        .post("/v2/models/auth/infer", logreg_json(&f, 1))
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    http.post("/v2/models/auth/infer", logreg_json(&f, 1))
        .await
        .error(401);
    let err = as_("r")
        .post("/v2/repository/models/auth/unload", json!({}))
        .await
        .error(403);
    assert!(err.contains("writer"), "{err}");
    assert_eq!(
        as_("w")
            .post("/v2/repository/models/auth/unload", json!({}))
            .await
            .status,
        200
    );
    sb.stop().await.unwrap();
}
