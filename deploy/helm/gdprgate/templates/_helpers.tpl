{{/* Names and labels. */}}
{{- define "gdprgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The workload's name: the API's in sidecar mode, gdprgate's in shared mode. */}}
{{- define "gdprgate.workload" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- printf "%s-%s" .Release.Name .Values.app.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "gdprgate.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "gdprgate.selectorLabels" -}}
app.kubernetes.io/name: {{ if eq .Values.mode "sidecar" }}{{ .Values.app.name }}{{ else }}gdprgate{{ end }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gdprgate.labels" -}}
{{ include "gdprgate.selectorLabels" . }}
app.kubernetes.io/component: {{ if eq .Values.mode "sidecar" }}api-with-gdprgate{{ else }}gdprgate{{ end }}
app.kubernetes.io/part-of: gdprgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gdprgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gdprgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gdprgate.configMap" -}}
{{- default (printf "%s-config" (include "gdprgate.fullname" .)) .Values.existingConfigMap -}}
{{- end -}}

{{- define "gdprgate.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "gdprgate.fullname" .)) .Values.policy.existingConfigMap -}}
{{- end -}}

{{- define "gdprgate.hasPolicy" -}}
{{- if or .Values.policy.files .Values.policy.existingConfigMap }}yes{{ end -}}
{{- end -}}

{{/* The Redis URL from the values; exactly one way must be given. */}}
{{- define "gdprgate.redisURL" -}}
{{- $r := .Values.redis -}}
{{- $n := 0 -}}
{{- if $r.url }}{{ $n = add1 $n }}{{ end -}}
{{- if $r.existingSecret }}{{ $n = add1 $n }}{{ end -}}
{{- if $r.sentinel.addresses }}{{ $n = add1 $n }}{{ end -}}
{{- if $r.cluster.addresses }}{{ $n = add1 $n }}{{ end -}}
{{- if ne $n 1 -}}
{{- fail "redis: give exactly one of redis.url, redis.existingSecret, redis.sentinel.addresses or redis.cluster.addresses (gdprgate keeps its registers, evidence and audit trail there)" -}}
{{- end -}}
{{- if $r.url -}}
{{- $r.url -}}
{{- else if $r.sentinel.addresses -}}
{{- printf "redis-sentinel://%s/%s?db=%d" (join "," $r.sentinel.addresses) $r.sentinel.masterName (int $r.sentinel.db) -}}
{{- else if $r.cluster.addresses -}}
{{- printf "redis-cluster://%s" (join "," $r.cluster.addresses) -}}
{{- end -}}
{{- end -}}

{{/* The gdprgate container, the same in both modes. */}}
{{- define "gdprgate.container" -}}
- name: gdprgate
  image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - serve
    - --config
    - /etc/gdprgate/gdprgate.yaml
    {{- if include "gdprgate.hasPolicy" . }}
    - --policy
    - /etc/gdprgate/policy
    {{- end }}
  env:
    # All interfaces even beside Envoy: the kubelet's gRPC probe comes from
    # the node. The NetworkPolicy keeps other pods off this port.
    - name: GDPRGATE_GRPC_ADDR
      value: {{ printf "0.0.0.0:%d" (int .Values.ports.grpc) | quote }}
    - name: GDPRGATE_ADMIN_ADDR
      value: {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | quote }}
    - name: GDPRGATE_LOG_LEVEL
      value: {{ .Values.logLevel | quote }}
    {{- if .Values.redis.existingSecret }}
    - name: GDPRGATE_REDIS_URL
      valueFrom:
        secretKeyRef: {name: {{ .Values.redis.existingSecret }}, key: {{ .Values.redis.existingSecretKey }}}
    {{- else }}
    - name: GDPRGATE_REDIS_URL
      value: {{ include "gdprgate.redisURL" . | quote }}
    {{- end }}
    {{- if .Values.hashKey.existingSecret }}
    - name: GDPRGATE_HASH_KEY
      valueFrom:
        secretKeyRef: {name: {{ .Values.hashKey.existingSecret }}, key: {{ .Values.hashKey.existingSecretKey }}}
    {{- end }}
  ports:
    - {name: grpc, containerPort: {{ .Values.ports.grpc }}, protocol: TCP}
    - {name: admin, containerPort: {{ .Values.ports.admin }}, protocol: TCP}
  # Started when the gRPC health service answers SERVING; alive while
  # /healthz answers; ready (in the Service) while /readyz does: the store is
  # reachable and the registers and policy are loaded.
  startupProbe:
    grpc: {port: {{ .Values.ports.grpc }}}
    periodSeconds: 2
    failureThreshold: 60
  livenessProbe:
    httpGet: {path: /healthz, port: admin}
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /readyz, port: admin}
    periodSeconds: 5
    failureThreshold: 2
  resources: {{- toYaml .Values.resources | nindent 4 }}
  securityContext: {{- include "gdprgate.containerSecurity" . | nindent 4 }}
  volumeMounts:
    - {name: gdprgate-config, mountPath: /etc/gdprgate/gdprgate.yaml, subPath: gdprgate.yaml, readOnly: true}
    {{- if include "gdprgate.hasPolicy" . }}
    - {name: gdprgate-policy, mountPath: /etc/gdprgate/policy, readOnly: true}
    {{- end }}
{{- end -}}

{{- define "gdprgate.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "gdprgate.volumes" -}}
- name: gdprgate-config
  configMap: {name: {{ include "gdprgate.configMap" . }}}
{{- if include "gdprgate.hasPolicy" . }}
- name: gdprgate-policy
  configMap: {name: {{ include "gdprgate.policyConfigMap" . }}}
{{- end }}
{{- end -}}
