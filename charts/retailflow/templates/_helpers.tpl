{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "retailflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Release-scoped name for the chart's own Jobs and their RBAC. The shared services (MySQL,
PostgreSQL, MinIO) and Secrets take their names from global.retailflow instead, because the
subcharts need them as literal values; so one release per namespace.
*/}}
{{- define "retailflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "retailflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "mysql"). */}}
{{- define "retailflow.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{- define "retailflow.labels" -}}
helm.sh/chart: {{ include "retailflow.chart" .ctx }}
{{ include "retailflow.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: retailflow
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{/*
Effective Secret names: the user's existingSecret, else the generated one. Defined on
.Values.global only, so that subcharts that render values with tpl (Airflow's extraEnv) can use
them too.
*/}}
{{/* The label the operator requires on every Secret it reads (operator.secretLabel; see operator/README.md). */}}
{{- define "retailflow.credentialsLabel" -}}
{{- $kv := splitList "=" (.Values.operator.secretLabel | default "retailflow.io/credentials=true") -}}
{{ index $kv 0 }}: {{ index $kv 1 | quote }}
{{- end -}}

{{- define "retailflow.mysql.secretName" -}}
{{- .Values.global.retailflow.mysql.existingSecret | default .Values.global.retailflow.mysql.secretName -}}
{{- end -}}
{{- define "retailflow.postgresql.secretName" -}}
{{- .Values.global.retailflow.postgresql.existingSecret | default .Values.global.retailflow.postgresql.secretName -}}
{{- end -}}
{{/* The Secrets the operator reads for the MySQL application user and the warehouse role, apart from
the servers' Secrets above (which hold the superuser passwords and every component's role). `helm
upgrade --reuse-values` of a release from before them keeps values without these keys: the default
names then. */}}
{{- define "retailflow.mysql.appSecretName" -}}
{{- .Values.global.retailflow.mysql.appSecretName | default "retailflow-mysql-app" -}}
{{- end -}}
{{- define "retailflow.warehouse.secretName" -}}
{{- .Values.global.retailflow.postgresql.warehouseSecretName | default "retailflow-warehouse" -}}
{{- end -}}
{{- define "retailflow.openmetadata.secretName" -}}
{{- .Values.global.retailflow.openmetadata.existingSecret | default .Values.global.retailflow.openmetadata.secretName -}}
{{- end -}}
{{- define "retailflow.lake.secretName" -}}
{{- .Values.global.retailflow.lake.existingSecret | default .Values.global.retailflow.lake.secretName -}}
{{- end -}}
{{/* MinIO's root user: read by MinIO and the lake-buckets Job only (the lake's consumers get a MinIO user).
`helm upgrade --reuse-values` of a release from before minio.root keeps that release's values, which
have no minio.root: the default name then. */}}
{{- define "retailflow.minio.rootSecretName" -}}
{{- $root := .Values.minio.root | default dict -}}
{{- $root.existingSecret | default $root.secretName | default "retailflow-minio-root" -}}
{{- end -}}
{{/*
NOTES.txt's warning that MinIO still runs with the lake's keys as root; sts: MinIO's StatefulSet as `lookup`
finds it (before the upgrade's changes). Only while MinIO is a hook, which Helm never upgrades: a release
resource is pointed at the root Secret by this very upgrade, and lookup shows the state it replaces.
*/}}
{{- define "retailflow.minio.oldRootNote" -}}
{{- $ctx := .ctx -}}
{{- $lake := include "retailflow.lake.secretName" $ctx -}}
{{- $oldRoot := false -}}
{{- if include "retailflow.minio.isHook" $ctx -}}
{{- range (dig "spec" "template" "spec" "containers" list (.sts | default dict)) -}}
{{- range (.env | default list) -}}
{{- if and (eq .name "MINIO_ROOT_USER") (eq (dig "valueFrom" "secretKeyRef" "name" "" .) $lake) -}}
{{- $oldRoot = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $oldRoot }}

MinIO still runs with the lake's keys as its root user (a release from before {{ include "retailflow.minio.rootSecretName" $ctx }}:
Helm does not upgrade MinIO's StatefulSet while it is a hook), so every client of the lake is still
MinIO's administrator. The chart README, "MinIO's root and the lake user", gives the one-time step.
{{- end -}}
{{- end -}}

{{/* "true" when this chart's MinIO is a pre-install hook (with Airbyte, datastores.hooksWithAirbyte), which
Helm never upgrades; empty when it is an ordinary release resource or off. */}}
{{- define "retailflow.minio.isHook" -}}
{{- if and .Values.minio.enabled .Values.airbyte.enabled .Values.datastores.hooksWithAirbyte -}}true{{- end -}}
{{- end -}}

{{/* host:port of the lake endpoint, for readiness loops. */}}
{{- define "retailflow.lake.hostPort" -}}
{{- $u := urlParse .Values.global.retailflow.lake.endpoint -}}
{{- $host := $u.host -}}
{{- if not (contains ":" $host) -}}
{{- $host = printf "%s:%s" $host (ternary "443" "80" (eq $u.scheme "https")) -}}
{{- end -}}
{{- $host -}}
{{- end -}}

{{/*
An image built from this repository (images.airflow, images.pipelineJob; the operator chart prefixes
operator.image the same way): global.retailflow.imageRegistry, when set, is its registry. Never call
it for a third-party image (images.mysqlClient, images.minioClient, the data stores', Superset's,
OpenMetadata's): those are written `repository:tag`, from their own registries. Where a subchart
takes one of our images literally (Airflow's defaultAirflowRepository, OpenMetadata's jwt-keys init
container), validateValues holds it equal to this. (dict "ctx" $ "image" .Values.images.airflow)
*/}}
{{- define "retailflow.image" -}}
{{- $registry := .ctx.Values.global.retailflow.imageRegistry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .image.repository (toString .image.tag) -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
PostgreSQL and MinIO must answer before Airbyte's bootloader, a pre-install hook of the Airbyte
chart, runs (Airbyte's own chart deploys its database and MinIO as pre-install hooks for the same
reason). When Airbyte is enabled they are therefore hooks too, created first and never deleted
by Helm; see the README.
*/}}
{{- define "retailflow.earlyHook" -}}
{{- if and .Values.airbyte.enabled .Values.datastores.hooksWithAirbyte }}
helm.sh/hook: pre-install
helm.sh/hook-weight: {{ .weight | default "-15" | quote }}
{{- end }}
{{- end -}}

{{/*
Superset's Service and workload name (the Service answers on superset.port): <release>-superset,
the name the upstream chart gave it and that NOTES.txt and the OpenMetadata Job use.
*/}}
{{- define "retailflow.superset.name" -}}
{{- ternary .Release.Name (printf "%s-superset" .Release.Name) (contains "superset" .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base URL of Superset inside the cluster. */}}
{{- define "retailflow.superset.url" -}}
{{- printf "http://%s:%v" (include "retailflow.superset.name" .) .Values.superset.port -}}
{{- end -}}

{{/* The ConfigMap of the dashboard bundle and Superset's URL (key `superset-url`), which the import Job
and Airflow mount. Defined on .Values.global only: Airflow's extraEnv renders it with tpl. `helm upgrade
--reuse-values` of a release from before global.retailflow.superset.bundleConfigMap: the default name. */}}
{{- define "retailflow.superset.bundleConfigMap" -}}
{{- dig "superset" "bundleConfigMap" "" .Values.global.retailflow | default "retailflow-superset-bundle" -}}
{{- end -}}

{{/*
What every Superset container shares: the config from files/superset (one file for the local
Superset and the chart), the drivers volume, and the Secret's settings.
*/}}
{{- define "retailflow.superset.env" -}}
- {name: SUPERSET_CONFIG_PATH, value: /app/retailflow/superset_config.py}
{{- if .Values.superset.drivers }}
# installed by the drivers init container (the official image has no PostgreSQL driver)
- {name: PYTHONPATH, value: /app/drivers}
{{- end }}
- name: SUPERSET_SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.global.retailflow.superset.envSecretName }}, key: SUPERSET_SECRET_KEY}}
- name: SUPERSET_DATABASE_URI
  valueFrom: {secretKeyRef: {name: {{ .Values.global.retailflow.superset.envSecretName }}, key: SUPERSET_DATABASE_URI}}
{{- end -}}

