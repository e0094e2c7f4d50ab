{{/* The release's resource names, labels and the pieces the Deployment and the migration Job share. */}}
{{- define "consent-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "consent-gateway.fullname" -}}
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

{{- define "consent-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "consent-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "consent-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "consent-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "consent-gateway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Site rules: the chart's rules/*.yaml and .Values.siteRules, as ConfigMap data. */}}
{{- define "consent-gateway.siteRules" -}}
{{- range $path, $_ := .Files.Glob "rules/*.yaml" }}
{{ base $path }}: |
{{ $.Files.Get $path | indent 2 }}
{{- end }}
{{- range $name, $text := .Values.siteRules }}
{{ $name }}: |
{{ $text | indent 2 }}
{{- end }}
{{- end }}

{{/* The gateway's config.yaml: .Values.config, with the site rules' folder added to
rules.paths when there are site rules (an empty rules folder is refused at load). */}}
{{- define "consent-gateway.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if trim (include "consent-gateway.siteRules" .) }}
{{- $rules := default dict $config.rules }}
{{- $paths := default (list "/app/rules") $rules.paths }}
{{- $_ := set $rules "paths" (append $paths "/etc/consent-gateway/rules") }}
{{- $_ := set $config "rules" $rules }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The secrets the config names by environment variable, from the existing Secret(s)
named in .Values.secrets: never a value in the chart. */}}
{{- define "consent-gateway.secretEnv" -}}
{{- range .Values.config.cookie.keys }}
{{- $ref := required (printf "secrets.cookieKeys.%s: the Secret holding cookie key %s" .id .id) (index $.Values.secrets.cookieKeys .id) }}
- name: {{ .secret_env }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.existingSecret }}
      key: {{ $ref.key }}
{{- end }}
- name: {{ .Values.config.admin.token_env }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.adminToken.existingSecret }}
      key: {{ .Values.secrets.adminToken.key }}
- name: {{ .Values.config.store.postgres_dsn_env }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.postgresDsn.existingSecret }}
      key: {{ .Values.secrets.postgresDsn.key }}
{{- end }}
