{{/*
Names and labels shared by every template. Every define is prefixed "lime-task." so
that it cannot collide with a parent chart's helpers.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "lime-task.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: "<release>-<chart>", or just the release name when it
already contains the chart name. Cut to 63 characters because some names become labels.
*/}}
{{- define "lime-task.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "lime-task.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "lime-task.labels" -}}
helm.sh/chart: {{ include "lime-task.chart" . }}
{{ include "lime-task.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lime-task
{{- end }}

{{/* Labels that select the operator pod: they must never change between upgrades. */}}
{{- define "lime-task.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lime-task.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "lime-task.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lime-task.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The task pods' ServiceAccount name. */}}
{{- define "lime-task.taskServiceAccountName" -}}
{{- default (printf "%s-task" (include "lime-task.fullname" .)) .Values.taskServiceAccount.name }}
{{- end }}

{{/* The Secret that holds the broker URL: the user's or the chart's. Empty: no broker. */}}
{{- define "lime-task.brokerSecretName" -}}
{{- if .Values.broker.existingSecret }}
{{- .Values.broker.existingSecret }}
{{- else if .Values.broker.url }}
{{- printf "%s-broker" (include "lime-task.fullname" .) }}
{{- end }}
{{- end }}

{{/* The key of the URL in that Secret. */}}
{{- define "lime-task.brokerSecretKey" -}}
{{- if .Values.broker.existingSecret }}
{{- .Values.broker.existingSecretKey }}
{{- else }}
{{- "url" }}
{{- end }}
{{- end }}

{{/* The operator image reference. */}}
{{- define "lime-task.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Checks that span several values, which values.schema.json cannot express. Included by
the Deployment so that `helm template`, `helm lint` and `helm install` all fail early.
*/}}
{{- define "lime-task.validate" -}}
{{- if and .Values.broker.url .Values.broker.existingSecret }}
{{- fail "broker.url and broker.existingSecret are exclusive: give the URL itself or the Secret that holds it, not both" }}
{{- end }}
{{- if and .Values.broker.existingSecret (not .Values.broker.existingSecretKey) }}
{{- fail "broker.existingSecretKey must name the key of the URL in broker.existingSecret" }}
{{- end }}
{{- end }}

{{/*
The operator's rules on LimeTasks, their Jobs and pods, shared by the ClusterRole and
each namespaced Role. Kept to what the operator does: it reads and patches tasks,
deletes them after their TTL, writes their status, creates and follows one Job per task
(deleting it when a task is cancelled before the garbage collector does), reads the
Job's pod for its termination message and a failed attempt's log tail (pods/log), and
posts Kubernetes events (kopf does too).
*/}}
{{- define "lime-task.operatorRules" -}}
- apiGroups: ["limetask.dev"]
  resources: ["limetasks"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["limetask.dev"]
  resources: ["limetasks/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