{{- define "retailflow.superset.volumeMounts" -}}
- {name: superset-config, mountPath: /app/retailflow, readOnly: true}
{{- if .Values.superset.drivers }}
- {name: drivers, mountPath: /app/drivers}
{{- end }}
{{- end -}}

{{- define "retailflow.superset.volumes" -}}
- name: superset-config
  configMap:
    name: {{ include "retailflow.superset.name" . }}-config
{{- if .Values.superset.drivers }}
- name: drivers
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* Installs superset.drivers into the drivers volume; the pod's first init container. */}}
{{- define "retailflow.superset.driversContainer" -}}
{{- if .Values.superset.drivers }}
- name: drivers
  image: {{ printf "%s:%s" .Values.superset.image.repository (toString .Values.superset.image.tag) | quote }}
  imagePullPolicy: {{ .Values.superset.image.pullPolicy }}
  command: [sh, -c]
  args:
    - |
      set -eu
      uv pip install --no-cache --target /app/drivers {{ range .Values.superset.drivers }}{{ . | squote }} {{ end }}\
        || pip install --no-cache-dir --target /app/drivers {{ range .Values.superset.drivers }}{{ . | squote }} {{ end }}
  securityContext: {allowPrivilegeEscalation: false}
  resources:
    {{- toYaml .Values.superset.driversInstall.resources | nindent 4 }}
  volumeMounts:
    - {name: drivers, mountPath: /app/drivers}
{{- end }}
{{- end -}}

