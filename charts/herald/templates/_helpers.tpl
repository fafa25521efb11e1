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

{{/* The bundled NATS: its StatefulSet and client Service name (≤ 52 characters, so that its pods'
controller-revision-hash label stays within 63). */}}
{{- define "herald.natsName" -}}{{ printf "%s-nats" (include "herald.fullname" . | trunc 47 | trimSuffix "-") }}{{- end -}}

{{/* The bundled NATS's pods: a component of their own, so no gateway selector ever matches them. */}}
{{- define "herald.natsSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: nats
{{- end -}}

{{- define "herald.natsLabels" -}}
{{ include "herald.natsSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.nats.bundled.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The NATS the gateways use: the bundled server's client Service, or nats.url ("" = none). */}}
{{- define "herald.natsUrl" -}}
{{- if .Values.nats.bundled.enabled -}}
nats://{{ include "herald.natsName" . }}.{{ .Release.Namespace }}.svc:4222
{{- else -}}
{{ .Values.nats.url }}
{{- end -}}
{{- end -}}

{{/* JSON map of NATS credential files: setting name → key in nats.existingSecret. */}}
{{- define "herald.natsFiles" -}}
{{- $n := .Values.nats -}}
{{- $f := dict -}}
{{- if $n.passwordKey }}{{ $_ := set $f "HERALD_NATS_PASSWORD_FILE" $n.passwordKey }}{{ end -}}
{{- if $n.credsKey }}{{ $_ := set $f "HERALD_NATS_CREDS_FILE" $n.credsKey }}{{ end -}}
{{- if $n.tokenKey }}{{ $_ := set $f "HERALD_NATS_TOKEN_FILE" $n.tokenKey }}{{ end -}}
{{- if $n.tlsCaKey }}{{ $_ := set $f "HERALD_NATS_TLS_CA_FILE" $n.tlsCaKey }}{{ end -}}
{{- if $n.tlsCertKey }}{{ $_ := set $f "HERALD_NATS_TLS_CERT_FILE" $n.tlsCertKey }}{{ end -}}
{{- if $n.tlsKeyKey }}{{ $_ := set $f "HERALD_NATS_TLS_KEY_FILE" $n.tlsKeyKey }}{{ end -}}
{{- toJson $f -}}
{{- end -}}

{{/* Bytes of the bundled NATS's volume (the schema allows <n>Mi, <n>Gi or <n>Ti). */}}
{{- define "herald.natsVolumeBytes" -}}
{{- $size := .Values.nats.bundled.persistence.size -}}
{{- $unit := dict "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- mul (regexFind "^[0-9]+" $size | int64) (index $unit (regexFind "[MGT]i$" $size)) -}}
{{- end -}}

{{/* JetStream's max_file_store: 3/4 of the volume, leaving room for the filesystem and the store's
own indexes (nats-server picks 3/4 of the free disk itself when left unset). */}}
{{- define "herald.natsMaxFileStore" -}}{{ div (mul (include "herald.natsVolumeBytes" . | int64) 3) 4 }}{{- end -}}

{{/* nats.conf of the bundled NATS. The store directory and server name come from the command line. */}}
{{- define "herald.natsConfig" -}}
# One JetStream server for a quick start (values.yaml, nats.bundled).
port: 4222
http_port: 8222
jetstream {
  # 3/4 of the volume. JetStream reserves a stream's max_bytes when the stream is created and
  # refuses one that does not fit, so the chart checks HERALD_STREAM_MAX_BYTES against this.
  max_file_store: {{ include "herald.natsMaxFileStore" . }}
}
{{- end -}}

{{/* The JetStream stream's byte limit the gateways will ask for: HERALD_STREAM_MAX_BYTES or its
default (services/gateway/src/config.ts; a chart test keeps the two in step). */}}
{{- define "herald.streamMaxBytes" -}}{{ index .Values.config "HERALD_STREAM_MAX_BYTES" | default 1073741824 | int64 }}{{- end -}}

{{- define "herald.validate" -}}
{{- $n := .Values.nats -}}
{{- if and $n.url $n.bundled.enabled -}}
{{- fail "nats.url and nats.bundled.enabled are both set: use one (the bundled NATS is for a quick start; in production install the official NATS chart and set nats.url)" -}}
{{- end -}}
{{- if and (not (include "herald.natsUrl" .)) (or .Values.hpa.enabled (gt (int .Values.replicas) 1)) -}}
{{- fail "more than one gateway (replicas > 1 or hpa.enabled) needs nats.url or nats.bundled.enabled: the memory broker is per pod" -}}
{{- end -}}
{{- $natsFiles := include "herald.natsFiles" . | fromJson -}}
{{- if and $natsFiles (not $n.existingSecret) -}}
{{- $set := list -}}
{{- range $k := list "passwordKey" "credsKey" "tokenKey" "tlsCaKey" "tlsCertKey" "tlsKeyKey" -}}
{{- if index $n $k }}{{ $set = append $set (printf "nats.%s" $k) }}{{ end -}}
{{- end -}}
{{- fail (printf "%s name keys of nats.existingSecret, which is not set" (join ", " $set)) -}}
{{- end -}}
{{- if ne (empty $n.tlsCertKey) (empty $n.tlsKeyKey) -}}
{{- fail "nats.tlsCertKey and nats.tlsKeyKey go together: a client certificate is useless without its key" -}}
{{- end -}}
{{- if $n.bundled.enabled -}}
{{- if or $n.user $n.existingSecret $natsFiles -}}
{{- fail "the bundled NATS has no users, tokens or TLS (its NetworkPolicy decides who reaches it): nats.user, nats.existingSecret and its keys are for an external server set with nats.url" -}}
{{- end -}}
{{- if gt (index .Values.config "HERALD_STREAM_REPLICAS" | default 1 | int) 1 -}}
{{- fail "the bundled NATS is a single server: HERALD_STREAM_REPLICAS must be 1 (replicated streams need a NATS cluster, e.g. the official NATS chart, and nats.url)" -}}
{{- end -}}
{{- $store := include "herald.natsMaxFileStore" . | int64 -}}
{{- $stream := include "herald.streamMaxBytes" . | int64 -}}
{{- if lt $store $stream -}}
{{- fail (printf "nats.bundled.persistence.size %s leaves JetStream %d bytes (3/4 of the volume), less than the stream's %d (HERALD_STREAM_MAX_BYTES): JetStream would refuse the stream and no gateway would become ready; raise the size or lower HERALD_STREAM_MAX_BYTES" $n.bundled.persistence.size $store $stream) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.hpa.enabled (lt (int .Values.hpa.maxReplicas) (int .Values.hpa.minReplicas)) -}}
{{- fail "hpa.maxReplicas must be at least hpa.minReplicas" -}}
{{- end -}}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) -}}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs" -}}
{{- end -}}
{{- end -}}
