{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "retailflow-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "retailflow-operator.fullname" -}}
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

{{- define "retailflow-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "retailflow-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retailflow-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "retailflow-operator.labels" -}}
helm.sh/chart: {{ include "retailflow-operator.chart" . }}
{{ include "retailflow-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: retailflow
{{- end -}}

{{- define "retailflow-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "retailflow-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace served when the operator does not watch the whole cluster. */}}
{{- define "retailflow-operator.watchNamespace" -}}
{{- default .Release.Namespace .Values.watch.namespace -}}
{{- end -}}

{{/* The operator image, built from this repository: in the umbrella, global.retailflow.imageRegistry
(the registry of the images built here) prefixes it, as it prefixes the umbrella's own. */}}
{{- define "retailflow-operator.image" -}}
{{- $registry := dig "retailflow" "imageRegistry" "" (.Values.global | default dict) -}}
{{- $image := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- if $registry -}}
{{- printf "%s/%s" (trimSuffix "/" $registry) $image -}}
{{- else -}}
{{- $image -}}
{{- end -}}
{{- end -}}

{{/* Comma-separated allowed hosts, each rendered with tpl (so the umbrella can name its release's services). */}}
{{- define "retailflow-operator.allowedHosts" -}}
{{- $out := list -}}
{{- range .Values.allowedHosts -}}
{{- $out = append $out (tpl . $) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{- define "retailflow-operator.hmacSecretName" -}}
{{- .Values.hmacKey.existingSecret | default (printf "%s-hmac" (include "retailflow-operator.fullname" .)) -}}
{{- end -}}

{{- define "retailflow-operator.validateValues" -}}
{{- if not (regexMatch "^[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*$" .Values.secretLabel) -}}
{{- fail (printf "retailflow-operator: secretLabel must be key=value, not %q" .Values.secretLabel) -}}
{{- end -}}
{{- if and .Values.watch.allNamespaces .Values.watch.namespace -}}
{{- fail "retailflow-operator: set either watch.allNamespaces=true or watch.namespace, not both" -}}
{{- end -}}
{{- if and .Values.rbac.secretNames .Values.rbac.allSecrets -}}
{{- fail "retailflow-operator: set either rbac.secretNames (the Secrets the operator may read) or rbac.allSecrets=true (every Secret), not both" -}}
{{- end -}}
{{- if and .Values.rbac.create .Values.watch.allNamespaces (not .Values.rbac.secretNames) (not .Values.rbac.allSecrets) -}}
{{- fail "retailflow-operator: watch.allNamespaces=true with rbac.secretNames empty would grant `get` on every Secret of every namespace (kube-system included) through a ClusterRole. List the Secrets your RetailPipelines name in rbac.secretNames (the grant is then those names only, in any namespace), or set rbac.allSecrets=true to accept the cluster-wide grant (the operator still uses only Secrets labelled with secretLabel)" -}}
{{- end -}}
{{- if not (has .Values.logLevel (list "info" "debug" "quiet")) -}}
{{- fail (printf "retailflow-operator: logLevel must be info, debug or quiet, not %q" .Values.logLevel) -}}
{{- end -}}
{{- range $key, $_ := .Values.config -}}
{{- if not (hasPrefix "RETAILFLOW_" $key) -}}
{{- fail (printf "retailflow-operator: config key %q must start with RETAILFLOW_" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in the namespaces it serves: watch RetailPipelines, patch them (kopf's
finalizer and progress annotations) and their status, read the Secrets they reference, and post
Events. Nothing is created or deleted in Kubernetes itself.
*/}}
{{- define "retailflow-operator.pipelineRules" -}}
# kopf lists and watches, and patches (finalizer, progress annotations); it never reads one object.
- apiGroups: [retailflow.io]
  resources: [retailpipelines]
  verbs: [list, watch, patch]
- apiGroups: [retailflow.io]
  resources: [retailpipelines/status]
  verbs: [patch]
# The Secrets RetailPipelines name (read by name, used only when labelled: see operator/README.md);
# rbac.secretNames narrows the grant to those names. Without it the grant is every Secret of the
# namespace served; cluster-wide that needs rbac.allSecrets=true (validateValues).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.rbac.secretNames }}
  resourceNames:
    {{- range . }}
    - {{ tpl . $ | quote }}
    {{- end }}
  {{- end }}
# kopf posts core v1 Events (never patches them, never uses events.k8s.io).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