{{/*
Airbyte's namespace (global.retailflow.airbyte.namespace, else the release namespace) and the host
names that cross between it and the release namespace. With Airbyte in the release namespace every
name stays as it was; in a namespace of its own, a Service of the other namespace is named
`<service>.<namespace>.svc`, which resolves from both. Defined on .Values.global and .Release only:
Airflow's extraEnv and the operator chart's allowedHosts render them with tpl.
*/}}
{{- define "retailflow.airbyte.namespace" -}}
{{- .Values.global.retailflow.airbyte.namespace | default .Release.Namespace -}}
{{- end -}}
{{- define "retailflow.airbyte.elsewhere" -}}
{{- if ne (include "retailflow.airbyte.namespace" .) .Release.Namespace -}}true{{- end -}}
{{- end -}}
{{/* Airbyte's API server, as the release namespace reaches it. */}}
{{- define "retailflow.airbyte.serverHost" -}}
{{- $host := printf "%s-airbyte-server-svc" .Release.Name -}}
{{- if include "retailflow.airbyte.elsewhere" . -}}
{{- $host = printf "%s.%s.svc" $host (include "retailflow.airbyte.namespace" .) -}}
{{- end -}}
{{- $host -}}
{{- end -}}
{{/* A host of the release namespace as Airbyte's pods reach it; (dict "ctx" $ "host" "retailflow-mysql").
A dotted host (qualified already, or outside the cluster) is kept. */}}
{{- define "retailflow.airbyte.reach" -}}
{{- if and (include "retailflow.airbyte.elsewhere" .ctx) (not (contains "." .host)) -}}
{{- printf "%s.%s.svc" .host .ctx.Release.Namespace -}}
{{- else -}}
{{- .host -}}
{{- end -}}
{{- end -}}
{{/* The same for a URL; (dict "ctx" $ "url" "http://retailflow-minio:9000"). */}}
{{- define "retailflow.airbyte.reachUrl" -}}
{{- $hostname := (urlParse .url).hostname -}}
{{- replace (printf "//%s" $hostname) (printf "//%s" (include "retailflow.airbyte.reach" (dict "ctx" .ctx "host" $hostname))) .url -}}
{{- end -}}

{{/*
Waits, declared once. A workload that needs servers lists them as URLs (tcp://, pg://, http://,
see files/scripts/wait_for.py); "retailflow.waitFor.container" renders the init container that waits
for them, bounded by jobs.waitFor.timeoutSeconds, and "retailflow.waitFor.annotation" the
`retailflow.io/waits-for` annotation that tests/unit/chart/test_install_order.py reads (together with
`inCode`: services the workload's own code waits for, bounded, such as Airbyte for the pipeline Job).
Both take (dict "ctx" $ "image" "<image>" "urls" (list ...) "inCode" (list ...)).
*/}}
{{- define "retailflow.waitFor.annotation" -}}
{{- $targets := list -}}
{{- range .urls }}{{ $targets = append $targets (printf "service/%s" (urlParse .).hostname) }}{{ end -}}
{{- range .inCode }}{{ $targets = append $targets (printf "service/%s" .) }}{{ end -}}
retailflow.io/waits-for: {{ $targets | uniq | join "," | quote }}
{{- end -}}

