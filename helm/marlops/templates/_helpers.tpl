{{/* Names */}}
{{- define "marlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's name prefix; kept short: InferenceService names become hostnames with suffixes. */}}
{{- define "marlops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 30 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 30 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 30 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "marlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "decision") */}}
{{- define "marlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marlops.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "marlops.labels" -}}
{{ include "marlops.selectorLabels" . }}
app.kubernetes.io/part-of: marlops
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "marlops.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels every pod of the release carries (what the NetworkPolicies select on). */}}
{{- define "marlops.podLabels" -}}
{{ include "marlops.selectorLabels" . }}
app.kubernetes.io/part-of: marlops
{{- end }}

{{/* Instance-wide selector (the default-deny policy). */}}
{{- define "marlops.instanceSelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: marlops
{{- end }}

{{- define "marlops.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* A component's ServiceAccount name: (dict "ctx" $ "sa" .Values.drift.serviceAccount "suffix" "drift") */}}
{{- define "marlops.serviceAccountName" -}}
{{- default (printf "%s-%s" (include "marlops.fullname" .ctx) .suffix) .sa.name }}
{{- end }}

{{- define "marlops.claimName" -}}
{{- default (printf "%s-data" (include "marlops.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* Pod-level fields shared by every pod. */}}
{{- define "marlops.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "marlops.containerSecurity" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/* Environment of every marlops container: MLflow, object storage, writable paths. */}}
{{- define "marlops.env" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ .Values.mlflow.trackingUri | quote }}
{{- with .Values.objectStorage.endpointUrl }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.objectStorage.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
# The root filesystem is read-only: home, caches and the agents' ONNX cache live on /tmp.
- name: HOME
  value: /tmp
- name: MARLOPS_CACHE
  value: /tmp/marlops-cache
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
{{- end }}

{{- define "marlops.envFrom" -}}
- configMapRef:
    name: {{ include "marlops.fullname" . }}-feast
{{- end }}

{{/* Secrets as files (checkov CKV_K8S_35): each Secret is a read-only volume under
/var/run/secrets/marlops/<name>/, one file per key, and the program gets NAME_FILE (the file's path), never
NAME (marlops.secret_files). Mode 0400 (256): kubelet gives the files to the pod's fsGroup and adds group
read (0440 root:<fsGroup>), which is how the non-root container user reads them; no other user can. */}}
{{- define "marlops.secretsDir" -}}/var/run/secrets/marlops{{- end }}

{{/* One Secret volume: (dict "name" VOLUME "secret" NAME "optional" BOOL "keys" LIST) - no keys: every key. */}}
{{- define "marlops.secretVolume" -}}
- name: {{ .name }}
  secret:
    secretName: {{ .secret }}
    defaultMode: 256  # 0400
    {{- if .optional }}
    optional: true
    {{- end }}
    {{- with .keys }}
    items:
      {{- range . }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
    {{- end }}
{{- end }}

{{/* The MLflow and object-storage Secrets (both optional): NAME_FILE for each key the package reads
(marlops.secret_files.LIBRARY_SECRETS), a file that the Secret lacks is skipped. */}}
{{- define "marlops.credentialsEnv" -}}
{{- $dir := include "marlops.secretsDir" . }}
{{- if .Values.mlflow.existingSecret }}
{{- range list "MLFLOW_TRACKING_USERNAME" "MLFLOW_TRACKING_PASSWORD" "MLFLOW_TRACKING_TOKEN" }}
- name: {{ . }}_FILE
  value: {{ $dir }}/mlflow/{{ . }}
{{- end }}
{{- end }}
{{- if .Values.objectStorage.existingSecret }}
{{- range list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" }}
- name: {{ . }}_FILE
  value: {{ $dir }}/object-storage/{{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "marlops.credentialsVolumes" -}}
{{- with .Values.mlflow.existingSecret }}
{{ include "marlops.secretVolume" (dict "name" "mlflow-credentials" "secret" . "optional" true) }}
{{- end }}
{{- with .Values.objectStorage.existingSecret }}
{{ include "marlops.secretVolume" (dict "name" "object-storage-credentials" "secret" . "optional" true) }}
{{- end }}
{{- end }}

{{- define "marlops.credentialsMounts" -}}
{{- if .Values.mlflow.existingSecret }}
- name: mlflow-credentials
  mountPath: {{ include "marlops.secretsDir" . }}/mlflow
  readOnly: true
{{- end }}
{{- if .Values.objectStorage.existingSecret }}
- name: object-storage-credentials
  mountPath: {{ include "marlops.secretsDir" . }}/object-storage
  readOnly: true
{{- end }}
{{- end }}

{{/* The Feast online store URL from a Secret, when one is named: MARLOPS_FEAST_ONLINE_FILE. */}}
{{- define "marlops.feastSecretEnv" -}}
{{- with .Values.feast.onlineStoreSecret.name }}
- name: MARLOPS_FEAST_ONLINE_FILE
  value: {{ include "marlops.secretsDir" $ }}/feast-online/{{ $.Values.feast.onlineStoreSecret.key }}
{{- end }}
{{- end }}

{{- define "marlops.feastSecretVolume" -}}
{{- with .Values.feast.onlineStoreSecret.name }}
{{ include "marlops.secretVolume" (dict "name" "feast-online" "secret" . "keys" (list $.Values.feast.onlineStoreSecret.key)) }}
{{- end }}
{{- end }}

{{- define "marlops.feastSecretMount" -}}
{{- if .Values.feast.onlineStoreSecret.name }}
- name: feast-online
  mountPath: {{ include "marlops.secretsDir" . }}/feast-online
  readOnly: true
{{- end }}
{{- end }}

{{/* The webhook Secret: the HMAC key (and, on the retrain trigger, the receiver's optional credentials). */}}
{{- define "marlops.webhookSecretEnv" -}}
- name: MARLOPS_WEBHOOK_SECRET_FILE
  value: {{ include "marlops.secretsDir" . }}/webhook/{{ .Values.webhook.secretKey }}
{{- end }}

{{/* (dict "ctx" $ "whole" BOOL): whole mounts every key of the Secret, else only the HMAC key. */}}
{{- define "marlops.webhookSecretVolume" -}}
{{- $w := .ctx.Values.webhook }}
{{- $keys := ternary (list) (list $w.secretKey) .whole }}
{{- include "marlops.secretVolume" (dict "name" "webhook-secret" "secret" $w.existingSecret "keys" $keys) }}
{{- end }}

{{- define "marlops.webhookSecretMount" -}}
- name: webhook-secret
  mountPath: {{ include "marlops.secretsDir" . }}/webhook
  readOnly: true
{{- end }}

{{/* Volumes: the /tmp emptyDir, the shared data volume, plus extras. */}}
{{- define "marlops.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "marlops.claimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{/* Mounts: (dict "ctx" $ "data" (list (dict "subPath" "feast" "mountPath" "/var/lib/marlops/feast" "readOnly" false))) */}}
{{- define "marlops.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- range .data }}
- name: data
  mountPath: {{ .mountPath }}
  subPath: {{ .subPath }}
  {{- if .readOnly }}
  readOnly: true
  {{- end }}
{{- end }}
{{- end }}

{{- define "marlops.serviceHost" -}}
{{ .name }}.{{ .ctx.Release.Namespace }}.svc.cluster.local
{{- end }}

{{/* The URL of a predictor: KServe names the predictor Service <isvc>-predictor (port 80). */}}
{{- define "marlops.predictorUrl" -}}
http://{{ include "marlops.fullname" .ctx }}-{{ .isvc }}-predictor.{{ .ctx.Release.Namespace }}.svc.cluster.local
{{- end }}

{{- define "marlops.retrainTriggerUrl" -}}
http://{{ include "marlops.fullname" . }}-retrain-trigger.{{ .Release.Namespace }}.svc.cluster.local:8080{{ .Values.retrainTrigger.path }}
{{- end }}

{{/* HTTP probes of a KServe ModelServer (its V2 health endpoints on the HTTP port). */}}
{{- define "marlops.kserveProbes" -}}
readinessProbe:  # 200 only once the model is loaded (the server listens after loading it)
  httpGet: {path: /v2/health/ready, port: 8080}
  initialDelaySeconds: 5
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
livenessProbe:
  httpGet: {path: /v2/health/live, port: 8080}
  initialDelaySeconds: 60
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* NetworkPolicy helpers: a peer selecting one component, an egress rule from {to, ports}. */}}
{{- define "marlops.peerOf" -}}
podSelector:
  matchLabels:
    {{- include "marlops.selectorLabels" . | nindent 4 }}
{{- end }}
{{- define "marlops.egressRule" -}}
- to:
    {{- toYaml .to | nindent 4 }}
  ports:
    {{- toYaml .ports | nindent 4 }}
{{- end }}

{{/* The pod of a training node or a tuning trial: (dict "ctx" $ "cfg" .Values.training "suffix" "training"
"container" NAME "args" LIST "resources" MAP), optionally "command" LIST and "env" LIST (more variables). cfg is
the values section with serviceAccount, nodeSelector, tolerations and shmSizeLimit; suffix names the
ServiceAccount (<fullname>-<suffix>). */}}
{{- define "marlops.trainingPod" -}}
{{- $t := .cfg -}}
serviceAccountName: {{ include "marlops.serviceAccountName" (dict "ctx" .ctx "sa" $t.serviceAccount "suffix" .suffix) }}
automountServiceAccountToken: false
{{ include "marlops.podSecurity" .ctx }}
{{- with $t.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $t.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .container }}
    image: {{ include "marlops.image" .ctx }}
    imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
    {{- with .command }}
    command:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      {{- include "marlops.env" .ctx | nindent 6 }}
      {{- with include "marlops.feastSecretEnv" .ctx | trim }}{{ . | nindent 6 }}{{ end }}
      {{- with include "marlops.credentialsEnv" .ctx | trim }}{{ . | nindent 6 }}{{ end }}
      - name: PYTHONUNBUFFERED
        value: "1"
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    envFrom:
      {{- include "marlops.envFrom" .ctx | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    {{- include "marlops.containerSecurity" .ctx | nindent 4 }}
    volumeMounts:
      {{- include "marlops.volumeMounts" (dict "ctx" .ctx "data" (list
            (dict "subPath" "runs" "mountPath" "/var/lib/marlops/runs" "readOnly" false)
            (dict "subPath" "feast" "mountPath" "/var/lib/marlops/feast" "readOnly" true))) | nindent 6 }}
      - name: shm
        mountPath: /dev/shm
      {{- with include "marlops.credentialsMounts" .ctx | trim }}{{ . | nindent 6 }}{{ end }}
      {{- with include "marlops.feastSecretMount" .ctx | trim }}{{ . | nindent 6 }}{{ end }}
volumes:
  {{- include "marlops.volumes" .ctx | nindent 2 }}
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $t.shmSizeLimit }}
  {{- with include "marlops.credentialsVolumes" .ctx | trim }}{{ . | nindent 2 }}{{ end }}
  {{- with include "marlops.feastSecretVolume" .ctx | trim }}{{ . | nindent 2 }}{{ end }}
{{- end }}

{{/* The pods of the release's InferenceGraph router (KServe labels them with the graph's name). */}}
{{- define "marlops.routerPeer" -}}
podSelector:
  matchLabels:
    serving.kserve.io/inferencegraph: {{ include "marlops.fullname" . }}-decision-graph
{{- end }}

{{- define "marlops.isvcAnnotations" -}}
serving.kserve.io/deploymentMode: {{ .Values.serving.deploymentMode }}
prometheus.io/scrape: "true"
prometheus.io/port: "8080"
prometheus.io/path: /metrics
{{- end }}

{{/* Env of the serving containers: MLflow, writable paths on /tmp, one OpenMP thread (batch-1 graphs). */}}
{{- define "marlops.servingEnv" -}}
- {name: MLFLOW_TRACKING_URI, value: {{ .Values.mlflow.trackingUri | quote }}}
{{- with .Values.objectStorage.endpointUrl }}
- {name: MLFLOW_S3_ENDPOINT_URL, value: {{ . | quote }}}
{{- end }}
{{- with .Values.objectStorage.region }}
- {name: AWS_DEFAULT_REGION, value: {{ . | quote }}}
{{- end }}
- {name: HOME, value: /tmp}
- {name: MARLOPS_CACHE, value: /tmp/marlops-cache}
- {name: MPLCONFIGDIR, value: /tmp/matplotlib}
- {name: OMP_NUM_THREADS, value: "1"}
{{- end }}

{{/* An agent's predictor pod: (dict "ctx" $ "agent" NAME "cfg" CFG "sa" SA "alias" NAME-or-"") */}}
{{- define "marlops.agentPod" -}}
{{- $ := .ctx -}}
serviceAccountName: {{ .sa }}
automountServiceAccountToken: false
{{ include "marlops.podSecurity" $ }}
{{- with .cfg.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: kserve-container
    image: {{ include "marlops.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    args:
      - serve
      - agent
      - {{ .agent }}
      - --model-uri
      - {{ .cfg.modelUri | quote }}
      - --http-port
      - "8080"
      - --grpc-port
      - "8081"
      {{- with .alias }}
      - --alias
      - {{ . }}
      {{- end }}
    ports:
      - {name: http1, containerPort: 8080, protocol: TCP}
    env:
      {{- include "marlops.servingEnv" $ | nindent 6 }}
      {{- with include "marlops.credentialsEnv" $ | trim }}{{ . | nindent 6 }}{{ end }}
    {{- include "marlops.kserveProbes" $ | nindent 4 }}
    resources:
      {{- toYaml .cfg.resources | nindent 6 }}
    {{- include "marlops.containerSecurity" $ | nindent 4 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      {{- with include "marlops.credentialsMounts" $ | trim }}{{ . | nindent 6 }}{{ end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: {{ $.Values.tmpSizeLimit }}}
  {{- with include "marlops.credentialsVolumes" $ | trim }}{{ . | nindent 2 }}{{ end }}
{{- end }}

{{/* A tuning trial pod's metadata: the release's pod labels (the NetworkPolicies select on them) and no
Istio sidecar (a Job whose pod keeps a sidecar running never completes, so the trial would never end). */}}
{{- define "marlops.trialPodMetadata" -}}
labels:
  {{- include "marlops.podLabels" (dict "ctx" . "component" "tuning") | nindent 2 }}
annotations:
  sidecar.istio.io/inject: "false"
{{- end }}
