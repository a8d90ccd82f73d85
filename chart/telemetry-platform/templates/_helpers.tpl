{{/*
Helpers shared by the umbrella chart and its subcharts (named templates are global in Helm).
Every object is named "<release>-<component>" so that one component can address another without
seeing its values: a subchart sees only its own values and .Values.global.
*/}}

{{/* "<release>-<component>"; call with (dict "ctx" $ "component" "brokers"). */}}
{{- define "tp.fullname" -}}
{{- printf "%s-%s" .ctx.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "brokers"). */}}
{{- define "tp.labels" -}}
{{ include "tp.selectorLabels" . }}
app.kubernetes.io/part-of: telemetry-platform
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The labels a selector matches; call with (dict "ctx" $ "component" "brokers"). */}}
{{- define "tp.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{/* The tmq image: global.image.repository:tag, the tag defaulting to the appVersion. */}}
{{- define "tp.image" -}}
{{- $image := .Values.global.image -}}
{{- printf "%s:%s" $image.repository (toString ($image.tag | default .Chart.AppVersion)) -}}
{{- end -}}

{{/* A Service's DNS name in the release namespace; call with (dict "ctx" $ "service" NAME). */}}
{{- define "tp.serviceHost" -}}
{{- printf "%s.%s.svc.%s" .service .ctx.Release.Namespace .ctx.Values.global.clusterDomain -}}
{{- end -}}

{{/* The brokers' headless Service: one DNS name per broker pod. */}}
{{- define "tp.brokers.headless" -}}
{{- printf "%s-headless" (include "tp.fullname" (dict "ctx" . "component" "brokers")) -}}
{{- end -}}

{{/* --bootstrap for clients: the brokers' client Service (any broker hands out the others). */}}
{{- define "tp.brokers.bootstrap" -}}
{{- $service := include "tp.fullname" (dict "ctx" . "component" "brokers") -}}
{{- printf "%s:9092" (include "tp.serviceHost" (dict "ctx" . "service" $service)) -}}
{{- end -}}

{{/* The etcd headless Service: one DNS name per member, also for not-ready members. */}}
{{- define "tp.etcd.headless" -}}
{{- printf "%s-headless" (include "tp.fullname" (dict "ctx" . "component" "etcd")) -}}
{{- end -}}

{{/* DNS name of etcd member i; call with (dict "ctx" $ "ordinal" i). */}}
{{- define "tp.etcd.memberHost" -}}
{{- $service := include "tp.etcd.headless" .ctx -}}
{{- printf "%s-%d.%s" (include "tp.fullname" (dict "ctx" .ctx "component" "etcd")) (int .ordinal) (include "tp.serviceHost" (dict "ctx" .ctx "service" $service)) -}}
{{- end -}}

{{/* The brokers' --metadata: etcd://member-0:2379,member-1:2379,... (global.etcd.replicaCount). */}}
{{- define "tp.etcd.metadata" -}}
{{- $members := list -}}
{{- range $i := until (int .Values.global.etcd.replicaCount) -}}
{{- $members = append $members (printf "%s:2379" (include "tp.etcd.memberHost" (dict "ctx" $ "ordinal" $i))) -}}
{{- end -}}
{{- printf "etcd://%s" (join "," $members) -}}
{{- end -}}

{{/* The Secret holding the DSN (TMQ_DSN) that the sink and the API read. */}}
{{- define "tp.database.secretName" -}}
{{- .Values.global.database.existingSecret | default (include "tp.fullname" (dict "ctx" . "component" "database")) -}}
{{- end -}}

{{/* The env entry TMQ_DSN taken from that Secret. */}}
{{- define "tp.database.dsnEnv" -}}
- name: TMQ_DSN
  valueFrom:
    secretKeyRef:
      name: {{ include "tp.database.secretName" . }}
      key: {{ .Values.global.database.dsnKey }}
{{- end -}}

{{/* imagePullSecrets from global.imagePullSecrets (a list of Secret names). */}}
{{- define "tp.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment common to every tmq container: the pod's name and the log format. */}}
{{- define "tp.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: TMQ_LOG_FORMAT
  value: {{ .Values.global.logFormat | quote }}
{{- end -}}

{{/* Pod annotations: Prometheus scrape hints (global.metrics.scrapeAnnotations) and
podAnnotations; call with (dict "ctx" $ "port" 9100 "path" "/metrics"). */}}
{{- define "tp.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .ctx.Values.global.metrics.scrapeAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) -}}
{{- $_ := set $annotations "prometheus.io/path" .path -}}
{{- end -}}
{{- $annotations = merge (deepCopy .ctx.Values.podAnnotations) $annotations -}}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod anti-affinity over nodes against the component's own pods: "soft" (preferred),
"hard" (required) or "none"; call with (dict "ctx" $ "component" "brokers" "mode" MODE). */}}
{{- define "tp.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "tp.selectorLabels" . | fromYaml)) -}}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- list $term | toYaml | nindent 4 }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- else if ne .mode "none" }}
{{- fail (printf "podAntiAffinity of %s must be soft, hard or none, not %q" .component .mode) }}
{{- end }}
{{- end -}}

{{/* Scheduling fields a pod spec takes from its values: nodeSelector, tolerations, affinity
(podAntiAffinity from the mode, merged with any extra affinity given). */}}
{{- define "tp.scheduling" -}}
{{- $affinity := include "tp.antiAffinity" . | fromYaml | default dict -}}
{{- $affinity = merge $affinity (deepCopy .ctx.Values.affinity) -}}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* KEY=VALUE for a --set option. YAML numbers arrive as floats: whole ones are printed as
integers (604800000, not 6.048e+08). Call with (list KEY VALUE). */}}
{{- define "tp.setting" -}}
{{- $key := index . 0 -}}
{{- $value := index . 1 -}}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) -}}
{{- printf "%s=%d" $key (int64 $value) -}}
{{- else -}}
{{- printf "%s=%v" $key $value -}}
{{- end -}}
{{- end -}}
