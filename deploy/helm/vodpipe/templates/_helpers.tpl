{{/* Names ------------------------------------------------------------------ */}}

{{- define "vodpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vodpipe.fullname" -}}
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

{{/* vodpipe.componentName: (dict "root" $ "component" "ingest") -> <fullname>-ingest */}}
{{- define "vodpipe.componentName" -}}
{{- printf "%s-%s" (include "vodpipe.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "vodpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vodpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vodpipe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ----------------------------------------------------------------- */}}

{{/* vodpipe.labels: (dict "root" $ "component" "ingest"); component may be "". */}}
{{- define "vodpipe.labels" -}}
helm.sh/chart: {{ include "vodpipe.chart" .root }}
{{ include "vodpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: vodpipe
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vodpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vodpipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Image ------------------------------------------------------------------ */}}

{{/* vodpipe.image: (dict "root" $ "component" "ingest") -> the component's image: its
     imageTag when set (an upgrade one component at a time: ingest, then the workers,
     then notify, docs/operations.md), else image.digest or image.tag. */}}
{{- define "vodpipe.image" -}}
{{- $v := .root.Values }}
{{- $repo := required "image.repository is required" $v.image.repository }}
{{- $own := (index $v .component).imageTag | default "" | toString }}
{{- if $own }}
{{- printf "%s:%s" $repo $own }}
{{- else if $v.image.digest }}
{{- printf "%s@%s" $repo $v.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $v.image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "vodpipe.testImage" -}}
{{- if .Values.test.image.digest }}
{{- printf "%s@%s" .Values.test.image.repository .Values.test.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.test.image.repository (.Values.test.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Addresses and secret names -------------------------------------------- */}}

{{- define "vodpipe.natsURL" -}}
{{- $url := required "nats.url is required" .Values.nats.url }}
{{- if .Values.nats.tls }}
{{- $url = replace "nats://" "tls://" $url }}
{{- end }}
{{- $url }}
{{- end }}

{{/* host:port of the vodsim service */}}
{{- define "vodpipe.vodsimAddr" -}}
{{- printf "%s:%d" (include "vodpipe.componentName" (dict "root" . "component" "vodsim")) (.Values.vodsim.service.port | int) }}
{{- end }}

{{/* vodsim's first key pair as a dict {id, key}; empty strings with an existing secret. */}}
{{- define "vodpipe.vodsimFirstApp" -}}
{{- $first := trim (first (splitList "," (.Values.vodsim.apps | toString))) }}
{{- $p := splitn ":" 2 $first }}
id: {{ $p._0 | default "" | quote }}
key: {{ $p._1 | default "" | quote }}
{{- end }}

{{/* The Tencent (signing) key pair for a secret the chart creates: {id, key}. */}}
{{- define "vodpipe.tencentPair" -}}
{{- if or .Values.tencent.secretId .Values.tencent.secretKey }}
id: {{ .Values.tencent.secretId | quote }}
key: {{ .Values.tencent.secretKey | quote }}
{{- else if and .Values.vodsim.enabled (not .Values.vodsim.existingSecret) }}
{{- include "vodpipe.vodsimFirstApp" . }}
{{- end }}
{{- end }}

{{/* "true" when ingest gets a Tencent secret (existing or created). */}}
{{- define "vodpipe.tencentEnabled" -}}
{{- if or .Values.tencent.existingSecret (include "vodpipe.tencentPair" . | fromYaml).key }}true{{ end }}
{{- end }}

{{- define "vodpipe.tencentSecretName" -}}
{{- default (include "vodpipe.componentName" (dict "root" . "component" "tencent")) .Values.tencent.existingSecret }}
{{- end }}

{{- define "vodpipe.apiKeysSecretName" -}}
{{- default (include "vodpipe.componentName" (dict "root" . "component" "api-keys")) .Values.apiKeys.existingSecret }}
{{- end }}

{{/* The pull key pair for a secret the chart creates: {id, key}. */}}
{{- define "vodpipe.pullPair" -}}
{{- if or .Values.notify.pull.secretId .Values.notify.pull.secretKey }}
id: {{ .Values.notify.pull.secretId | quote }}
key: {{ .Values.notify.pull.secretKey | quote }}
{{- else if and .Values.vodsim.enabled (not .Values.vodsim.existingSecret) }}
{{- include "vodpipe.vodsimFirstApp" . }}
{{- end }}
{{- end }}

{{- define "vodpipe.pullSecretName" -}}
{{- default (include "vodpipe.componentName" (dict "root" . "component" "notify-pull")) .Values.notify.pull.existingSecret }}
{{- end }}

{{/* notify gets a callback token: always unless callbackAuth is none; in pull mode (no callback) only when one is given. */}}
{{- define "vodpipe.callbackTokenEnabled" -}}
{{- $t := .Values.notify.callbackToken }}
{{- if and (ne .Values.notify.callbackAuth "none") (or $t.existingSecret $t.value (not .Values.notify.pull.enabled)) }}true{{ end }}
{{- end }}

{{- define "vodpipe.webhookSecretKeysSecretName" -}}
{{- default (printf "%s-webhook-secret-keys" (include "vodpipe.fullname" .)) .Values.notify.webhookSecretKeys.existingSecret }}
{{- end }}

{{- define "vodpipe.callbackTokenSecretName" -}}
{{- default (include "vodpipe.componentName" (dict "root" . "component" "notify")) .Values.notify.callbackToken.existingSecret }}
{{- end }}

{{- define "vodpipe.vodsimSecretName" -}}
{{- default (include "vodpipe.componentName" (dict "root" . "component" "vodsim")) .Values.vodsim.existingSecret }}
{{- end }}

{{/* Plain environment (ConfigMaps) ---------------------------------------- */}}

{{/* NATS and JetStream settings every service shares. */}}
{{- define "vodpipe.env.common" -}}
VODPIPE_NATS_URL: {{ include "vodpipe.natsURL" . | quote }}
VODPIPE_NATS_REPLICAS: {{ .Values.jetstream.replicas | int | quote }}
VODPIPE_JOBS_DUPLICATE_WINDOW: {{ .Values.jetstream.duplicateWindow | quote }}
VODPIPE_JOBS_ACK_WAIT: {{ .Values.jetstream.ackWait | quote }}
VODPIPE_JOBS_MAX_DELIVER: {{ .Values.jetstream.maxDeliver | int | quote }}
VODPIPE_JOBS_MAX_ACK_PENDING: {{ .Values.jetstream.maxAckPending | int | quote }}
VODPIPE_EVENTS_MAX_AGE: {{ .Values.jetstream.eventsMaxAge | quote }}
VODPIPE_DLQ_MAX_AGE: {{ .Values.jetstream.dlqMaxAge | quote }}
VODPIPE_STATUS_RETENTION: {{ .Values.jetstream.statusRetention | quote }}
{{- end }}

{{- define "vodpipe.env.ingest" -}}
{{ include "vodpipe.env.common" . }}
VODPIPE_INGEST_HTTP_ADDR: {{ printf ":%d" (.Values.ingest.port | int) | quote }}
{{- /* On SIGTERM the API goes on serving while the endpoint's removal spreads (readyz 503). */}}
VODPIPE_HTTP_DRAIN_DELAY: "5s"
{{- with .Values.metrics.adminPort }}
VODPIPE_INGEST_ADMIN_ADDR: {{ printf ":%d" (. | int) | quote }}
{{- end }}
VODPIPE_SIGN_MAX_VALIDITY: {{ .Values.ingest.signing.maxValidity | quote }}
VODPIPE_SIGN_FORCE_ONE_TIME: {{ .Values.ingest.signing.forceOneTime | toString | quote }}
{{- with .Values.ingest.signing.procedures }}
VODPIPE_SIGN_PROCEDURES: {{ join "," . | quote }}
{{- end }}
{{- with .Values.ingest.signing.storageRegions }}
VODPIPE_SIGN_STORAGE_REGIONS: {{ join "," . | quote }}
{{- end }}
{{- with .Values.ingest.signing.classIds }}
{{- $ids := list }}
{{- range . }}{{ if eq (toString .) "*" }}{{ $ids = append $ids "*" }}{{ else }}{{ $ids = append $ids (. | int64 | toString) }}{{ end }}{{ end }}
VODPIPE_SIGN_CLASS_IDS: {{ join "," $ids | quote }}
{{- end }}
{{- with .Values.ingest.signing.subAppIds }}
{{- $ids := list }}
{{- range . }}{{ if eq (toString .) "*" }}{{ $ids = append $ids "*" }}{{ else }}{{ $ids = append $ids (. | int64 | toString) }}{{ end }}{{ end }}
VODPIPE_SIGN_SUB_APP_IDS: {{ join "," $ids | quote }}
{{- end }}
VODPIPE_UPLOAD_TOKEN_MAX_TTL: {{ .Values.ingest.uploadTokens.maxTTL | quote }}
VODPIPE_UPLOAD_PAGE: {{ .Values.ingest.uploadPage | toString | quote }}
VODPIPE_CONSOLE: {{ .Values.ingest.console.enabled | toString | quote }}
VODPIPE_CONSOLE_SESSION_TTL: {{ .Values.ingest.console.sessionTTL | quote }}
{{- if .Values.notify.enabled }}
{{- /* The console's webhook pages call notify's API, in the cluster. */}}
VODPIPE_NOTIFY_URL: {{ printf "http://%s:%d" (include "vodpipe.componentName" (dict "root" . "component" "notify")) (.Values.notify.service.port | int) | quote }}
{{- end }}
{{- with .Values.ingest.corsOrigins }}
VODPIPE_CORS_ORIGINS: {{ join "," . | quote }}
{{- end }}
{{- end }}

{{- define "vodpipe.env.worker" -}}
{{ include "vodpipe.env.common" . }}
VODPIPE_WORKER_HTTP_ADDR: {{ printf ":%d" (.Values.worker.port | int) | quote }}
VODPIPE_WORKER_JOBS: {{ .Values.worker.jobs | int | quote }}
VODPIPE_PART_SIZE: {{ .Values.worker.partSize | int64 | quote }}
VODPIPE_PART_CONCURRENCY: {{ .Values.worker.partConcurrency | int | quote }}
VODPIPE_SHUTDOWN_GRACE: {{ .Values.worker.shutdownGrace | quote }}
VODPIPE_SOURCE_ALLOW_PRIVATE: {{ .Values.worker.sources.allowPrivate | toString | quote }}
{{- with .Values.worker.sources.allowCIDRs }}
VODPIPE_SOURCE_ALLOW_CIDRS: {{ join "," . | quote }}
{{- end }}
{{- with .Values.worker.sources.root }}
VODPIPE_SOURCE_ROOT: {{ . | quote }}
{{- end }}
{{- if .Values.vodsim.enabled }}
VODPIPE_VOD_ENDPOINT: {{ printf "http://%s" (include "vodpipe.vodsimAddr" .) | quote }}
VODPIPE_COS_DIAL_ADDR: {{ include "vodpipe.vodsimAddr" . | quote }}
VODPIPE_COS_SCHEME: "http"
{{- else }}
VODPIPE_VOD_ENDPOINT: {{ .Values.worker.vodEndpoint | quote }}
VODPIPE_COS_DIAL_ADDR: {{ .Values.worker.cosDialAddr | quote }}
VODPIPE_COS_SCHEME: {{ .Values.worker.cosScheme | quote }}
{{- end }}
{{- with .Values.redis }}
{{- if .url }}
VODPIPE_REDIS_URL: {{ .url | quote }}
{{- end }}
{{- if .addrs }}
VODPIPE_REDIS_ADDRS: {{ join "," .addrs | quote }}
VODPIPE_REDIS_TLS: {{ .tls | toString | quote }}
{{- end }}
{{- if .masterName }}
VODPIPE_REDIS_MASTER_NAME: {{ .masterName | quote }}
{{- end }}
{{- if and (not (kindIs "invalid" .waitReplicas)) (ne (toString .waitReplicas) "") }}
VODPIPE_REDIS_WAIT_REPLICAS: {{ .waitReplicas | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vodpipe.env.notify" -}}
{{- $n := .Values.notify.envNames }}
{{ include "vodpipe.env.common" . }}
{{ $n.httpAddr }}: {{ printf ":%d" (.Values.notify.port | int) | quote }}
{{- with .Values.metrics.adminPort }}
VODPIPE_NOTIFY_ADMIN_ADDR: {{ printf ":%d" (. | int) | quote }}
{{- end }}
{{ $n.webhookAllowPrivate }}: {{ .Values.notify.webhookAllowPrivate | toString | quote }}
{{ $n.callbackAuth }}: {{ .Values.notify.callbackAuth | quote }}
{{- with .Values.notify.webhookAllowCIDRs }}
{{ $n.webhookAllowCIDRs }}: {{ join "," . | quote }}
{{- end }}
{{- if and .Values.notify.pull.enabled .Values.vodsim.enabled }}
{{ $n.pullEndpoint }}: "http://vod.tencentcloudapi.com"
{{ $n.pullDialAddr }}: {{ include "vodpipe.vodsimAddr" . | quote }}
{{- end }}
{{- end }}

{{- define "vodpipe.env.vodsim" -}}
VODPIPE_VODSIM_ADDR: {{ printf ":%d" (.Values.vodsim.port | int) | quote }}
VODPIPE_VODSIM_APP_ID: {{ .Values.vodsim.appId | int64 | quote }}
VODPIPE_VODSIM_REGIONS: {{ join "," .Values.vodsim.regions | quote }}
VODPIPE_VODSIM_PROCEDURES: {{ join "," .Values.vodsim.procedures | quote }}
VODPIPE_VODSIM_DISCARD: {{ .Values.vodsim.discard | toString | quote }}
VODPIPE_VODSIM_DATA_DIR: "/data"
{{- with .Values.vodsim.faults }}
VODPIPE_VODSIM_FAULTS: {{ . | quote }}
{{- end }}
{{- if .Values.vodsim.callbackURL }}
VODPIPE_VODSIM_CALLBACK_URL: {{ tpl .Values.vodsim.callbackURL . | quote }}
{{- else if and (not .Values.notify.pull.enabled) .Values.notify.enabled (not (include "vodpipe.callbackTokenEnabled" .)) }}
VODPIPE_VODSIM_CALLBACK_URL: {{ include "vodpipe.vodsimCallbackBase" . | quote }}
{{- end }}
{{- end }}

{{/* notify's callback URL inside the cluster, without the token */}}
{{- define "vodpipe.vodsimCallbackBase" -}}
{{- printf "http://%s:%d/v1/vod/callback" (include "vodpipe.componentName" (dict "root" . "component" "notify")) (.Values.notify.service.port | int) }}
{{- end }}

{{/* vodpipe.configMapData: (dict "root" $ "component" "ingest" "env" .Values.ingest.env)
     The chart's variables, overridden by the component's env map. */}}
{{- define "vodpipe.configMapData" -}}
{{- $chart := include (printf "vodpipe.env.%s" .component) .root | fromYaml }}
{{- /* The component's env is set over the chart's, an empty value included
     (sprig's merge would fill it from the chart's). */}}
{{- $all := deepCopy $chart }}
{{- range $k, $v := (.env | default dict) }}
{{- $_ := set $all $k $v }}
{{- end }}
{{- range $k, $v := $all }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{/* Pod parts shared by every component ----------------------------------- */}}

{{/*
vodpipe.natsAuth: (dict "root" $ "component" "worker") → the component's NATS
credentials as YAML: its own nats.auth entry, else the shared nats.credsSecret.
It fails the render when there are none (unless nats.allowNoAuth) and when the
entry sets two ways to authenticate, which the service would refuse at start.
*/}}
{{- define "vodpipe.natsAuth" -}}
{{- $n := .root.Values.nats }}
{{- $a := index ($n.auth | default dict) .component | default dict }}
{{- $out := dict }}
{{- range $form := list "credsSecret" "nkeySeedSecret" "passwordSecret" "tokenSecret" }}
{{- with dig $form "name" "" $a }}
{{- $_ := set $out $form (dict "name" . "key" (dig $form "key" "" $a)) }}
{{- end }}
{{- end }}
{{- with dig "user" "" $a }}{{ $_ := set $out "user" . }}{{ end }}
{{- with dig "tlsSecret" "name" "" $a }}
{{- $_ := set $out "tlsSecret" (dig "tlsSecret" dict $a) }}
{{- end }}
{{- if and (empty $out) $n.credsSecret.name }}
{{- $_ := set $out "credsSecret" (dict "name" $n.credsSecret.name "key" $n.credsSecret.key) }}
{{- end }}
{{- $where := printf "nats.auth.%s" .component }}
{{- $ways := 0 }}
{{- range $form := list "credsSecret" "nkeySeedSecret" "user" "tokenSecret" }}
{{- if hasKey $out $form }}{{ $ways = add1 $ways }}{{ end }}
{{- end }}
{{- if gt $ways 1 }}
{{- fail (printf "%s: set only one of credsSecret, nkeySeedSecret, user (with passwordSecret) and tokenSecret" $where) }}
{{- end }}
{{- if ne (hasKey $out "user") (hasKey $out "passwordSecret") }}
{{- fail (printf "%s: user and passwordSecret.name go together" $where) }}
{{- end }}
{{- if and (empty $out) (not $n.allowNoAuth) }}
{{- fail (printf "%s: no NATS credentials for %s. Give each service its own NATS user (`vodpipe nats-config` prints them; deploy/helm/README.md, step 1): set %s.credsSecret, .nkeySeedSecret, .user with .passwordSecret, .tokenSecret or .tlsSecret, or nats.credsSecret for every service. nats.allowNoAuth=true renders without (a NATS open to every pod: not for production)" $where .component $where) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* vodpipe.natsEnv: (dict "root" $ "component" "worker") → env for the component's NATS credentials and the extra CA. */}}
{{- define "vodpipe.natsEnv" -}}
{{- $a := include "vodpipe.natsAuth" . | fromYaml }}
{{- with $a.credsSecret }}
- name: VODPIPE_NATS_CREDS
  value: /etc/vodpipe/nats/creds/{{ .key }}
{{- end }}
{{- with $a.nkeySeedSecret }}
- name: VODPIPE_NATS_NKEY_SEED_FILE
  value: /etc/vodpipe/nats/nkey/{{ .key }}
{{- end }}
{{- with $a.user }}
- name: VODPIPE_NATS_USER
  value: {{ . | quote }}
{{- end }}
{{- with $a.passwordSecret }}
- name: VODPIPE_NATS_PASSWORD_FILE
  value: /etc/vodpipe/nats/password/{{ .key }}
{{- end }}
{{- with $a.tokenSecret }}
- name: VODPIPE_NATS_TOKEN_FILE
  value: /etc/vodpipe/nats/token/{{ .key }}
{{- end }}
{{- with $a.tlsSecret }}
- name: VODPIPE_NATS_TLS_CERT
  value: /etc/vodpipe/nats/tls/{{ .certKey }}
- name: VODPIPE_NATS_TLS_KEY
  value: /etc/vodpipe/nats/tls/{{ .keyKey }}
{{- with .caKey }}
- name: VODPIPE_NATS_TLS_CA
  value: /etc/vodpipe/nats/tls/{{ . }}
{{- end }}
{{- end }}
{{- if .root.Values.tls.caSecret.name }}
- name: SSL_CERT_DIR
  value: /etc/ssl/certs:/etc/vodpipe/ca
{{- end }}
# The container's memory limit, in bytes: the service holds its heap under
# nine tenths of it (a GOMEMLIMIT in the env wins).
- name: VODPIPE_MEMORY_LIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}

{{/* vodpipe.natsVolumes: (dict "root" $ "component" "worker") → /tmp, the component's NATS credential secrets (each its own volume) and the extra CA. */}}
{{- define "vodpipe.natsVolumes" -}}
{{- $a := include "vodpipe.natsAuth" . | fromYaml }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- range $form, $dir := dict "credsSecret" "creds" "nkeySeedSecret" "nkey" "passwordSecret" "password" "tokenSecret" "token" }}
{{- with get $a $form }}
- name: nats-{{ $dir }}
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- with $a.tlsSecret }}
- name: nats-tls
  secret:
    secretName: {{ .name }}
    defaultMode: 0440
    items:
      {{- range $k := list .certKey .keyKey .caKey | compact | uniq }}
      - key: {{ $k }}
        path: {{ $k }}
      {{- end }}
{{- end }}
{{- if .root.Values.tls.caSecret.name }}
- name: extra-ca
  secret:
    secretName: {{ .root.Values.tls.caSecret.name }}
    defaultMode: 0444
    items:
      - key: {{ .root.Values.tls.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{/* vodpipe.natsVolumeMounts: (dict "root" $ "component" "worker"), the mounts of vodpipe.natsVolumes. */}}
{{- define "vodpipe.natsVolumeMounts" -}}
{{- $a := include "vodpipe.natsAuth" . | fromYaml }}
- name: tmp
  mountPath: /tmp
{{- range $form, $dir := dict "credsSecret" "creds" "nkeySeedSecret" "nkey" "passwordSecret" "password" "tokenSecret" "token" "tlsSecret" "tls" }}
{{- if hasKey $a $form }}
- name: nats-{{ $dir }}
  mountPath: /etc/vodpipe/nats/{{ $dir }}
  readOnly: true
{{- end }}
{{- end }}
{{- if .root.Values.tls.caSecret.name }}
- name: extra-ca
  mountPath: /etc/vodpipe/ca
  readOnly: true
{{- end }}
{{- end }}

{{/* vodpipe.probes: (dict "root" $) */}}
{{- define "vodpipe.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml .Values.probes.readiness | nindent 2 }}
# A service waits for JetStream and ingest's layout at start (up to a
# minute): the liveness probe takes over once it answers.
startupProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .Values.probes.startup | nindent 2 }}
{{- end }}

{{/* vodpipe.scheduling: (dict "root" $ "component" "ingest" "c" .Values.ingest) */}}
{{- define "vodpipe.scheduling" -}}
{{- with .c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml .c.topologySpreadConstraints | nindent 2 }}
{{- else if and .root.Values.topologySpread.enabled .root.Values.topologySpread.topologyKeys }}
topologySpreadConstraints:
{{- range .root.Values.topologySpread.topologyKeys }}
  - maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "vodpipe.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level fields every pod of the chart shares. */}}
{{- define "vodpipe.podCommon" -}}
serviceAccountName: {{ include "vodpipe.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* vodpipe.pdb: (dict "root" $ "component" "ingest" "c" .Values.ingest) */}}
{{- define "vodpipe.pdb" -}}
{{- if .c.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "vodpipe.componentName" . }}
  labels:
    {{- include "vodpipe.labels" . | nindent 4 }}
spec:
  {{- if ne (toString .c.pdb.minAvailable) "" }}
  minAvailable: {{ .c.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .c.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "vodpipe.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* vodpipe.hpa: (dict "root" $ "component" "ingest" "c" .Values.ingest) */}}
{{- define "vodpipe.hpa" -}}
{{- $a := .c.autoscaling }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "vodpipe.componentName" . }}
  labels:
    {{- include "vodpipe.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "vodpipe.componentName" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- if $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $a.targetMemoryUtilizationPercentage }}
    {{- end }}
{{- end }}

{{/* Checks the schema cannot express ------------------------------------- */}}

{{- define "vodpipe.validate" -}}
{{- $r := .Values.redis }}
{{- $n := 0 }}
{{- if $r.url }}{{ $n = add1 $n }}{{ end }}
{{- if $r.urlSecret.name }}{{ $n = add1 $n }}{{ end }}
{{- if $r.addrs }}{{ $n = add1 $n }}{{ end }}
{{- if gt $n 1 }}
{{- fail "redis: set only one of redis.url, redis.urlSecret.name and redis.addrs" }}
{{- end }}
{{- if and (eq $n 0) (not $r.kvFallback) }}
{{- fail "redis: set redis.url, redis.urlSecret.name or redis.addrs (or redis.kvFallback=true to keep resume state in JetStream)" }}
{{- end }}
{{- if and $r.masterName (not $r.addrs) }}
{{- fail "redis.masterName needs redis.addrs (the Sentinel addresses)" }}
{{- end }}
{{- if and $r.passwordSecret.name (not $r.addrs) }}
{{- fail "redis.passwordSecret is used with redis.addrs; with a URL put the password in redis.urlSecret" }}
{{- end }}
{{- range $c := list "ingest" "worker" "notify" }}
{{- $p := (index $.Values $c).pdb }}
{{- if and $p.enabled (eq (toString $p.minAvailable) "") (eq (toString $p.maxUnavailable) "") }}
{{- fail (printf "%s.pdb: set minAvailable or maxUnavailable" $c) }}
{{- end }}
{{- end }}
{{- $retention := include "vodpipe.seconds" .Values.jetstream.statusRetention | int }}
{{- if and (ge $retention 0) (lt $retention 86400) }}
{{- fail (printf "jetstream.statusRetention %v: ingest and the workers refuse a status retention under 24h (an Idempotency-Key's window), or use \"-1s\" (forever)" .Values.jetstream.statusRetention) }}
{{- end }}
{{- $grace := include "vodpipe.seconds" .Values.worker.shutdownGrace | int }}
{{- if gt (add $grace 10) (.Values.worker.terminationGracePeriodSeconds | int) }}
{{- fail (printf "worker.shutdownGrace %v needs worker.terminationGracePeriodSeconds at least 10 s above it (now %v): the kubelet would kill a worker before it saved its state and handed its job back" .Values.worker.shutdownGrace .Values.worker.terminationGracePeriodSeconds) }}
{{- end }}
{{- with (.Values.worker.resources.limits | default dict).memory }}
{{- $limit := include "vodpipe.bytes" . | int64 }}
{{- $w := $.Values.worker }}
{{- $need := add (mul ($w.jobs | int64) ($w.partConcurrency | int64) ($w.partSize | int64)) 67108864 }}
{{- if and (gt $limit 0) (lt $limit $need) }}
{{- fail (printf "worker.resources.limits.memory %v is under what a worker holds: %d jobs × %d parts in flight × %d bytes + 64 MiB = %d MiB" . ($w.jobs | int) ($w.partConcurrency | int) ($w.partSize | int64) (div $need 1048576)) }}
{{- end }}
{{- end }}
{{- if and .Values.worker.sources.volume (not .Values.worker.sources.root) }}
{{- fail "worker.sources.volume needs worker.sources.root (where it is mounted)" }}
{{- end }}
{{- if and .Values.notify.pull.enabled (not .Values.notify.pull.existingSecret) (not (include "vodpipe.pullPair" . | fromYaml).key) }}
{{- fail "notify.pull.enabled needs notify.pull.existingSecret or notify.pull.secretId and notify.pull.secretKey" }}
{{- end }}
{{- if and .Values.vodsim.enabled (not .Values.tencent.existingSecret) (not .Values.vodsim.existingSecret) (or .Values.tencent.secretId .Values.tencent.secretKey) }}
{{- $pair := printf "%s:%s" .Values.tencent.secretId .Values.tencent.secretKey }}
{{- if not (has $pair (splitList "," (.Values.vodsim.apps | toString))) }}
{{- fail "vodsim.enabled: tencent.secretId:tencent.secretKey must be one of vodsim.apps, or vodsim rejects every signature" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A generated secret value (base64), kept across upgrades: the value already in
the release's Secret .name under .key, else .fresh. lookup is empty under
helm template (and GitOps renders): set the matching existingSecret there.
*/}}
{{- define "vodpipe.keptValue" -}}
{{- $old := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- if and $old $old.data (hasKey $old.data .key) }}
{{- index $old.data .key }}
{{- else }}
{{- .fresh }}
{{- end }}
{{- end }}

{{/* vodpipe.metricsPort: (dict "root" $ "port" <service port> "admin" <bool> "alone" <bool>)
     -> the Service port named metrics: where the pods serve /metrics (the admin port of
     ingest and notify when metrics.adminPort is set, else the http port). Beside the
     Service's http port (not alone) it takes metrics.servicePort when it targets http:
     the API server refuses a Service with two ports of one number. */}}
{{- define "vodpipe.metricsPort" -}}
{{- $admin := and .admin (gt (.root.Values.metrics.adminPort | int) 0) }}
{{- $port := ternary (.root.Values.metrics.adminPort | int) (.port | int) $admin }}
{{- if and (not $admin) (not .alone) }}
{{- $port = .root.Values.metrics.servicePort | default 9090 | int }}
{{- if eq $port (.port | int) }}{{ $port = add1 $port }}{{ end }}
{{- end }}
- name: metrics
  port: {{ $port }}
  targetPort: {{ ternary "metrics" "http" $admin }}
  protocol: TCP
{{- end }}

{{/* vodpipe.adminContainerPort: the container port of the admin listener, when set. */}}
{{- define "vodpipe.adminContainerPort" -}}
{{- with .Values.metrics.adminPort }}
- name: metrics
  containerPort: {{ . }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* vodpipe.seconds: a Go duration ("720h", "1h30m", "25s") -> whole seconds; -1 for a
     negative one ("-1s": forever). */}}
{{- define "vodpipe.seconds" -}}
{{- $d := toString . }}
{{- if hasPrefix "-" $d }}-1{{ else }}
{{- $s := 0 }}
{{- range regexFindAll "[0-9]+(ns|us|µs|ms|h|m|s)" $d -1 }}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- $u := regexReplaceAll "^[0-9]+" . "" }}
{{- if eq $u "h" }}{{ $s = add $s (mul $n 3600) }}{{ else if eq $u "m" }}{{ $s = add $s (mul $n 60) }}{{ else if eq $u "s" }}{{ $s = add $s $n }}{{ end }}
{{- end }}
{{- $s }}
{{- end }}
{{- end }}

{{/* vodpipe.bytes: a Kubernetes memory quantity ("1Gi", "512Mi", "1G", "1048576") -> bytes
     (0 for a form it does not read). */}}
{{- define "vodpipe.bytes" -}}
{{- $q := toString . }}
{{- $m := regexFind "^[0-9]+" $q }}
{{- if not $m }}0{{ else }}
{{- $n := $m | int64 }}
{{- $u := regexReplaceAll "^[0-9]+" $q "" }}
{{- $f := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- if hasKey $f $u }}{{ mul $n (get $f $u) }}{{ else }}0{{ end }}
{{- end }}
{{- end }}