{{- define "retailflow.waitFor.container" -}}
{{- if .urls }}
- name: wait-for
  image: {{ .image | quote }}
  imagePullPolicy: IfNotPresent
  command: [python, /wait-for/wait_for.py, --timeout, {{ .ctx.Values.jobs.waitFor.timeoutSeconds | quote }}]
  args:
    {{- range .urls }}
    - {{ printf "%s=%s" (urlParse .).hostname . | quote }}
    {{- end }}
  resources:
    {{- toYaml .ctx.Values.jobs.waitFor.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
  volumeMounts:
    - {name: wait-for, mountPath: /wait-for, readOnly: true}
{{- end }}
{{- end -}}

{{- define "retailflow.waitFor.volume" -}}
- name: wait-for
  configMap:
    name: {{ include "retailflow.fullname" . }}-wait-for
{{- end -}}

{{/* Pod-level settings shared by the chart's own Jobs. */}}
{{- define "retailflow.jobSpec" -}}
backoffLimit: {{ .backoffLimit | default 6 }}
ttlSecondsAfterFinished: {{ .ctx.Values.jobs.ttlSecondsAfterFinished }}
{{- end -}}

{{- define "retailflow.validateValues" -}}
{{- $g := .Values.global.retailflow -}}
{{- if and (not .Values.minio.enabled) (hasSuffix (printf "//%s:9000" "retailflow-minio") $g.lake.endpoint) -}}
{{- fail "minio.enabled=false: set global.retailflow.lake.endpoint (and global.storage.minio.endpoint for Airbyte) to your S3-compatible endpoint" -}}
{{- end -}}
{{- $airbyteLake := include "retailflow.airbyte.reachUrl" (dict "ctx" . "url" $g.lake.endpoint) -}}
{{- if ne $airbyteLake .Values.global.storage.minio.endpoint -}}
{{- fail (printf "global.storage.minio.endpoint (%s, Airbyte's) must equal global.retailflow.lake.endpoint as Airbyte's namespace reaches it (%s)" .Values.global.storage.minio.endpoint $airbyteLake) -}}
{{- end -}}
{{- if and .Values.airbyte.enabled (ne (toString .Values.airbyte.namespaceOverride) (toString $g.airbyte.namespace)) -}}
{{- fail (printf "airbyte.namespaceOverride (%q, where Airbyte's chart puts its resources) must equal global.retailflow.airbyte.namespace (%q, where this chart puts Airbyte's Secrets and ServiceAccounts)" (toString .Values.airbyte.namespaceOverride) (toString $g.airbyte.namespace)) -}}
{{- end -}}
{{- if include "retailflow.airbyte.elsewhere" . -}}
{{- $airbyteDb := include "retailflow.airbyte.reach" (dict "ctx" . "host" $g.postgresql.host) -}}
{{- if ne $airbyteDb .Values.global.database.host -}}
{{- fail (printf "Airbyte runs in namespace %s: set global.database.host=%s (Airbyte's chart reads it literally; the release's PostgreSQL is in namespace %s)" $g.airbyte.namespace $airbyteDb .Release.Namespace) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.minio.enabled (eq (include "retailflow.minio.rootSecretName" .) (include "retailflow.lake.secretName" .)) -}}
{{- fail (printf "MinIO's root Secret and the lake's are both %s: the lake's keys must be a MinIO user of their own (MinIO refuses a user with the root's access key), so give minio.root.existingSecret another Secret" (include "retailflow.lake.secretName" .)) -}}
{{- end -}}
{{- if and $g.lake.existingSecret (ne $g.lake.existingSecret .Values.global.storage.secretName) -}}
{{- fail (printf "global.retailflow.lake.existingSecret=%s: also set global.storage.secretName=%s (Airbyte reads that key)" $g.lake.existingSecret $g.lake.existingSecret) -}}
{{- end -}}
{{- if $g.postgresql.existingSecret -}}
{{- if ne $g.postgresql.existingSecret .Values.global.database.secretName -}}
{{- fail (printf "global.retailflow.postgresql.existingSecret=%s: also set global.database.secretName=%s (Airbyte reads that key)" $g.postgresql.existingSecret $g.postgresql.existingSecret) -}}
{{- end -}}
{{- if and .Values.openmetadata.enabled (ne $g.postgresql.existingSecret .Values.openmetadata.openmetadata.config.database.auth.password.secretRef) -}}
{{- fail (printf "global.retailflow.postgresql.existingSecret=%s: also set openmetadata.openmetadata.config.database.auth.password.secretRef=%s" $g.postgresql.existingSecret $g.postgresql.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- /* The operator never gets a Secret holding a superuser's password or another component's role:
the servers' Secrets are for the servers; the RetailPipeline names the application user's and the
warehouse role's own Secrets (templates/secrets.yaml). A release upgraded with --reuse-values from
before those keeps the old names: refused here rather than left for someone to label. */ -}}
{{- $servers := dict (include "retailflow.mysql.secretName" .) "MySQL's Secret (root-password); the operator's is global.retailflow.mysql.appSecretName, a Secret of its own" (include "retailflow.postgresql.secretName" .) "PostgreSQL's Secret (postgres-password and every component's role); the operator's is global.retailflow.postgresql.warehouseSecretName, a Secret of its own" -}}
{{- $operatorReads := list -}}
{{- if .Values.operator.enabled -}}
{{- range .Values.operator.rbac.secretNames -}}
{{- $operatorReads = append $operatorReads (list "operator.rbac.secretNames" (tpl . $)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.pipeline.enabled -}}
{{- $spec := include "retailflow.pipeline.spec" . | fromYaml -}}
{{- range $section := list "mysql" "warehouse" "lake" "airflow" "airbyte" -}}
{{- $block := get $spec $section -}}
{{- if and (kindIs "map" $block) (kindIs "map" (get $block "credentialsSecretRef")) -}}
{{- $operatorReads = append $operatorReads (list (printf "pipeline.spec.%s.credentialsSecretRef.name" $section) (toString $block.credentialsSecretRef.name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $operatorReads -}}
{{- if hasKey $servers (index . 1) -}}
{{- fail (printf "%s names %s, %s: the operator must not be able to read it (README, Passwords; with helm upgrade --reuse-values from a release before these Secrets, use --reset-then-reuse-values)" (index . 0) (index . 1) (get $servers (index . 1))) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.openmetadata.enabled $g.openmetadata.existingSecret (ne $g.openmetadata.existingSecret .Values.openmetadata.openmetadata.config.fernetkey.secretRef) -}}
{{- fail (printf "global.retailflow.openmetadata.existingSecret=%s: also set openmetadata.openmetadata.config.fernetkey.secretRef=%s" $g.openmetadata.existingSecret $g.openmetadata.existingSecret) -}}
{{- end -}}
{{- if and .Values.openmetadata.enabled (not .Values.opensearch.enabled) (eq .Values.openmetadata.openmetadata.config.elasticsearch.host "opensearch-cluster-master") -}}
{{- fail "opensearch.enabled=false: point openmetadata.openmetadata.config.elasticsearch.host at your own search engine" -}}
{{- end -}}
{{- if and .Values.openmetadata.enabled (not $g.openmetadata.url) -}}
{{- fail "openmetadata.enabled=true: set global.retailflow.openmetadata.url (its Service, default http://openmetadata:8585); it is empty only without OpenMetadata (values-lite.yaml)" -}}
{{- end -}}
{{- /* The images built here that a subchart takes as literal values (neither the Airflow nor the
OpenMetadata chart renders them with tpl): they must be what images.* and imageRegistry make. */ -}}
{{- if .Values.airflow.enabled -}}
{{- $want := include "retailflow.image" (dict "ctx" . "image" .Values.images.airflow) -}}
{{- $a := .Values.airflow -}}
{{- $default := printf "%s:%s" (toString $a.defaultAirflowRepository) (toString $a.defaultAirflowTag) -}}
{{- $used := printf "%s:%s" (dig "images" "airflow" "repository" "" $a | default $a.defaultAirflowRepository | toString) (dig "images" "airflow" "tag" "" $a | default $a.defaultAirflowTag | toString) -}}
{{- if or (ne $default $want) (ne $used $want) -}}
{{- fail (printf "the Airflow chart runs %s (airflow.defaultAirflowRepository:defaultAirflowTag, or airflow.images.airflow.*), but images.airflow with global.retailflow.imageRegistry is %s: the Airflow chart takes its image literally, so set airflow.defaultAirflowRepository=%s and airflow.defaultAirflowTag=%s (and leave airflow.images.airflow.repository and .tag unset)" (ternary $default $used (ne $default $want)) $want (trimSuffix (printf ":%s" (toString .Values.images.airflow.tag)) $want) (toString .Values.images.airflow.tag)) -}}
{{- end -}}
{{- /* airflow.volumes names the ConfigMaps through YAML anchors, fixed when values.yaml is read, and the
Airflow chart takes the list literally: a renamed ConfigMap would leave the optional volume an empty
folder, and the task reading it would fail on every run instead of skipping. volume name -> the names
it may mount and the value that names the rendered one; only checked when that ConfigMap is rendered. */ -}}
{{- $mounted := dict -}}
{{- if and .Values.superset.enabled .Values.jobs.supersetDashboards.enabled -}}
{{- $_ := set $mounted "retailflow-superset-bundle" (list (list (include "retailflow.superset.bundleConfigMap" .)) "global.retailflow.superset.bundleConfigMap") -}}
{{- end -}}
{{- if and .Values.openmetadata.enabled .Values.jobs.openmetadataIngestion.enabled (gt (len (.Files.Glob "files/openmetadata/*.yaml")) 0) -}}
{{- /* or the Job's own workflows (jobs.openmetadataIngestion.workflowsConfigMap), as the README asks */ -}}
{{- $_ := set $mounted "retailflow-openmetadata-workflows" (list (compact (list $g.openmetadata.workflowsConfigMap .Values.jobs.openmetadataIngestion.workflowsConfigMap)) "global.retailflow.openmetadata.workflowsConfigMap") -}}
{{- end -}}
{{- range (.Values.airflow.volumes | default list) -}}
{{- $rule := get $mounted (toString .name) -}}
{{- if and $rule (kindIs "map" .configMap) (not (has (toString .configMap.name) (index $rule 0))) -}}
{{- fail (printf "airflow.volumes: the %s volume mounts ConfigMap %q, but the chart renders it as %q (%s): the Airflow chart takes airflow.volumes literally, so set that entry's configMap.name to %q too (in a values file with the whole list: --set of one item replaces the list)" .name (toString .configMap.name) (first (index $rule 0)) (index $rule 1) (first (index $rule 0))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.openmetadata.enabled -}}
{{- $want := include "retailflow.image" (dict "ctx" . "image" .Values.images.pipelineJob) -}}
{{- range (.Values.openmetadata.preMigrateInitContainers | default list) -}}
{{- if and (eq .name "jwt-keys") (ne (toString .image) $want) -}}
{{- fail (printf "openmetadata.preMigrateInitContainers: the jwt-keys init container runs %s, but images.pipelineJob with global.retailflow.imageRegistry is %s: the OpenMetadata chart takes that list literally, so write image: %s there (in a values file with the whole list: --set of one item replaces the list)" (toString .image) $want $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.pipeline.enabled (not .Values.operator.enabled) -}}
{{- fail "pipeline.enabled=true needs operator.enabled=true: nothing would reconcile the RetailPipeline (and its CRD would be missing)" -}}
{{- end -}}
{{- $pipelineAirbyte := .Values.pipeline.spec.airbyte -}}
{{- if and .Values.pipeline.enabled (not $pipelineAirbyte) (ne (.Values.pipeline.spec.engine | default "airbyte") "direct") -}}
{{- fail "pipeline.spec.airbyte is empty: set pipeline.spec.engine=direct (the DAGs then ingest themselves, as values-lite.yaml does), or give the Airbyte block" -}}
{{- end -}}
{{- if and .Values.pipeline.enabled (not .Values.airbyte.enabled) $pipelineAirbyte (not .Values.pipeline.workspaceId) -}}
{{- fail "airbyte.enabled=false: set pipeline.spec.engine=direct and pipeline.spec.airbyte=null (no Airbyte: values-lite.yaml), or pipeline.workspaceId (your Airbyte's workspace) and pipeline.spec.airbyte.apiUrl, or pipeline.enabled=false; the pipeline Job reads the workspace from this release's Airbyte only" -}}
{{- end -}}
{{- if and .Values.airbyte.enabled (not .Values.datastores.hooksWithAirbyte) .Release.IsInstall -}}
{{- fail "datastores.hooksWithAirbyte=false keeps PostgreSQL and MinIO ordinary release resources, for a `helm upgrade` that adds Airbyte to a release installed without it (values-lite.yaml); a first install with Airbyte needs them as hooks, which Airbyte's pre-install bootloader can find: leave it true" -}}
{{- end -}}
{{- if and .Values.pipeline.workspaceId (not (regexMatch "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" .Values.pipeline.workspaceId)) -}}
{{- fail (printf "pipeline.workspaceId must be a lowercase UUID, not %q" .Values.pipeline.workspaceId) -}}
{{- end -}}
{{- /* Airbyte's bootloader writes its auth Secret without the operator's label: only the pipeline Job
(no workspace id given) or, with Airbyte in its own namespace, the copy Job adds it. */ -}}
{{- if and .Values.pipeline.enabled .Values.pipeline.workspaceId .Values.airbyte.enabled $pipelineAirbyte (not (include "retailflow.airbyte.elsewhere" .)) -}}
{{- $authSecret := .Values.global.retailflow.airbyte.authSecretName -}}
{{- if eq (dig "airbyte" "credentialsSecretRef" "name" "" (include "retailflow.pipeline.spec" . | fromYaml)) $authSecret -}}
{{- fail (printf "pipeline.workspaceId with this release's Airbyte: the RetailPipeline is then a release resource and no Job runs to label %s (Airbyte's bootloader writes it unlabelled), so the operator would refuse it (SecretNotLabelled). Leave pipeline.workspaceId empty (the pipeline Job reads the default workspace and labels the Secret), or point pipeline.spec.airbyte.credentialsSecretRef.name at a Secret of your own labelled %s (and listed in operator.rbac.secretNames)" $authSecret (.Values.operator.secretLabel | default "retailflow.io/credentials=true")) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.minio.enabled (not .Values.jobs.lakeBuckets.enabled) -}}
{{- fail (printf "jobs.lakeBuckets.enabled=false with minio.enabled=true: that Job makes %s a user of this chart's MinIO, so without it every client of the lake would be refused; keep the Job, or set minio.enabled=false and point the lake at your own store" (include "retailflow.lake.secretName" .)) -}}
{{- end -}}
{{- /* Every bucket a client writes must be one the Job creates: with this chart's MinIO, the lake's user may
create none (and its policy names lake.buckets only). */ -}}
{{- $buckets := dict "global.retailflow.lake.bucket" $g.lake.bucket -}}
{{- if .Values.airbyte.enabled }}
{{- range $key := list "log" "state" "workloadOutput" "activityPayload" "auditLogging" }}
{{- $_ := set $buckets (printf "global.storage.bucket.%s" $key) (get $.Values.global.storage.bucket $key) }}
{{- end }}
{{- end -}}
{{- range $key := keys $buckets | sortAlpha -}}
{{- $bucket := get $buckets $key -}}
{{- if and $.Values.jobs.lakeBuckets.enabled (not (has $bucket $.Values.lake.buckets)) -}}
{{- fail (printf "lake.buckets must list %q (%s): the lake bucket and Airbyte's storage buckets are created from it, and with this chart's MinIO the lake's user may use those buckets only" $bucket $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The RetailPipeline spec, rendered with tpl so it can name this release's services. */}}
{{- define "retailflow.pipeline.spec" -}}
{{- $spec := tpl (toYaml .Values.pipeline.spec) . | fromYaml -}}
{{- if and .Values.pipeline.workspaceId $spec.airbyte -}}
{{- $_ := set $spec.airbyte "workspaceId" .Values.pipeline.workspaceId -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}


{{/*
"true" when the RetailPipeline is created by the post-install Job (`templates/pipeline/bootstrap.yaml`),
which reads the workspace id from this release's Airbyte; empty when it is an ordinary release
resource: its workspace id is given, or it names no Airbyte at all (engine direct, values-lite.yaml).
*/}}
{{- define "retailflow.pipeline.viaJob" -}}
{{- if and .Values.pipeline.enabled (not .Values.pipeline.workspaceId) .Values.pipeline.spec.airbyte -}}true{{- end -}}
{{- end -}}
