{{/*
Shared helpers. templates/services.yaml calls them for each service with a context dict:
  (dict "root" $ "service" "tracking")
where "service" is the service's name as in its binary (mlops-<service>) and its
environment prefix (MLOPS_<SERVICE>_); its values block is the camelCase key
(feature-store -> featureStore). Everything particular to a service is in that
block: which global blocks it reads (`uses`), which services it calls and with
which token (`calls`), its ports, settings and resources.
*/}}

{{/* The chart name. */}}
{{- define "mlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release-based prefix of every resource name. */}}
{{- define "mlops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A service's resource name: <fullname>-<service>. */}}
{{- define "mlops.serviceFullname" -}}
{{- printf "%s-%s" (include "mlops.fullname" .root) .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The key of a service's values block: feature-store -> featureStore. */}}
{{- define "mlops.valuesKey" -}}
{{- .service | replace "-" "_" | camelcase | untitle -}}
{{- end -}}

{{/* The prefix of a service's settings variables: MLOPS_TRACKING_. */}}
{{- define "mlops.envPrefix" -}}
{{- printf "MLOPS_%s_" (.service | upper | replace "-" "_") -}}
{{- end -}}

{{/* The Prometheus job label of a service, the same in Kubernetes and in deploy/compose.yaml. */}}
{{- define "mlops.job" -}}
{{- printf "mlops-%s" .service -}}
{{- end -}}

{{/*
The names of the chart's services, as a JSON list: every top-level block of the
values with a `replicaCount` and a `service` (the shape of definitions/service
in values.schema.json), in the order of their keys, each as its service name
(featureStore -> feature-store). The templates loop over this list, so a new
service is a new block in values.yaml.
*/}}
{{- define "mlops.services" -}}
{{- $names := list -}}
{{- range $key, $v := .Values -}}
{{- if and (kindIs "map" $v) (hasKey $v "replicaCount") (hasKey $v "service") -}}
{{- $names = append $names (kebabcase $key) -}}
{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* The address of a service's release Service, as the other services call it: http://<fullname>-<service>.<namespace>.svc:<API port>. */}}
{{- define "mlops.serviceAddr" -}}
{{- printf "http://%s.%s.svc:%s" (include "mlops.serviceFullname" .) .root.Release.Namespace (include "mlops.apiPort" .) -}}
{{- end -}}

{{/* The setting that carries the address of a callee: tracking -> tracking_addr (MLOPS_<CALLER>_TRACKING_ADDR). */}}
{{- define "mlops.addrSetting" -}}
{{- printf "%s_addr" (.callee | replace "-" "_") -}}
{{- end -}}

{{/*
Where a service reaches one of its callees ("callee"): the `<callee>_addr` of
its env if set, else the release's Service when the callee is enabled, else
"the address in extraEnv". For NOTES.txt.
*/}}
{{- define "mlops.calleeAddrText" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $setting := include "mlops.addrSetting" . -}}
{{- $cv := index .root.Values (include "mlops.valuesKey" (dict "service" .callee)) -}}
{{- if hasKey $v.env $setting -}}
{{- index $v.env $setting -}}
{{- else if $cv.enabled -}}
{{- include "mlops.serviceAddr" (dict "root" .root "service" .callee) -}}
{{- else -}}
the address in extraEnv
{{- end -}}
{{- end -}}

{{/*
A service's API port: `grpc` for a service whose block sets service.grpcPort
(tracking, registry), `http` for one that sets service.httpPort (the MLflow
gateway). The name is the container port's and the Service port's.
*/}}
{{- define "mlops.apiPortName" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if hasKey $v.service "httpPort" -}}http{{- else -}}grpc{{- end -}}
{{- end -}}

{{/* The number of a service's API port (service.grpcPort or service.httpPort). */}}
{{- define "mlops.apiPort" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if hasKey $v.service "httpPort" -}}{{ int $v.service.httpPort }}{{- else -}}{{ int $v.service.grpcPort }}{{- end -}}
{{- end -}}

{{/* The chart label value. */}}
{{- define "mlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a service: stable across upgrades. */}}
{{- define "mlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{/* Labels of every resource of a service. */}}
{{- define "mlops.labels" -}}
helm.sh/chart: {{ include "mlops.chart" .root }}
{{ include "mlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: mlops
{{- end -}}

{{/* Labels of resources that belong to no single service. */}}
{{- define "mlops.commonLabels" -}}
helm.sh/chart: {{ include "mlops.chart" . }}
app.kubernetes.io/name: {{ include "mlops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops
{{- end -}}

{{/* The ServiceAccount the services run as. */}}
{{- define "mlops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mlops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A service's image reference: its own override, else global.image; the tag defaults to appVersion. */}}
{{- define "mlops.image" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $g := .root.Values.global.image -}}
{{- $repo := default $g.repository $v.image.repository -}}
{{- $tag := default (default .root.Chart.AppVersion $g.tag) $v.image.tag | toString -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* A service's image pull policy. */}}
{{- define "mlops.imagePullPolicy" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- default .root.Values.global.image.pullPolicy $v.image.pullPolicy -}}
{{- end -}}

{{/* A value as an environment string; Helm reads YAML integers as floats, so 16777216 must not become 1.6777216e+07. */}}
{{- define "mlops.envString" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . | toString -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
The environment of a service's container, as a YAML list. In order of
precedence, lowest first: what the chart derives from the global blocks, the
service's ports (<PREFIX>LISTEN_ADDR, <PREFIX>ADMIN_ADDR, and <PREFIX>HTTP_ADDR
for a service.extraHttpPort) and its `calls`, the service's `env` settings, its `extraEnv` entries; a later
entry replaces an earlier one of the same name, so no variable appears twice.
The block's `uses` names the global blocks the service reads: database, bus,
artifacts, auth; its `artifactsSubpath`, if set, is appended to artifacts.root
for this service, so that services sharing one store keep apart (the registry:
<root>/models). Each entry of its `calls` ({service, tokenSetting, tokenSecret})
gives <PREFIX><CALLEE>_ADDR, the release's Service of the callee when that one
is enabled, and, with auth on, <PREFIX><TOKENSETTING> from the entry's
tokenSecret, by default auth.serviceToken (whose Secret defaults to
auth.existingSecret).
*/}}
{{- define "mlops.env" -}}
{{- $root := .root -}}
{{- $v := index $root.Values (include "mlops.valuesKey" .) -}}
{{- $p := include "mlops.envPrefix" . -}}
{{- $uses := default (list) $v.uses -}}
{{- $env := dict -}}
{{- $_ := set $env "RUST_LOG" (dict "name" "RUST_LOG" "value" $root.Values.global.log.level) -}}
{{- $_ := set $env "MLOPS_LOG_FORMAT" (dict "name" "MLOPS_LOG_FORMAT" "value" $root.Values.global.log.format) -}}
{{- with $root.Values.global.otlpEndpoint -}}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" .) -}}
{{- end -}}
{{- $n := printf "%sLISTEN_ADDR" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" (printf "0.0.0.0:%s" (include "mlops.apiPort" .))) -}}
{{- $n = printf "%sADMIN_ADDR" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" (printf "0.0.0.0:%d" (int $v.service.adminPort))) -}}
{{- with $v.service.extraHttpPort -}}
{{- $n = printf "%sHTTP_ADDR" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" (printf "0.0.0.0:%d" (int .))) -}}
{{- end -}}
{{- if has "database" $uses -}}
{{- $db := $root.Values.database -}}
{{- $n = printf "%sDATABASE_URL" $p -}}
{{- if $db.existingSecret -}}
{{- $_ := set $env $n (dict "name" $n "valueFrom" (dict "secretKeyRef" (dict "name" $db.existingSecret "key" $db.existingSecretKey))) -}}
{{- else if $db.url -}}
{{- $_ := set $env $n (dict "name" $n "value" $db.url) -}}
{{- end -}}
{{- end -}}
{{- if has "bus" $uses -}}
{{- $n = printf "%sBUS" $p -}}
{{- if $root.Values.kafka.brokers -}}
{{- $_ := set $env $n (dict "name" $n "value" "kafka") -}}
{{- $n = printf "%sKAFKA_BROKERS" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" $root.Values.kafka.brokers) -}}
{{- else -}}
{{- $_ := set $env $n (dict "name" $n "value" "in-process") -}}
{{- end -}}
{{- end -}}
{{- if has "artifacts" $uses -}}
{{- $a := $root.Values.artifacts -}}
{{- with $a.root -}}
{{- $n = printf "%sARTIFACT_ROOT" $p -}}
{{- $artifactRoot := . -}}
{{- with $v.artifactsSubpath -}}
{{- $artifactRoot = printf "%s/%s" (trimSuffix "/" $artifactRoot) . -}}
{{- end -}}
{{- $_ := set $env $n (dict "name" $n "value" $artifactRoot) -}}
{{- end -}}
{{- with $a.s3.existingSecret -}}
{{- $_ := set $env "AWS_ACCESS_KEY_ID" (dict "name" "AWS_ACCESS_KEY_ID" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $a.s3.accessKeyIdKey))) -}}
{{- $_ := set $env "AWS_SECRET_ACCESS_KEY" (dict "name" "AWS_SECRET_ACCESS_KEY" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" $a.s3.secretAccessKeyKey))) -}}
{{- end -}}
{{- with $a.s3.region -}}
{{- $_ := set $env "AWS_REGION" (dict "name" "AWS_REGION" "value" .) -}}
{{- end -}}
{{- with $a.s3.endpoint -}}
{{- $_ := set $env "AWS_ENDPOINT" (dict "name" "AWS_ENDPOINT" "value" .) -}}
{{- if hasPrefix "http://" . -}}
{{- /* object_store refuses plain HTTP unless told; an http:// endpoint (e.g. MinIO in the cluster) says so. */ -}}
{{- $_ := set $env "AWS_ALLOW_HTTP" (dict "name" "AWS_ALLOW_HTTP" "value" "true") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (has "auth" $uses) $root.Values.auth.existingSecret -}}
{{- $n = printf "%sAUTH_TOKENS" $p -}}
{{- $_ := set $env $n (dict "name" $n "valueFrom" (dict "secretKeyRef" (dict "name" $root.Values.auth.existingSecret "key" $root.Values.auth.existingSecretKey))) -}}
{{- end -}}
{{- /* Each callee: the release's Service when it is enabled (else env or extraEnv says where), and the token to send it. */ -}}
{{- range $c := $v.calls -}}
{{- $cctx := dict "root" $root "service" $c.service -}}
{{- if (index $root.Values (include "mlops.valuesKey" $cctx)).enabled -}}
{{- $n = printf "%s%s" $p (include "mlops.addrSetting" (dict "callee" $c.service) | upper) -}}
{{- $_ := set $env $n (dict "name" $n "value" (include "mlops.serviceAddr" $cctx)) -}}
{{- end -}}
{{- if and $c.tokenSetting $root.Values.auth.existingSecret -}}
{{- $st := $root.Values.auth.serviceToken -}}
{{- $ts := default (dict) $c.tokenSecret -}}
{{- $secret := default (default $root.Values.auth.existingSecret $st.existingSecret) $ts.existingSecret -}}
{{- $key := default $st.existingSecretKey $ts.existingSecretKey -}}
{{- $n = printf "%s%s" $p (upper $c.tokenSetting) -}}
{{- $_ := set $env $n (dict "name" $n "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" $key))) -}}
{{- end -}}
{{- end -}}
{{- /* A service that runs Jobs (runner.kind kubernetes): the runner, its template's path, and the namespace and default image when set. */ -}}
{{- if include "mlops.jobRunner" . -}}
{{- $r := $v.runner -}}
{{- $n = printf "%sRUNNER" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" "kubernetes") -}}
{{- $n = printf "%sKUBERNETES_JOB_TEMPLATE" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" (include "mlops.jobTemplatePath" .)) -}}
{{- if $r.namespace -}}
{{- $n = printf "%sKUBERNETES_NAMESPACE" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" $r.namespace) -}}
{{- end -}}
{{- if $r.defaultImage -}}
{{- $n = printf "%sKUBERNETES_DEFAULT_IMAGE" $p -}}
{{- $_ := set $env $n (dict "name" $n "value" $r.defaultImage) -}}
{{- end -}}
{{- end -}}
{{- range $k, $val := $v.env -}}
{{- $n = printf "%s%s" $p (upper $k) -}}
{{- $_ := set $env $n (dict "name" $n "value" (include "mlops.envString" $val)) -}}
{{- end -}}
{{- range $v.extraEnv -}}
{{- $_ := set $env .name . -}}
{{- end -}}
{{- range $k := keys $env | sortAlpha }}
- {{ index $env $k | toYaml | nindent 2 | trim }}
{{- end -}}
{{- end -}}

{{/*
Refuses values that would install something broken, with a message saying what
to set instead. Called by each service's Deployment.
*/}}
{{- define "mlops.validate" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $key := include "mlops.valuesKey" . -}}
{{- $db := .root.Values.database -}}
{{- $uses := default (list) $v.uses -}}
{{- if and $db.url $db.existingSecret -}}
{{- fail "database: set either url or existingSecret, not both" -}}
{{- end -}}
{{- $many := or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled -}}
{{- if and $many (has "database" $uses) (not $db.existingSecret) (or (not $db.url) (hasPrefix "sqlite" $db.url)) -}}
{{- fail (printf "%s: more than one replica needs a shared database (database.existingSecret naming a Secret with a postgres:// URL); SQLite lives inside one pod" $key) -}}
{{- end -}}
{{- if and $many (has "artifacts" $uses) (not (hasPrefix "s3://" (toString .root.Values.artifacts.root))) -}}
{{- fail (printf "%s: more than one replica needs a shared artifact store (artifacts.root: s3://bucket/prefix); a local directory lives inside one pod" $key) -}}
{{- end -}}
{{- /* A block with a runner says where its work runs there, not in env: the ConfigMap, the mount and the RBAC go with runner.kind. */ -}}
{{- if kindIs "map" $v.runner -}}
{{- range $setting := list "runner" "kubernetes_job_template" "kubernetes_namespace" "kubernetes_default_image" -}}
{{- if hasKey $v.env $setting -}}
{{- fail (printf "%s.env.%s: set %s.runner (kind, namespace, defaultImage, jobTemplate) instead; the chart derives the settings, the Job template's ConfigMap and the RBAC from it" $key $setting $key) -}}
{{- end -}}
{{- end -}}
{{- if include "mlops.jobRunner" . -}}
{{- $_ := include "mlops.jobTemplate" . -}}
{{- end -}}
{{- end -}}
{{- /* Each callee must be a service of the chart, and the caller needs its address: the release's Service, or one in env/extraEnv. */ -}}
{{- $prefix := include "mlops.envPrefix" . -}}
{{- $tokens := dict -}}
{{- range $c := $v.calls -}}
{{- $callee := $c.service -}}
{{- $cv := index $.root.Values (include "mlops.valuesKey" (dict "service" $callee)) -}}
{{- if not (and (kindIs "map" $cv) (hasKey $cv "service")) -}}
{{- fail (printf "%s.calls names %s, which is no service of this chart (one of %s)" $key $callee (include "mlops.services" $.root | fromJsonArray | join ", ")) -}}
{{- end -}}
{{- if not $cv.enabled -}}
{{- $setting := include "mlops.addrSetting" (dict "callee" $callee) -}}
{{- $envName := printf "%s%s" $prefix (upper $setting) -}}
{{- $set := hasKey $v.env $setting -}}
{{- range $v.extraEnv -}}
{{- if eq .name $envName -}}
{{- $set = true -}}
{{- end -}}
{{- end -}}
{{- if not $set -}}
{{- fail (printf "%s calls the %s service: enable %s, point %s.env.%s at one (http://HOST:PORT), or switch %s off (%s.enabled=false)" $key $callee $callee $key $setting $key $key) -}}
{{- end -}}
{{- end -}}
{{- with $c.tokenSetting -}}
{{- if hasKey $v.env . -}}
{{- fail (printf "%s.env.%s is the token %s sends to %s: it comes from a Secret (calls[].tokenSecret, else auth.serviceToken), not from env" $key . $key $callee) -}}
{{- end -}}
{{- $secret := toJson (default (dict) $c.tokenSecret) -}}
{{- if and (hasKey $tokens .) (ne (get $tokens .) $secret) -}}
{{- fail (printf "%s.calls: two calls send their token in %s from different Secrets; give them different tokenSettings" $key .) -}}
{{- end -}}
{{- $_ := set $tokens . $secret -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Services that run work as Kubernetes Jobs (the retraining service's trainers). A
service block with a `runner` sub-block ({kind, namespace, defaultImage,
jobTemplate, rbac}) whose kind is `kubernetes` gets, beside its Deployment: a
ConfigMap <fullname>-<service>-job holding its Job template (runner.jobTemplate, else
the chart's files/<service>-job.yaml), mounted read-only at
/etc/mlops/<service>-job.yaml; <PREFIX>RUNNER=kubernetes,
<PREFIX>KUBERNETES_JOB_TEMPLATE, and <PREFIX>KUBERNETES_NAMESPACE /
<PREFIX>KUBERNETES_DEFAULT_IMAGE when set; the service account's token in its pod
(automountServiceAccountToken: true, for that pod only); and, with runner.rbac.create,
a Role and RoleBinding in the Jobs' namespace (runner.namespace, else the release's)
letting the chart's service account create, read, list, watch and delete Jobs, read
and list their pods, and read the pods' logs. Kind `local` (the default), or a block
without `runner`: none of this.
*/}}

{{/* "true" when the service runs Jobs (runner.kind kubernetes), else empty. */}}
{{- define "mlops.jobRunner" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if and $v.enabled (kindIs "map" $v.runner) (eq (toString $v.runner.kind) "kubernetes") -}}true{{- end -}}
{{- end -}}

{{/* Where the service's container reads its Job template: /etc/mlops/<service>-job.yaml. */}}
{{- define "mlops.jobTemplatePath" -}}
{{- printf "/etc/mlops/%s-job.yaml" .service -}}
{{- end -}}

{{/* The name of the ConfigMap holding the Job template: <fullname>-<service>-job. */}}
{{- define "mlops.jobTemplateName" -}}
{{- printf "%s-job" (include "mlops.serviceFullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of the Role and RoleBinding for the service's Jobs: <fullname>-<service>-jobs. */}}
{{- define "mlops.jobRoleName" -}}
{{- printf "%s-jobs" (include "mlops.serviceFullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The namespace the service's Jobs go in: runner.namespace, else the release's. */}}
{{- define "mlops.jobNamespace" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- default .root.Release.Namespace $v.runner.namespace -}}
{{- end -}}

{{/*
The Job template's text: runner.jobTemplate if set, else files/<service>-job.yaml.
Refused unless it is a batch Job whose spec.template.spec.containers has the trainer
first, as the service checks at start.
*/}}
{{- define "mlops.jobTemplate" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $key := include "mlops.valuesKey" . -}}
{{- $file := printf "files/%s-job.yaml" .service -}}
{{- $text := $v.runner.jobTemplate -}}
{{- $from := printf "%s.runner.jobTemplate" $key -}}
{{- if not $text -}}
{{- $text = .root.Files.Get $file -}}
{{- $from = printf "the chart's %s" $file -}}
{{- if not $text -}}
{{- fail (printf "%s.runner.kind is kubernetes, but the chart has no %s: set %s.runner.jobTemplate" $key $file $key) -}}
{{- end -}}
{{- end -}}
{{- $job := fromYaml $text -}}
{{- if hasKey $job "Error" -}}
{{- fail (printf "%s is not YAML: %s" $from $job.Error) -}}
{{- end -}}
{{- if not (and (eq (toString $job.kind) "Job") (hasPrefix "batch/" (toString $job.apiVersion))) -}}
{{- fail (printf "%s must be a Job manifest (apiVersion: batch/v1, kind: Job)" $from) -}}
{{- end -}}
{{- $containers := list -}}
{{- with $job.spec }}{{ with .template }}{{ with .spec }}{{ $containers = default (list) .containers }}{{ end }}{{ end }}{{ end -}}
{{- if not (and (kindIs "slice" $containers) (gt (len $containers) 0)) -}}
{{- fail (printf "%s needs spec.template.spec.containers with the trainer's container first" $from) -}}
{{- end -}}
{{- $text -}}
{{- end -}}
