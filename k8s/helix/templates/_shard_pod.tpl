{{/* The shard pod template, shared by the StatefulSet and the LeaderWorkerSet.

Each pod runs `helix shard --local-ranks L`: L processes, one per GPU of the pod, with
rank = pod index x L + j, gRPC port = grpc + j and metrics port = metrics + j. The pod index
comes from the workload's pod-index label through the downward API; on clusters that lack the
label (StatefulSet before Kubernetes 1.28) the variable is empty and the wrapper reads it from
the hostname's ordinal suffix ("<name>-3", and LeaderWorkerSet's "<name>-0-3"). */}}

{{/* Engine flags left null are not passed (the CLI's default applies); integer flags go through
int64 so that large values never print as 1e+06. */}}
{{- define "helix.shardArgs" -}}
{{- $world := include "helix.worldSize" . | int -}}
{{- $args := list "shard" "--model" .Values.model.path "--plan" .Values.plan
    "--world-size" (toString $world) "--local-ranks" (toString (int .Values.shards.gpusPerPod))
    "--rendezvous" (include "helix.rendezvous" .) "--device" .Values.shards.device "--dtype" .Values.dtype
    "--host" "0.0.0.0" "--port" (toString (int .Values.shards.ports.grpc)) -}}
{{- if .Values.metrics.enabled -}}
{{- $args = concat $args (list "--metrics-port" (toString (int .Values.shards.ports.metrics))) -}}
{{- else -}}
{{- $args = append $args "--no-metrics" -}}
{{- end -}}
{{- $intFlags := dict "kvPages" "--kv-pages" "pageSize" "--page-size" "stageSize" "--stage-size"
    "prefillChunk" "--prefill-chunk" "hopbPieces" "--hopb-pieces" "maxBatchSize" "--max-batch-size"
    "profileEvery" "--profile-every" -}}
{{- range $key, $flag := $intFlags -}}
{{- $value := index $.Values.engine $key -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $args = concat $args (list $flag (toString (int64 $value))) -}}
{{- end -}}
{{- end -}}
{{- $secondsFlags := dict "collectiveTimeoutS" "--collective-timeout-s" "joinTimeoutS" "--join-timeout-s"
    "drainGraceS" "--drain-grace-s" -}}
{{- range $key, $flag := $secondsFlags -}}
{{- $value := index $.Values.engine $key -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $args = concat $args (list $flag (toString $value)) -}}
{{- end -}}
{{- end -}}
{{- with .Values.engine.allReduce -}}
{{- $args = concat $args (list "--all-reduce" .) -}}
{{- end -}}
{{- with .Values.engine.exchange -}}
{{- $args = concat $args (list "--exchange" .) -}}
{{- end -}}
{{- $smallLinear := .Values.engine.smallLinear -}}
{{- if kindIs "bool" $smallLinear -}}{{/* YAML reads a bare on/off as a boolean */}}
{{- $smallLinear = ternary "on" "off" $smallLinear -}}
{{- end -}}
{{- with $smallLinear -}}
{{- $args = concat $args (list "--small-linear" .) -}}
{{- end -}}
{{- with .Values.engine.oProjection -}}
{{- $args = concat $args (list "--o-projection" .) -}}
{{- end -}}
{{- with .Values.model.name -}}
{{- $args = concat $args (list "--model-name" .) -}}
{{- end -}}
{{- $args = concat $args .Values.engine.extraArgs -}}
{{- toYaml $args -}}
{{- end -}}

{{/* NCCL and gloo settings as environment variables. */}}
{{- define "helix.ncclEnv" -}}
{{- with .Values.nccl.socketIfname }}
- name: NCCL_SOCKET_IFNAME
  value: {{ . | quote }}
