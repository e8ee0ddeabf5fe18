{{/* Names, labels and the shard-group arithmetic shared by every template. */}}

{{- define "helix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release alone when it already contains the chart name.
Truncated to 40 so that "<fullname>-shard-<ordinal>" and its generated labels stay under 63. */}}
{{- define "helix.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "helix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "helix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "helix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "helix.labels" -}}
helm.sh/chart: {{ include "helix.chart" . }}
{{ include "helix.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: helix
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "shard"). */}}
{{- define "helix.componentSelectorLabels" -}}
{{ include "helix.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "helix.componentLabels" -}}
{{ include "helix.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "helix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "helix.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "helix.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The shard group: the StatefulSet (or LeaderWorkerSet) and its headless Service share this
name, so pod 0 is "<shardName>-0" and resolves as <shardName>-0.<shardName>.<ns>.svc.<domain>
(LeaderWorkerSet names its leader pod and its headless Service the same way). */}}
{{- define "helix.shardName" -}}
{{- printf "%s-shard" (include "helix.fullname" .) -}}
{{- end -}}

{{- define "helix.rank0Host" -}}
{{- $shard := include "helix.shardName" . -}}
{{- printf "%s-0.%s.%s.svc.%s" $shard $shard .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "helix.rendezvous" -}}
{{- printf "%s:%d" (include "helix.rank0Host" .) (int .Values.shards.ports.rendezvous) -}}
{{- end -}}

{{/* World size of the plan, as Plan.parse (helix_core/plan.py) reads it:
helix: kvp x tpa (tpa defaults to 1); tp: n; headslice: n x m. */}}
{{- define "helix.worldSize" -}}
{{- $spec := .Values.plan -}}
{{- $parts := splitn ":" 2 $spec -}}
{{- $kind := $parts._0 -}}
{{- $args := dict -}}
{{- range splitList "," (default "" $parts._1) -}}
{{- if . -}}
{{- $kv := splitList "=" . -}}
{{- $_ := set $args (trim (first $kv)) (atoi (trim (last $kv))) -}}
{{- end -}}
{{- end -}}
{{- if eq $kind "helix" -}}
{{- if not (hasKey $args "kvp") -}}{{- fail (printf "plan %q lacks kvp=" $spec) -}}{{- end -}}
{{- mul (get $args "kvp") (ternary (get $args "tpa") 1 (hasKey $args "tpa")) -}}
{{- else if eq $kind "tp" -}}
{{- if not (hasKey $args "n") -}}{{- fail (printf "plan %q lacks n=" $spec) -}}{{- end -}}
{{- get $args "n" -}}
{{- else if eq $kind "headslice" -}}
{{- if not (and (hasKey $args "n") (hasKey $args "m")) -}}{{- fail (printf "plan %q needs n= and m=" $spec) -}}{{- end -}}
{{- mul (get $args "n") (get $args "m") -}}
{{- else -}}
{{- fail (printf "plan %q: the kind must be helix, tp or headslice" $spec) -}}
{{- end -}}
{{- end -}}

{{/* Shard pods: world size / GPUs per pod, which must divide evenly (a pod holds whole ranks). */}}
{{- define "helix.shardPods" -}}
{{- $world := include "helix.worldSize" . | int -}}
{{- $perPod := int .Values.shards.gpusPerPod -}}
{{- if lt $world 1 -}}{{- fail (printf "plan %q has world size %d" .Values.plan $world) -}}{{- end -}}
{{- if ne (mod $world $perPod) 0 -}}
{{- fail (printf "plan %q needs %d shard processes, not a multiple of shards.gpusPerPod=%d; change one of them" .Values.plan $world $perPod) -}}
{{- end -}}
{{- div $world $perPod -}}
{{- end -}}

{{/* The model volume (PVC or hostPath). */}}
{{- define "helix.modelVolume" -}}
- name: model
{{- if eq .Values.model.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ .Values.model.pvc.claimName }}
    readOnly: true
{{- else }}
  hostPath:
    path: {{ .Values.model.hostPath.path }}
    type: {{ .Values.model.hostPath.type }}
{{- end }}
{{- end -}}

{{- define "helix.modelVolumeMount" -}}
- name: model
  mountPath: {{ .Values.model.path }}
  readOnly: true
{{- if and (eq .Values.model.source "pvc") .Values.model.pvc.subPath }}
  subPath: {{ .Values.model.pvc.subPath }}
{{- end }}
{{- end -}}

{{/* A gRPC probe of the standard health service: pass (dict "port" P "service" S "probe" values). */}}
{{- define "helix.grpcProbe" -}}
grpc:
  port: {{ .port }}
  service: {{ .service }}
periodSeconds: {{ .probe.periodSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
{{- end -}}
