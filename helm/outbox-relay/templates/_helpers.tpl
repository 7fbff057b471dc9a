{{/*
Named templates shared by the chart's manifests: names, labels, the image,
the Secret's name and the checks that stop a release with a clear message.
*/}}

{{- define "outbox-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "outbox-relay.fullname" -}}
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

{{/* The Grafana dashboard's ConfigMap: "<fullname>-dashboard", within 63 characters. */}}
{{- define "outbox-relay.dashboardName" -}}
{{- printf "%s-dashboard" (include "outbox-relay.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{- define "outbox-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outbox-relay.instanceLabels" -}}
app.kubernetes.io/name: {{ include "outbox-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The relay pods, and only them: the migration Job's pod has component "migration". */}}
{{- define "outbox-relay.selectorLabels" -}}
{{ include "outbox-relay.instanceLabels" . }}
app.kubernetes.io/component: relay
{{- end }}

{{- define "outbox-relay.labels" -}}
helm.sh/chart: {{ include "outbox-relay.chart" . }}
{{ include "outbox-relay.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "outbox-relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL: an existing one, or the chart's. */}}
{{- define "outbox-relay.secretName" -}}
{{- default (include "outbox-relay.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "outbox-relay.databaseUrlKey" -}}
{{- if .Values.secret.existingSecret }}
{{- required "secret.databaseUrlKey must name the key of secret.existingSecret that holds the database URL" .Values.secret.databaseUrlKey }}
{{- else -}}
OUTBOX_DATABASE_URL
{{- end }}
{{- end }}

{{/* librdkafka property name -> its environment variable (security.protocol -> OUTBOX_RDKAFKA_SECURITY_PROTOCOL). */}}
{{- define "outbox-relay.rdkafkaEnv" -}}
{{- printf "OUTBOX_RDKAFKA_%s" (. | upper | replace "." "_" | replace "-" "_") }}
{{- end }}

{{/* A value as the string a ConfigMap needs; whole numbers stay whole (values files give floats, 3600000 would print as 3.6e+06). */}}
{{- define "outbox-relay.string" -}}
{{- if kindIs "float64" . }}
{{- if eq . (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* Grace period: the value given (checked), or the shutdown timeout plus 20 seconds. */}}
{{- define "outbox-relay.terminationGracePeriodSeconds" -}}
{{- $shutdownMs := 10000 }}
{{- if not (kindIs "invalid" .Values.config.shutdownTimeoutMs) }}
{{- $shutdownMs = int64 .Values.config.shutdownTimeoutMs }}
{{- end }}
{{- $shutdownS := div (add $shutdownMs 999) 1000 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdownS 20 }}
{{- else }}
{{- $grace := int64 .Values.terminationGracePeriodSeconds }}
{{- if le $grace $shutdownS }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.shutdownTimeoutMs / 1000 (%d), or in-flight deliveries are cut off" $grace $shutdownS) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* "true" when the release serves several outboxes (values outboxes). */}}
{{- define "outbox-relay.multi" -}}
{{- if .Values.outboxes }}true{{ end }}
{{- end }}

{{/* Where the outboxes file and each outbox's database URL are mounted. */}}
{{- define "outbox-relay.outboxesDir" -}}
/etc/outbox-relay/outboxes
{{- end }}

{{/* The --outboxes-file of values outboxes, as JSON: each outbox's settings
by their long option names, its database-url-file the file its Secret's key
is mounted as (volume outbox-<index>). */}}
{{- define "outbox-relay.outboxesJson" -}}
{{- $list := list }}
{{- range $i, $o := .Values.outboxes }}
{{- $e := dict "name" $o.name "database-url-file" (printf "%s/%d/database-url" (include "outbox-relay.outboxesDir" $) $i) }}
{{- if $o.schema }}{{ $_ := set $e "schema" $o.schema }}{{ end }}
{{- if $o.defaultTopic }}{{ $_ := set $e "default-topic" $o.defaultTopic }}{{ end }}
{{- if $o.routes }}{{ $_ := set $e "route" $o.routes }}{{ end }}
{{- range $k, $v := $o.settings }}{{ $_ := set $e $k $v }}{{ end }}
{{- $list = append $list $e }}
{{- end }}
{{- toPrettyJson $list }}
{{- end }}

{{/* Whether the relay mounts the release's Secret: its database URL (one
outbox) or secret Kafka properties. */}}
{{- define "outbox-relay.hasRelaySecret" -}}
{{- if or (not (include "outbox-relay.multi" .)) (ne (include "outbox-relay.kafkaSecretKeys" .) "{}") }}true{{ end }}
{{- end }}

{{/* Stops the release early on settings that cannot work. */}}
{{- define "outbox-relay.validate" -}}
{{- if include "outbox-relay.multi" . }}
{{- $names := dict }}
{{- range $i, $o := .Values.outboxes }}
{{- if not (regexMatch "^[a-z0-9_-]{1,63}$" (toString $o.name)) }}
{{- fail (printf "outboxes[%d].name must be 1 to 63 characters [a-z0-9_-]" $i) }}
{{- end }}
{{- if hasKey $names (toString $o.name) }}
{{- fail (printf "outboxes: two are named %s" $o.name) }}
{{- end }}
{{- $_ := set $names (toString $o.name) true }}
{{- if or (not $o.databaseUrlSecret) (not $o.databaseUrlKey) }}
{{- fail (printf "outboxes[%d] (%s) needs databaseUrlSecret and databaseUrlKey: the Secret and key holding its database URL" $i $o.name) }}
{{- end }}
{{- end }}
{{- if .Values.migration.enabled }}
{{- fail "migration.enabled must be false with outboxes: migrate each outbox's schema with `outbox-relay migrate --outboxes-file` and DDL credentials (docs/outboxes.md)" }}
{{- end }}
{{- if or .Values.database.url (and .Values.secret.existingSecret (not .Values.kafka.secretPropertyKeys)) }}
{{- fail "with outboxes, each outbox names its database URL's Secret: leave database.url empty, and secret.existingSecret unless it holds kafka.secretPropertyKeys" }}
{{- end }}
{{- end }}
{{- if hasKey .Values.secret "envFromExistingSecret" }}
{{- fail "secret.envFromExistingSecret was removed: secrets are mounted as files, not environment variables; name the Kafka keys of secret.existingSecret in kafka.secretPropertyKeys" }}
{{- end }}
{{- if .Values.secret.existingSecret }}
{{- if .Values.database.url }}
{{- fail "set either database.url or secret.existingSecret, not both" }}
{{- end }}
{{- if .Values.kafka.secretProperties }}
{{- fail "kafka.secretProperties cannot go into secret.existingSecret: add them to that Secret and name their keys in kafka.secretPropertyKeys" }}
{{- end }}
{{- else if not (include "outbox-relay.multi" .) }}
{{- $_ := required "database.url is required (a libpq URL with the password), or set secret.existingSecret" .Values.database.url }}
{{- if .Values.kafka.secretPropertyKeys }}
{{- fail "kafka.secretPropertyKeys names keys of secret.existingSecret, which is not set: use kafka.secretProperties" }}
{{- end }}
{{- end }}
{{- if .Values.migration.enabled }}
{{- if and .Values.migration.existingSecret .Values.migration.databaseUrl }}
{{- fail "set either migration.databaseUrl or migration.existingSecret, not both" }}
{{- end }}
{{- if not .Values.migration.existingSecret }}
{{- $_ := required "migration.databaseUrl is required (a libpq URL of a role that may change the schema), or set migration.existingSecret; the relay's database.url should have DML rights only" .Values.migration.databaseUrl }}
{{- end }}
{{- if and .Values.migration.databaseUrl (eq .Values.migration.databaseUrl .Values.database.url) }}
{{- fail "migration.databaseUrl must differ from database.url: the relay runs with DML rights only, the migration with DDL rights" }}
{{- end }}
{{- if and .Values.migration.existingSecret (eq .Values.migration.existingSecret .Values.secret.existingSecret) }}
{{- fail "migration.existingSecret must differ from secret.existingSecret: the relay's pods must not be able to mount the DDL credentials" }}
{{- end }}
{{- end }}
{{- if and .Values.database.tls.caSecret .Values.database.tls.caConfigMap }}
{{- fail "set either database.tls.caSecret or database.tls.caConfigMap, not both" }}
{{- end }}
{{- if and (or .Values.database.tls.caSecret .Values.database.tls.caConfigMap) (not .Values.database.tls.caKey) }}
{{- fail "database.tls.caKey must name the key that holds the CA certificate" }}
{{- end }}
{{- if not .Values.podSecurityContext.fsGroup }}
{{- fail "podSecurityContext.fsGroup is required: the mounted Secret files are mode 0440 and readable through that group only" }}
{{- end }}
{{- if not (has .Values.http.listenAddress (list "0.0.0.0" "[::]")) }}
{{- fail "http.listenAddress must be 0.0.0.0 or [::]" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.egress.restrict (not .Values.networkPolicy.egress.rules) }}
{{- fail "networkPolicy.egress.restrict needs networkPolicy.egress.rules for PostgreSQL and Kafka, or the relay cannot reach them" }}
{{- end }}
{{- $_ := required "kafka.brokers is required (host:port,...)" .Values.kafka.brokers }}
{{- if not (has .Values.podAntiAffinityPreset (list "soft" "hard" "")) }}
{{- fail "podAntiAffinityPreset must be soft, hard or empty" }}
{{- end }}
{{- end }}

{{/*
Secrets as files. Each pod mounts one Secret at /etc/outbox-relay/secrets,
read-only, mode 0440 (group fsGroup), and only the keys it needs, under fixed
names: database-url, and kafka/<librdkafka property>. The variables naming
the files are paths, not secrets, so they may be in the pod spec.
*/}}
{{- define "outbox-relay.secretsDir" -}}
/etc/outbox-relay/secrets
{{- end }}

{{/* The relay's Kafka secret properties as a dict, property name -> key of its Secret. */}}
{{- define "outbox-relay.kafkaSecretKeys" -}}
{{- $keys := dict }}
{{- if .Values.secret.existingSecret }}
{{- range $k, $v := .Values.kafka.secretPropertyKeys }}
{{- $_ := set $keys $k $v }}
{{- end }}
{{- else }}
{{- range $k, $v := .Values.kafka.secretProperties }}
{{- $_ := set $keys $k (include "outbox-relay.rdkafkaEnv" $k) }}
{{- end }}
{{- end }}
{{- toJson $keys }}
{{- end }}

{{/* Volume of the relay's Secret: the database URL and the Kafka secret properties. */}}
{{- define "outbox-relay.relaySecretVolume" -}}
{{- if include "outbox-relay.hasRelaySecret" . }}
- name: secrets
  secret:
    secretName: {{ include "outbox-relay.secretName" . }}
    defaultMode: 0440
    items:
      {{- if not (include "outbox-relay.multi" .) }}
      - key: {{ include "outbox-relay.databaseUrlKey" . }}
        path: database-url
      {{- end }}
      {{- range $prop, $key := include "outbox-relay.kafkaSecretKeys" . | fromJson }}
      - key: {{ $key }}
        path: kafka/{{ $prop }}
      {{- end }}
{{- end }}
{{- if include "outbox-relay.multi" . }}
- name: outboxes-file
  configMap:
    name: {{ include "outbox-relay.fullname" . }}-outboxes
    items:
      - key: outboxes.json
        path: outboxes.json
{{- range $i, $o := .Values.outboxes }}
- name: outbox-{{ $i }}
  secret:
    secretName: {{ $o.databaseUrlSecret }}
    defaultMode: 0440
    items:
      - key: {{ $o.databaseUrlKey }}
        path: database-url
{{- end }}
{{- end }}
{{- end }}

{{/* The relay's variables naming its secret files. */}}
{{- define "outbox-relay.relaySecretEnv" -}}
{{- if not (include "outbox-relay.multi" .) }}
- name: OUTBOX_DATABASE_URL_FILE
  value: {{ include "outbox-relay.secretsDir" . }}/database-url
{{- end }}
{{- range $prop, $key := include "outbox-relay.kafkaSecretKeys" . | fromJson }}
- name: {{ include "outbox-relay.rdkafkaEnv" $prop }}_FILE
  value: {{ include "outbox-relay.secretsDir" $ }}/kafka/{{ $prop }}
{{- end }}
{{- end }}

{{- define "outbox-relay.secretsMount" -}}
{{- if include "outbox-relay.hasRelaySecret" . }}
- name: secrets
  mountPath: {{ include "outbox-relay.secretsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The relay's mounts of the outboxes file and of each outbox's URL. */}}
{{- define "outbox-relay.outboxesMount" -}}
{{- if include "outbox-relay.multi" . }}
- name: outboxes-file
  mountPath: {{ include "outbox-relay.outboxesDir" . }}/file
  readOnly: true
{{- range $i, $o := .Values.outboxes }}
- name: outbox-{{ $i }}
  mountPath: {{ include "outbox-relay.outboxesDir" $ }}/{{ $i }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/*
PostgreSQL CA: when database.tls names a Secret or ConfigMap, both pods mount
it at /etc/outbox-relay/pg-ca/ca.crt and libpq finds it through PGSSLROOTCERT
(the URL stays as the user wrote it, in its Secret).
*/}}
{{- define "outbox-relay.pgCaEnabled" -}}
{{- if or .Values.database.tls.caSecret .Values.database.tls.caConfigMap }}true{{ end }}
{{- end }}

{{- define "outbox-relay.pgCaVolume" -}}
{{- if include "outbox-relay.pgCaEnabled" . }}
- name: pg-ca
  {{- if .Values.database.tls.caSecret }}
  secret:
    secretName: {{ .Values.database.tls.caSecret }}
  {{- else }}
  configMap:
    name: {{ .Values.database.tls.caConfigMap }}
  {{- end }}
    defaultMode: 0440
    items:
      - key: {{ .Values.database.tls.caKey }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "outbox-relay.pgCaMount" -}}
{{- if include "outbox-relay.pgCaEnabled" . }}
- name: pg-ca
  mountPath: /etc/outbox-relay/pg-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "outbox-relay.pgCaEnv" -}}
{{- if include "outbox-relay.pgCaEnabled" . }}
- name: PGSSLROOTCERT
  value: /etc/outbox-relay/pg-ca/ca.crt
{{- with .Values.database.tls.sslmode }}
- name: PGSSLMODE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Security contexts and pull secrets shared by the Deployment and the migration Job. */}}
{{- define "outbox-relay.podSecurity" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}
