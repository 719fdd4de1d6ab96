{{/*
The operator's rules for LimeTaskSchedules (#15), included by clusterrole.yaml and
role.yaml beside lime-task.operatorRules: it watches schedules and writes their status,
creates one LimeTask per due time (and deletes a schedule's finished tasks beyond its
history limits, which the limetasks `delete` in operatorRules already allows).
*/}}
{{- define "lime-task.scheduleRules" -}}
- apiGroups: ["limetask.dev"]
  resources: ["limetaskschedules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["limetask.dev"]
  resources: ["limetaskschedules/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["limetask.dev"]
  resources: ["limetasks"]
  verbs: ["create"]
{{- end }}
