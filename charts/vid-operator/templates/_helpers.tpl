{{/* Chart name, cut to 63 characters (a label value). */}}
{{- define "vid-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name of the operator's objects. */}}
{{- define "vid-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "vid-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vid-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vid-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "vid-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: vid-operator
{{- end }}

{{- define "vid-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vid-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's configuration file (vid_operator.config), from the values. */}}
{{- define "vid-operator.config" -}}
watchNamespaces: {{ toJson .Values.watchNamespaces }}
s3:
  endpointUrl: {{ .Values.s3.endpointUrl | default nil | toJson }}
  region: {{ .Values.s3.region | toJson }}
  bucket: {{ .Values.s3.bucket | toJson }}
  prefix: {{ .Values.s3.prefix | toJson }}
  allowedBuckets: {{ toJson .Values.s3.allowedBuckets }}
  credentialsSecret: {{ .Values.s3.credentialsSecret | default nil | toJson }}
finishedJobs:
  succeededTtlSeconds: {{ .Values.finishedJobs.succeededTtlSeconds | toJson }}
  failedTtlSeconds: {{ .Values.finishedJobs.failedTtlSeconds | toJson }}
artifactRetention:
  policy: {{ .Values.artifactRetention.policy | toJson }}
  image: {{ .Values.artifactRetention.image | toJson }}
  nodeSelector: {{ toJson .Values.artifactRetention.nodeSelector }}
  tolerations: {{ toJson .Values.artifactRetention.tolerations }}
gpu:
  resourceName: {{ .Values.gpu.resourceName | toJson }}
  nodeSelector: {{ toJson .Values.gpu.nodeSelector }}
  tolerations: {{ toJson .Values.gpu.tolerations }}
priorityClasses:
{{- range $level := list "high" "default" "low" }}
  {{ $level }}: {{ if $.Values.priorityClasses.create }}{{ (index $.Values.priorityClasses $level).name | toJson }}{{ else }}null{{ end }}
{{- end }}
queueing:
  maxRunning: {{ .Values.queueing.maxRunning | toJson }}
  maxRunningPerNamespace: {{ .Values.queueing.maxRunningPerNamespace | toJson }}
  kueue:
    enabled: {{ .Values.queueing.kueue.enabled | toJson }}
    defaultQueueName: {{ .Values.queueing.kueue.defaultQueueName | toJson }}
    namespaceQueueNames: {{ toJson .Values.queueing.kueue.namespaceQueueNames }}
    stages: {{ .Values.queueing.kueue.stages | toJson }}
    workloadPriorityClasses:
{{- range $level := list "high" "default" "low" }}
      {{ $level }}: {{ index $.Values.queueing.kueue.workloadPriorityClasses $level | toJson }}
{{- end }}
stages: {{ toJson .Values.stages }}
stageDefaults:
  backoffLimit: {{ .Values.stageDefaults.backoffLimit | toJson }}
  activeDeadlineSeconds: {{ .Values.stageDefaults.activeDeadlineSeconds | toJson }}
  pendingTimeoutSeconds: {{ .Values.stageDefaults.pendingTimeoutSeconds | toJson }}
  imagePullTimeoutSeconds: {{ .Values.stageDefaults.imagePullTimeoutSeconds | toJson }}
  terminationGracePeriodSeconds: {{ .Values.stageDefaults.terminationGracePeriodSeconds | toJson }}
  imagePullSecrets: {{ toJson .Values.stageDefaults.imagePullSecrets }}
  podLabels: {{ toJson .Values.stageDefaults.podLabels }}
  podAnnotations: {{ toJson .Values.stageDefaults.podAnnotations }}
overridePolicy:
  allowedFields: {{ toJson .Values.overridePolicy.allowedFields }}
  allowedImages: {{ toJson .Values.overridePolicy.allowedImages }}
  allowedPodAnnotations: {{ toJson .Values.overridePolicy.allowedPodAnnotations }}
stageProgress:
{{- if .Values.stageProgress.enabled }}
  serviceAccountName: {{ .Values.stageProgress.serviceAccountName | toJson }}
  apiServer: {{ .Values.stageProgress.apiServer | default nil | toJson }}
{{- else }}
  serviceAccountName: null
  apiServer: null
{{- end }}
{{- end }}
