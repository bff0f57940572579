{{/*
The chart's name (nameOverride replaces it).
*/}}
{{- define "warren.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: "<release>-warren", or the release name when it already
contains the chart's name. At most 52 characters: pod names add "-<ordinal>", the
StatefulSet's controller-revision-hash label adds 11 characters, and the headless Service
adds "-headless", all within the 63 of a DNS label.
*/}}
{{- define "warren.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "warren.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "warren.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warren.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "warren.labels" -}}
helm.sh/chart: {{ include "warren.chart" . }}
{{ include "warren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: warren
{{- end }}

{{/* The headless Service that gives each pod its stable DNS name. */}}
{{- define "warren.headlessName" -}}
{{- printf "%s-headless" (include "warren.fullname" .) }}
{{- end }}

{{/* The Secret holding default-user, default-pass and cluster-secret. */}}
{{- define "warren.secretName" -}}
{{- default (include "warren.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "warren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "warren.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "warren.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The DNS domain of the headless Service: <headless>.<namespace>.svc.<clusterDomain>. */}}
{{- define "warren.peerDomain" -}}
{{- printf "%s.%s.svc.%s" (include "warren.headlessName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
WARREN_PEERS: every pod's cluster address, the same list on every pod,
"<fullname>-0.<domain>:25672,<fullname>-1.<domain>:25672,...".
*/}}
{{- define "warren.peers" -}}
{{- $full := include "warren.fullname" . }}
{{- $domain := include "warren.peerDomain" . }}
{{- $peers := list }}
{{- range $i := until (int .Values.replicaCount) }}
{{- $peers = append $peers (printf "%s-%d.%s:25672" $full $i $domain) }}
{{- end }}
{{- join "," $peers }}
{{- end }}

{{/* One TOML value: a string, boolean, number (integral numbers as integers) or array. */}}
{{- define "warren.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}
{{- toJson $v }}
{{- else if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else if kindIs "float64" $v }}
{{- if eq $v (float64 (int64 $v)) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}
{{- $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}
{{- $items = append $items (include "warren.tomlValue" .) }}
{{- end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else }}
{{- fail (printf "config: cannot write %v (%s) as a TOML value" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/*
The configuration file's content: .Values.config as given, with a memory_high_watermark that
`--set` handed over as a string ("0.4") read as the number it is. An empty map: no config
file, no ConfigMap. (Warren sizes its memory alarm itself: the fraction applies to the
container's memory limit where that is below the machine's RAM.)
*/}}
{{- define "warren.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if and (hasKey $config "memory_high_watermark") (kindIs "string" (get $config "memory_high_watermark")) }}
{{- $_ := set $config "memory_high_watermark" (float64 (get $config "memory_high_watermark")) }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/* warren.toml from warren.config: top-level keys first, then [[tables]]. */}}
{{- define "warren.toml" -}}
{{- $config := include "warren.config" . | fromJson }}
{{- $tables := list "users" "vhosts" "permissions" }}
# warren.toml rendered by the Helm chart from .Values.config
{{- range $key, $value := $config }}
{{- if not (has $key $tables) }}
{{- $toml := include "warren.tomlValue" $value }}
{{- if and (eq $key "memory_high_watermark") (regexMatch "^[0-9]+$" $toml) }}
{{- $toml = printf "%s.0" $toml }}{{/* a float key: 1 as 1.0 */}}
{{- end }}
{{ $key }} = {{ $toml }}
{{- end }}
{{- end }}
{{- range $table := $tables }}
{{- range (get $config $table | default list) }}

[[{{ $table }}]]
{{- range $key, $value := . }}
{{ $key }} = {{ include "warren.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
