{{/* Common labels. */}}
{{- define "weir.labels" -}}
app.kubernetes.io/part-of: weir
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The api's PostgreSQL Secret: api.databaseSecret (deprecated, key `url`) or api.database.secretName. */}}
{{- define "weir.api.databaseSecretName" -}}
{{- .Values.api.databaseSecret | default .Values.api.database.secretName -}}
{{- end -}}
{{- define "weir.api.databaseSecretKey" -}}
{{- if .Values.api.databaseSecret -}}url{{- else -}}{{ .Values.api.database.secretKey }}{{- end -}}
{{- end -}}

{{/* WEIR_PUBLIC_URL: api.publicUrl, else from the ingress host; empty: the api's default. */}}
{{- define "weir.api.publicUrl" -}}
{{- if .Values.api.publicUrl -}}
{{- .Values.api.publicUrl -}}
{{- else if and .Values.api.ingress.enabled .Values.api.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.api.ingress.tls.enabled) .Values.api.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* Value combinations the schema cannot say clearly: fail the render, naming the values. */}}
{{- define "weir.api.validate" -}}
{{- $a := .Values.api -}}
{{- if $a.database.sqlite.enabled -}}
{{- if ne (int $a.replicas) 1 -}}
{{- fail (printf "api.replicas is %v, but api.database.sqlite.enabled is true: SQLite is one process, so api.replicas must be 1 (use PostgreSQL, api.database.secretName, for more replicas)" $a.replicas) -}}
{{- end -}}
{{- else -}}
{{- if not (include "weir.api.databaseSecretName" .) -}}
{{- fail "api.database.secretName is empty: name the Secret that holds the PostgreSQL URL (key api.database.secretKey), or set api.database.sqlite.enabled=true" -}}
{{- end -}}
{{- if not $a.masterKey.secretName -}}
{{- fail "api.masterKey.secretName is empty: with PostgreSQL the api needs its master key (WEIR_MASTER_KEY) from a Secret" -}}
{{- end -}}
{{- end -}}
{{- if $a.oidc.enabled -}}
{{- if not $a.oidc.issuer -}}
{{- fail "api.oidc.enabled is true but api.oidc.issuer is empty" -}}
{{- end -}}
{{- if not $a.oidc.clientId -}}
{{- fail "api.oidc.enabled is true but api.oidc.clientId is empty" -}}
{{- end -}}
{{- if not (include "weir.api.publicUrl" .) -}}
{{- fail "api.oidc.enabled is true but the api has no public URL for the OIDC redirect: set api.publicUrl, or api.ingress.enabled with api.ingress.host" -}}
{{- end -}}
{{- end -}}
{{- if $a.ingress.enabled -}}
{{- if not $a.ingress.host -}}
{{- fail "api.ingress.enabled is true but api.ingress.host is empty" -}}
{{- end -}}
{{- if and $a.ingress.tls.enabled (not $a.ingress.tls.secretName) -}}
{{- fail "api.ingress.tls.enabled is true but api.ingress.tls.secretName is empty" -}}
{{- end -}}
{{- end -}}
{{- end -}}
