{{/*
Names. The chart's own objects are labelled app.kubernetes.io/name=kube-transport-operator:
`app.kubernetes.io/name=kube-transport` belongs to the objects the operator makes for a
TransportService (its transport pods, volumes, Services), and scripts select those by it.
*/}}
{{- define "kube-transport.name" -}}
{{- default "kube-transport-operator" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-transport.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kube-transport.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-transport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-transport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-transport.labels" -}}
helm.sh/chart: {{ include "kube-transport.chart" . }}
{{ include "kube-transport.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-transport
{{- end }}

{{- define "kube-transport.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-transport.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* `repository@digest`, else `repository:tag` with the appVersion as the default tag. */}}
{{- define "kube-transport.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "kube-transport.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/* The Secret (release namespace) holding the key the admin tokens are derived from. */}}
{{- define "kube-transport.tokenKeySecret" -}}
{{- printf "%s-token-key" (include "kube-transport.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-transport.leaseName" -}}
{{- default (include "kube-transport.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Where the custom resources the chart creates (defaults, helm test) live. */}}
{{- define "kube-transport.workNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches. Each verb is there because the
operator makes that call; nothing is `*`.
*/}}
{{- define "kube-transport.namespacedRules" -}}
# Every rule below is used by the operator (the e2e suite compares what the API server's
# audit log shows it asking for with these rules, in both directions).
# The three kinds it reconciles: read and watch; it never writes their spec.
- apiGroups: ["kubetransport.io"]
  resources: ["transportservices", "transportconfigs"]
  verbs: ["get", "list", "watch"]
# patch: the operator's finalizer on each ServerComponentState (it withdraws the wish on deletion).
- apiGroups: ["kubetransport.io"]
  resources: ["servercomponentstates"]
  verbs: ["list", "watch", "patch"]
# Status is written with server-side apply (PATCH).
- apiGroups: ["kubetransport.io"]
  resources: ["transportservices/status", "transportconfigs/status", "servercomponentstates/status"]
  verbs: ["patch"]
# Pods and queue volumes (one per server): server-side apply creates them (patch, and
# create for a new object); a rolling restart and a scale-down delete them.
- apiGroups: [""]
  resources: ["pods", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The rendered configuration and the Services: applied, never deleted (they go with their
# TransportService through their owner reference).
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The admin token Secret `<ts>-admin-token`: written, never read (the token is derived
# from the operator's key), so the operator cannot read any Secret of these namespaces.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Events on every state change (kube-runtime's recorder patches a repeated event).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Nodes are cluster-scoped: the operator watches them to drain servers off a node being drained. */}}
{{- define "kube-transport.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* A duration of values (`90m`, `1h30m`, `2d`) in seconds, for a threshold in PromQL. */}}
{{- define "kube-transport.seconds" -}}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+[smhd]" . -1 }}
{{- $total = add $total (mul (regexFind "^[0-9]+" . | int) (get $units (regexFind "[smhd]$" .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
transportctl on the pod an alert names, for the runbooks (Prometheus fills in the labels
when the alert fires). The pod's admin API wants the token the operator mounted there.
*/}}
{{- define "kube-transport.alertTransportctl" -}}
kubectl -n {{`{{ $labels.namespace }}`}} exec {{`{{ $labels.pod }}`}} -c transport -- transportctl --token-file /etc/kube-transport/admin/token
{{- end }}
