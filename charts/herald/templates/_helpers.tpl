{{- define "herald.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "herald.version" -}}{{ .Values.release.version | default .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "herald.labels" -}}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ include "herald.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
herald.dev/release: {{ include "herald.version" . | quote }}
{{- end -}}

{{/* The auth Secret's name: the user's, or the chart's own. */}}
{{- define "herald.authSecret" -}}{{ .Values.auth.existingSecret | default (printf "%s-auth" (include "herald.fullname" .)) }}{{- end -}}

{{/* True when the chart generates an HMAC secret (jwt mode, nothing else configured). */}}
{{- define "herald.generateSecret" -}}
{{- $a := .Values.auth -}}
{{- if and (eq $a.mode "jwt") (not $a.existingSecret) (not $a.jwtSecrets) (not $a.jwtKeys) (not (index .Values.config "HERALD_JWKS_URL")) -}}true{{- end -}}
{{- end -}}

{{/* JSON map of mounted auth files: setting name → key in the auth Secret. */}}
{{- define "herald.authFiles" -}}
{{- $a := .Values.auth -}}
{{- $f := dict -}}
{{- if eq $a.mode "jwt" -}}
{{- if $a.existingSecret -}}
{{- if $a.existingSecretKeys.jwtSecrets }}{{ $_ := set $f "HERALD_JWT_SECRETS_FILE" $a.existingSecretKeys.jwtSecrets }}{{ end -}}
{{- if $a.existingSecretKeys.jwtKeys }}{{ $_ := set $f "HERALD_JWT_KEYS_FILE" $a.existingSecretKeys.jwtKeys }}{{ end -}}
{{- if $a.existingSecretKeys.apiKeys }}{{ $_ := set $f "HERALD_API_KEYS_FILE" $a.existingSecretKeys.apiKeys }}{{ end -}}
{{- else -}}
{{- if or $a.jwtSecrets (include "herald.generateSecret" .) }}{{ $_ := set $f "HERALD_JWT_SECRETS_FILE" "jwt-secrets" }}{{ end -}}
{{- if $a.jwtKeys }}{{ $_ := set $f "HERALD_JWT_KEYS_FILE" "jwt-keys" }}{{ end -}}
{{- if $a.apiKeys }}{{ $_ := set $f "HERALD_API_KEYS_FILE" "api-keys" }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toJson $f -}}
{{- end -}}

{{- define "herald.validate" -}}
{{- if and (not .Values.nats.url) (or .Values.hpa.enabled (gt (int .Values.replicas) 1)) -}}
{{- fail "more than one gateway (replicas > 1 or hpa.enabled) needs nats.url: the memory broker is per pod" -}}
{{- end -}}
{{- if and .Values.hpa.enabled (lt (int .Values.hpa.maxReplicas) (int .Values.hpa.minReplicas)) -}}
{{- fail "hpa.maxReplicas must be at least hpa.minReplicas" -}}
{{- end -}}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) -}}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs" -}}
{{- end -}}
{{- end -}}
