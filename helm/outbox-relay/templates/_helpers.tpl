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

{{/* Stops the release early on settings that cannot work. */}}
{{- define "outbox-relay.validate" -}}
{{- if .Values.secret.existingSecret }}
{{- if .Values.database.url }}
{{- fail "set either database.url or secret.existingSecret, not both" }}
{{- end }}
{{- if .Values.kafka.secretProperties }}
{{- fail "kafka.secretProperties cannot go into secret.existingSecret: add them to that Secret as OUTBOX_RDKAFKA_<NAME> keys" }}
{{- end }}
{{- else }}
{{- $_ := required "database.url is required (a libpq URL with the password), or set secret.existingSecret" .Values.database.url }}
{{- end }}
{{- $_ := required "kafka.brokers is required (host:port,...)" .Values.kafka.brokers }}
{{- if not (has .Values.podAntiAffinityPreset (list "soft" "hard" "")) }}
{{- fail "podAntiAffinityPreset must be soft, hard or empty" }}
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
