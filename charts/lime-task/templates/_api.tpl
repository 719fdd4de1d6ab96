{{/*
Names and labels of the optional HTTP API (api.enabled, docs/http-api.md). Its pods get
their own app.kubernetes.io/name ("<name>-api"), so that neither the operator's
Deployment selector nor its metrics Service ever matches them.
*/}}
{{- define "lime-task.api.fullname" -}}
{{- printf "%s-api" (include "lime-task.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The namespace whose LimeTasks the API serves. */}}
{{- define "lime-task.api.namespace" -}}
{{- default .Release.Namespace .Values.api.namespace }}
{{- end }}

{{- define "lime-task.api.serviceAccountName" -}}
{{- default (include "lime-task.api.fullname" .) .Values.api.serviceAccount.name }}
{{- end }}

{{- define "lime-task.api.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-api" (include "lime-task.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lime-task.api.labels" -}}
helm.sh/chart: {{ include "lime-task.chart" . }}
{{ include "lime-task.api.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lime-task
app.kubernetes.io/component: api
{{- end }}

{{- define "lime-task.api.image" -}}
{{- printf "%s:%s" .Values.api.image.repository (default .Chart.AppVersion .Values.api.image.tag) }}
{{- end }}

{{/* The API's configuration file (lime_task_api.settings), from the api values. */}}
{{- define "lime-task.api.config" -}}
namespace: {{ include "lime-task.api.namespace" . }}
audiences: {{ .Values.api.audiences | toJson }}
identities: {{ .Values.api.identities | toJson }}
apiKeys: {{ .Values.api.apiKeys | toJson }}
tokenCacheSeconds: {{ .Values.api.tokenCacheSeconds }}
maxWaitSeconds: {{ .Values.api.maxWaitSeconds }}
maxBodyBytes: {{ .Values.api.maxBodyBytes }}
{{- end }}
