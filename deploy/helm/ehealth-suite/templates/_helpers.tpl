{{/*
Names, labels, the list of services, and a TOML writer. Every other template loops over
"ehealth.services" and renders the enabled ones.
*/}}

{{- define "ehealth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ehealth.fullname" -}}
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

{{/*
The services of the suite as a YAML list: values key, binary (= component) name, environment
prefix. A new service is one line here plus its values section.
*/}}
{{- define "ehealth.services" -}}
- {key: cpsRelay, name: cps-relay, envPrefix: CPS_RELAY_}
- {key: dmpGateway, name: dmp-gateway, envPrefix: DMP_GATEWAY_}
- {key: twiinAuthz, name: twiin-authz, envPrefix: TWIIN_AUTHZ_}
{{- end -}}

{{/* Resource name of one service: <fullname>-<service>. Argument: (dict "root" $ "svc" $svc). */}}
{{- define "ehealth.svcname" -}}
{{- printf "%s-%s" (include "ehealth.fullname" .root) .svc.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ehealth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ehealth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ehealth-suite
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one service. Argument: (dict "root" $ "svc" $svc). */}}
{{- define "ehealth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ehealth.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc.name }}
{{- end -}}

{{/* All labels of one service's resources. Argument: (dict "root" $ "svc" $svc). */}}
{{- define "ehealth.svcLabels" -}}
{{ include "ehealth.labels" .root }}
app.kubernetes.io/component: {{ .svc.name }}
{{- end -}}

{{- define "ehealth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ehealth.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference of one service. Argument: (dict "root" $ "svc" $svc "v" $values). */}}
{{- define "ehealth.image" -}}
{{- $img := mergeOverwrite (deepCopy .root.Values.image) (.v.image | default dict) -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the TLS Secret of one service. Argument: (dict "root" $ "svc" $svc "v" $values). */}}
{{- define "ehealth.tlsSecret" -}}
{{- if .v.tls.existingSecret -}}
{{- .v.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "ehealth.svcname" .) -}}
{{- end -}}
{{- end -}}

{{/* Name of the database Secret, empty when DATABASE_URL is not configured. */}}
{{- define "ehealth.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if .Values.database.url -}}
{{- printf "%s-database" (include "ehealth.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The configuration file of one service: the free-form `config` values under the keys the chart
manages. Argument: (dict "root" $ "svc" $svc "v" $values).
*/}}
{{- define "ehealth.config" -}}
{{- $v := .v -}}
{{- if and (eq .svc.name "dmp-gateway") (not (and $v.tls.enabled $v.tls.clientAuth)) (not (dig "development" false ($v.config | default dict))) -}}
{{- fail "dmpGateway.tls.clientAuth: dmp-gateway names its callers by their client certificates and refuses to start without them (issue 13); keep tls.enabled and tls.clientAuth on, or set dmpGateway.config.development=true for a trial" -}}
{{- end -}}
{{- $server := dict "listen" (printf "0.0.0.0:%d" (int $v.ports.grpc)) "health_listen" (printf "0.0.0.0:%d" (int $v.ports.health)) -}}
{{- if or $v.tls.enabled (eq .svc.name "cps-relay") -}}
{{- $tls := dict "cert" "/etc/ehealth/tls/tls.crt" "key" "/etc/ehealth/tls/tls.key" -}}
{{- if or $v.tls.clientAuth (eq .svc.name "cps-relay") -}}
{{- $_ := set $tls "client_ca" "/etc/ehealth/tls/ca.crt" -}}
{{- end -}}
{{- $_ := set $server "tls" $tls -}}
{{- end -}}
{{- $managed := dict "server" $server "metrics" (dict "listen" (printf "0.0.0.0:%d" (int $v.ports.metrics))) "telemetry" (dict "log_format" .root.Values.telemetry.logFormat "log_filter" .root.Values.telemetry.logFilter) -}}
{{- if and (eq .svc.name "cps-relay") $v.pinning.enabled $v.pinning.fingerprints -}}
{{- /* Pinning on (the default): only the listed client certificates (secrets.yaml refuses an empty list). */ -}}
{{- $_ := set $managed "access" (dict "allowed_clients" $v.pinning.fingerprints) -}}
{{- end -}}
{{- if and (eq .svc.name "twiin-authz") $v.oauth.listenKey -}}
{{- $parts := splitList "." $v.oauth.listenKey -}}
{{- if ne (len $parts) 2 -}}
{{- fail (printf "twiinAuthz.oauth.listenKey must be `section.key`, got %q" $v.oauth.listenKey) -}}
{{- end -}}
{{- $_ := set $managed (index $parts 0) (dict (index $parts 1) (printf "0.0.0.0:%d" (int $v.ports.oauth))) -}}
{{- end -}}
{{- if eq .svc.name "twiin-authz" -}}
{{- include "ehealth.twiin.checks" . -}}
{{- /* The OAuth2 endpoint serves TLS with the listener's certificate (external GtKs send bearer assertions). */ -}}
{{- if $v.tls.enabled -}}
{{- $http := index $managed "http" | default dict -}}
{{- $_ := set $http "tls" (dict "cert" "/etc/ehealth/tls/tls.crt" "key" "/etc/ehealth/tls/tls.key") -}}
{{- $_ := set $managed "http" $http -}}
{{- end -}}
{{- $_ := set $managed "replicas" (include "ehealth.twiin.replicas" . | int) -}}
{{- end -}}
{{- if .root.Values.database.migrations.enabled -}}
{{- /* The hook Job migrates with the owner role; the services' role can only check. */ -}}
{{- $_ := set $managed "audit" (dict "migrations" "check") -}}
{{- end -}}
{{- $config := mustMergeOverwrite (deepCopy ($v.config | default dict)) $managed -}}
# {{ .svc.name }} configuration, rendered by the ehealth-suite chart.
{{- include "ehealth.toml.table" (dict "table" $config "prefix" "") }}
{{- end -}}

{{/* Most replicas twiin-authz runs with. Argument: (dict "root" $ "svc" $svc "v" $values). */}}
{{- define "ehealth.twiin.replicas" -}}
{{- if .v.autoscaling.enabled -}}{{ max (int .v.autoscaling.maxReplicas) (int .v.autoscaling.minReplicas) }}{{- else -}}{{ int .v.replicaCount }}{{- end -}}
{{- end -}}

{{/*
twiin-authz is safe by default (services/twiin-authz/README.md): refuse to render what it would
refuse to start with, naming the value. Argument: (dict "root" $ "svc" $svc "v" $values).
*/}}
{{- define "ehealth.twiin.checks" -}}
{{- $v := .v -}}
{{- $c := $v.config | default dict -}}
{{- $replicas := include "ehealth.twiin.replicas" . | int -}}
{{- if and (gt $replicas 1) (not (include "ehealth.databaseSecret" .root)) -}}
{{- fail (printf "twiinAuthz: %d replicas need the PostgreSQL audit log (database.url or database.existingSecret): with SQLite each replica keeps its own jti replay store, so a replayed assertion would be accepted by another replica" $replicas) -}}
{{- end -}}
{{- if not $c.development -}}
{{- range $key := list "issuer" "stelsel.url" "zorg_ab.url" "as_za.token_url" -}}
{{- $val := $c -}}
{{- range $part := splitList "." $key -}}
{{- if kindIs "map" $val -}}{{- $val = index $val $part | default "" -}}{{- else -}}{{- $val = "" -}}{{- end -}}
{{- end -}}
{{- if not (hasPrefix "https://" (toString $val)) -}}
{{- fail (printf "twiinAuthz.config.%s: an https URL is required outside development mode (config.development: true only for a trial)" $key) -}}
{{- end -}}
{{- end -}}
{{- if not (($c.resource_broker | default dict).identities) -}}
{{- fail "twiinAuthz.config.resource_broker.identities: the Resource Broker's certificate identity (SHA-256 fingerprint or DNS name) is required outside development mode" -}}
{{- end -}}
{{- if not $v.tls.enabled -}}
{{- fail "twiinAuthz.tls.enabled: twiin-authz refuses plaintext listeners outside development mode (config.development: true only for a trial behind a TLS-terminating mesh)" -}}
{{- end -}}
{{- if not $v.tls.clientAuth -}}
{{- fail "twiinAuthz.tls.clientAuth: use case 3.1 needs caller mTLS outside development mode" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
TOML writer. Helm's toToml writes every number as a float (values are JSON-decoded), which the
services' integer keys reject; this one writes whole numbers as integers.
*/}}
{{- define "ehealth.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "ehealth.toml.value" -}}
{{- $k := kindOf . -}}
{{- if eq $k "string" -}}{{ toJson . }}
{{- else if eq $k "bool" -}}{{ . }}
{{- else if eq $k "float64" -}}{{ if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if has $k (list "int" "int64" "int32" "uint64") -}}{{ . }}
{{- else if eq $k "slice" -}}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "ehealth.toml.value" $e }}{{ end }}]
{{- else if eq $k "map" -}}{ {{- range $i, $key := keys . | sortAlpha }}{{ if $i }},{{ end }} {{ include "ehealth.toml.key" $key }} = {{ include "ehealth.toml.value" (index $ $key) }}{{ end }} }
{{- else -}}{{ fail (printf "cannot write a %s as TOML" $k) }}
{{- end -}}
{{- end -}}

{{- define "ehealth.toml.table" -}}
{{- $t := .table -}}
{{- $prefix := .prefix -}}
{{- range $key := keys $t | sortAlpha -}}
{{- $val := index $t $key -}}
{{- if and (ne (kindOf $val) "map") (ne (kindOf $val) "invalid") }}
{{ include "ehealth.toml.key" $key }} = {{ include "ehealth.toml.value" $val }}
{{- end -}}
{{- end -}}
{{- range $key := keys $t | sortAlpha -}}
{{- $val := index $t $key -}}
{{- if eq (kindOf $val) "map" -}}
{{- $name := include "ehealth.toml.key" $key -}}
{{- if $prefix -}}{{- $name = printf "%s.%s" $prefix $name -}}{{- end }}

[{{ $name }}]
{{- include "ehealth.toml.table" (dict "table" $val "prefix" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
What the Secrets the chart renders for one service hold (the database URL, the TLS Secret, the
secret files), for the pods' checksum/secrets annotation: a change rolls the pods. Only a digest
reaches the pod template. Argument: (dict "root" $ "svc" $svc "v" $values).
*/}}
{{- define "ehealth.secretsDigest" -}}
{{- $v := .v -}}
{{- $root := .root -}}
database={{ if not $root.Values.database.existingSecret }}{{ $root.Values.database.url }}{{ else }}secret:{{ $root.Values.database.existingSecret }}{{ end }}
tls={{ $v.tls.existingSecret }}|{{ $v.tls.cert }}|{{ $v.tls.key }}|{{ $v.tls.ca }}
files={{ $v.existingSecretFiles }}|{{ toJson $v.secretFiles }}
{{- end -}}