- name: GLOO_SOCKET_IFNAME
  value: {{ . | quote }}
{{- end }}
- name: NCCL_IB_DISABLE
  value: {{ ternary "0" "1" .Values.nccl.ib.enabled | quote }}
{{- with .Values.nccl.ib.hca }}
- name: NCCL_IB_HCA
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.nccl.ib.gidIndex) }}
- name: NCCL_IB_GID_INDEX
  value: {{ int64 .Values.nccl.ib.gidIndex | toString | quote }}
{{- end }}
{{- with .Values.nccl.debug }}
- name: NCCL_DEBUG
  value: {{ . | quote }}
{{- end }}
{{- with .Values.nccl.debugSubsys }}
- name: NCCL_DEBUG_SUBSYS
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.nccl.extraEnv }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "helix.shardResources" -}}
{{- $resources := deepCopy (default dict .Values.shards.resources) -}}
{{- if eq .Values.shards.device "cuda" -}}
{{- $limits := default dict $resources.limits -}}
{{- $_ := set $limits .Values.shards.gpuResource (int .Values.shards.gpusPerPod) -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* pass (dict "root" $ "podIndexLabel" "apps.kubernetes.io/pod-index") */}}
{{- define "helix.shardPodTemplate" -}}
{{- $root := .root -}}
{{- with $root -}}
{{- $perPod := int .Values.shards.gpusPerPod -}}
metadata:
  labels:
    {{- include "helix.componentLabels" (dict "root" . "component" "shard") | nindent 4 }}
    {{- with .Values.shards.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: shard
    {{- with .Values.shards.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "helix.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.shards.hostNetwork }}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  {{- with .Values.shards.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ int .Values.shards.terminationGracePeriodSeconds }}
  {{- with .Values.shards.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: shard
      image: {{ include "helix.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - /bin/sh
        - -c
        - export HELIX_POD_INDEX="${HELIX_POD_INDEX:-${HOSTNAME##*-}}"; exec helix "$@"
        - helix
      args:
        {{- include "helix.shardArgs" . | nindent 8 }}
      env:
        - name: HELIX_POD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['{{ $.podIndexLabel }}']
        # Triton compiles its kernels at run time; keep its cache off the image's filesystem.
        - name: TRITON_CACHE_DIR
          value: /tmp/triton
        {{- if eq .Values.shards.device "cuda" }}
        {{- include "helix.ncclEnv" . | trim | nindent 8 }}
        {{- end }}
        {{- with .Values.shards.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: rendezvous
          containerPort: {{ int .Values.shards.ports.rendezvous }}
          protocol: TCP
        {{- range $j := until $perPod }}
        - name: grpc-{{ $j }}
          containerPort: {{ add (int $root.Values.shards.ports.grpc) $j }}
          protocol: TCP
        {{- end }}
        {{- if .Values.metrics.enabled }}
        {{- range $j := until $perPod }}
        - name: metrics-{{ $j }}
          containerPort: {{ add (int $root.Values.shards.ports.metrics) $j }}
          protocol: TCP
        {{- end }}
        {{- end }}
      {{- $health := dict "port" (int .Values.shards.ports.grpc) "service" "helix.v1.Shard" }}
      startupProbe:
        {{- include "helix.grpcProbe" (merge (dict "probe" .Values.shards.probes.startup) $health) | nindent 8 }}
      readinessProbe:
        {{- include "helix.grpcProbe" (merge (dict "probe" .Values.shards.probes.readiness) $health) | nindent 8 }}
      livenessProbe:
        {{- include "helix.grpcProbe" (merge (dict "probe" .Values.shards.probes.liveness) $health) | nindent 8 }}
      resources:
        {{- include "helix.shardResources" . | nindent 8 }}
      {{- with .Values.shards.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- include "helix.modelVolumeMount" . | nindent 8 }}
        - name: dshm
          mountPath: /dev/shm
        - name: tmp
          mountPath: /tmp
        {{- with .Values.shards.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    {{- include "helix.modelVolume" . | nindent 4 }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ .Values.shards.shmSize }}
    - name: tmp
      emptyDir: {}
    {{- with .Values.shards.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.shards.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.shards.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.shards.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}
