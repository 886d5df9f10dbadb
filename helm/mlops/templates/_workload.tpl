{{/*
The resources of one service, rendered from its values block alone.
templates/services.yaml includes each of these for every service with the
context (dict "root" $ "service" "<name>"); each renders nothing when the
service, or that kind of object, is off. A service's API port is named grpc, or
http for a block that sets service.httpPort instead of service.grpcPort
(mlops.apiPortName). A gRPC service may also serve HTTP on a second port
(service.extraHttpPort, named http: the inference service's /v2 REST API beside
its gRPC API).
*/}}

{{/* Deployment. */}}
{{- define "mlops.deployment" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if $v.enabled -}}
{{- include "mlops.validate" . -}}
{{- $root := .root -}}
{{- $uses := default (list) $v.uses -}}
{{- /* SQLite and the local artifact directory live there; a service that keeps neither (the MLflow gateway) has no data volume. */ -}}
{{- $data := or (has "database" $uses) (has "artifacts" $uses) -}}
{{- /* A service that runs Jobs (runner.kind kubernetes, see mlops.jobRunner) reads its Job template from a ConfigMap and calls the API with its service account's token; a change of the template restarts its pods. */ -}}
{{- $jobs := include "mlops.jobRunner" . -}}
{{- $podAnnotations := deepCopy (default (dict) $v.podAnnotations) -}}
{{- if $jobs -}}
{{- $_ := set $podAnnotations "checksum/job-template" (include "mlops.jobTemplate" . | sha256sum) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mlops.serviceFullname" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "mlops.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "mlops.labels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "mlops.serviceAccountName" $root }}
      {{- /* Only a pod that calls the Kubernetes API (a Job runner) gets the service account's token. */}}
      automountServiceAccountToken: {{ if $jobs }}true{{ else }}false{{ end }}
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.global.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .service }}
          image: {{ include "mlops.image" . | quote }}
          imagePullPolicy: {{ include "mlops.imagePullPolicy" . }}
          command: [{{ printf "mlops-%s" .service | quote }}]
          {{- with $v.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: {{ include "mlops.apiPortName" . }}
              containerPort: {{ include "mlops.apiPort" . }}
              protocol: TCP
            {{- with $v.service.extraHttpPort }}
            - name: http
              containerPort: {{ . }}
              protocol: TCP
            {{- end }}
            - name: admin
              containerPort: {{ $v.service.adminPort }}
              protocol: TCP
          env:
            {{- include "mlops.env" . | trim | nindent 12 }}
          {{- with $v.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ int $v.preStopSleepSeconds | toString | quote }}]
          {{- end }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $root.Values.global.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            {{- if $data }}
            # SQLite and the local artifact directory when no database or S3 is set.
            - name: data
              mountPath: /var/lib/mlops/data
            {{- end }}
            - name: tmp
              mountPath: /tmp
            {{- if $jobs }}
            # The Job template (runner.jobTemplate, else files/{{ .service }}-job.yaml).
            - name: job-template
              mountPath: {{ include "mlops.jobTemplatePath" . }}
              subPath: {{ printf "%s-job.yaml" .service }}
              readOnly: true
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- if $data }}
        - name: data
          emptyDir: {}
        {{- end }}
        - name: tmp
          emptyDir: {}
        {{- if $jobs }}
        - name: job-template
          configMap:
            name: {{ include "mlops.jobTemplateName" . }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
{{- end -}}

{{/* Service: the API port (grpc, or http), the extra HTTP port if any, and the admin port. */}}
{{- define "mlops.service" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if $v.enabled -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "mlops.serviceFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "mlops.selectorLabels" . | nindent 4 }}
  ports:
    {{- $api := include "mlops.apiPortName" . }}
    - name: {{ $api }}
      port: {{ include "mlops.apiPort" . }}
      targetPort: {{ $api }}
      protocol: TCP
      appProtocol: {{ $api }}
    {{- with $v.service.extraHttpPort }}
    - name: http
      port: {{ . }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- end }}
    - name: admin
      port: {{ $v.service.adminPort }}
      targetPort: admin
      protocol: TCP
      appProtocol: http
{{- end -}}
{{- end -}}

{{/* ServiceMonitor scraping the admin port; the job label is mlops-<service>, as in deploy/prometheus. */}}
{{- define "mlops.serviceMonitor" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $sm := .root.Values.metrics.serviceMonitor -}}
{{- if and $v.enabled $sm.enabled -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "mlops.serviceFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "mlops.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: admin
      path: /metrics
      {{- with $sm.interval }}
      interval: {{ . }}
      {{- end }}
      {{- with $sm.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
      relabelings:
        - action: replace
          targetLabel: job
          replacement: {{ include "mlops.job" . }}
{{- end -}}
{{- end -}}

{{/* PrometheusRule: the service's group (mlops-<service>) of rules/alerts.yml. */}}
{{- define "mlops.prometheusRule" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $pr := .root.Values.metrics.prometheusRule -}}
{{- if and $v.enabled $pr.enabled -}}
{{- $file := .root.Files.Get "rules/alerts.yml" | fromYaml -}}
{{- $name := include "mlops.job" . -}}
{{- $groups := list -}}
{{- range $file.groups -}}
{{- if eq .name $name -}}
{{- $groups = append $groups . -}}
{{- end -}}
{{- end -}}
{{- if not $groups -}}
{{- fail (printf "rules/alerts.yml has no group named %s" $name) -}}
{{- end -}}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "mlops.serviceFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
    {{- with $pr.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  groups:
    {{- toYaml $groups | nindent 4 }}
{{- end -}}
{{- end -}}

{{/* ConfigMap with the service's Grafana dashboard (dashboards/<service>.json) for the Grafana sidecar. */}}
{{- define "mlops.dashboard" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- $d := .root.Values.dashboards -}}
{{- if and $v.enabled $d.enabled -}}
{{- $path := printf "dashboards/%s.json" .service -}}
{{- $json := .root.Files.Get $path -}}
{{- if not $json -}}
{{- fail (printf "the chart has no %s" $path) -}}
{{- end -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s-dashboard" (include "mlops.serviceFullname" .) | trunc 63 | trimSuffix "-" }}
  namespace: {{ default .root.Release.Namespace $d.namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
    {{ $d.label }}: {{ $d.labelValue | quote }}
  {{- with $d.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  {{ printf "mlops-%s.json" .service }}: |-
    {{- $json | nindent 4 }}
{{- end -}}
{{- end -}}

{{/* HorizontalPodAutoscaler on CPU. */}}
{{- define "mlops.hpa" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if and $v.enabled $v.autoscaling.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mlops.serviceFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mlops.serviceFullname" . }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}
{{- end -}}

{{/* PodDisruptionBudget. */}}
{{- define "mlops.pdb" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if and $v.enabled $v.podDisruptionBudget.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mlops.serviceFullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "mlops.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{/* ConfigMap with the Job template of a service that runs Jobs (mlops.jobRunner). */}}
{{- define "mlops.jobTemplateConfigMap" -}}
{{- if include "mlops.jobRunner" . -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mlops.jobTemplateName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
data:
  {{ printf "%s-job.yaml" .service }}: |-
    {{- include "mlops.jobTemplate" . | trim | nindent 4 }}
{{- end -}}
{{- end -}}

{{/*
Role in the Jobs' namespace: exactly what the Job runner calls (create, read, delete a
Job; list its pods by job-name; read a pod's log), and list/watch on Jobs to follow them.
*/}}
{{- define "mlops.jobRole" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if and (include "mlops.jobRunner" .) $v.runner.rbac.create -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "mlops.jobRoleName" . }}
  namespace: {{ include "mlops.jobNamespace" . }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
rules:
  - apiGroups: ["batch"]
    resources: ["jobs"]
    verbs: ["create", "get", "list", "watch", "delete"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list"]
  - apiGroups: [""]
    resources: ["pods/log"]
    verbs: ["get"]
{{- end -}}
{{- end -}}

{{/* RoleBinding of that Role to the chart's service account (which the service's pod runs as), in the Jobs' namespace. */}}
{{- define "mlops.jobRoleBinding" -}}
{{- $v := index .root.Values (include "mlops.valuesKey" .) -}}
{{- if and (include "mlops.jobRunner" .) $v.runner.rbac.create -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "mlops.jobRoleName" . }}
  namespace: {{ include "mlops.jobNamespace" . }}
  labels:
    {{- include "mlops.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "mlops.jobRoleName" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "mlops.serviceAccountName" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}
{{- end -}}
