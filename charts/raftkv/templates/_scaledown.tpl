{{/*
The scale-down hook: a pre-upgrade Job that runs `raftctl scale N
--platform kube` before a helm upgrade lowers replicas, with a
ServiceAccount, Role and RoleBinding of its own. raftctl refuses, changing
nothing, when the remaining members could not keep a quorum; otherwise it
moves leadership off the members that go, removes them highest ordinal
first and lowers spec.replicas after each (the scale subresource), so that
the upgrade then applies the count the StatefulSet already has.

Called with (dict "root" . "live" STATEFULSET): the StatefulSet `lookup`
found (empty without a cluster). Renders nothing unless the hook is
enabled, this is an upgrade and the live StatefulSet has more replicas
than asked.
*/}}
{{- define "raftkv.scaleDownHook" -}}
{{- $ := .root -}}
{{- $live := .live | default dict -}}
{{- /* Defaults here too: `helm upgrade --reuse-values` from a chart
without scaleDownHook renders with that chart's values, which lack it. */ -}}
{{- $v := $.Values.scaleDownHook | default dict -}}
{{- $h := dict "enabled" (dig "enabled" true $v) "timeoutSeconds" (dig "timeoutSeconds" 300 $v) "deleteData" (dig "deleteData" false $v) "resources" (dig "resources" (dict "requests" (dict "cpu" "10m" "memory" "32Mi") "limits" (dict "memory" "128Mi")) $v) -}}
{{- $to := int $.Values.replicas -}}
{{- $from := int ((($live).spec | default dict).replicas | default 0) -}}
{{- if and $h.enabled $.Release.IsUpgrade (gt $from $to) -}}
{{- $name := printf "%s-scale-down" (include "raftkv.fullname" $) | trunc 63 | trimSuffix "-" -}}
{{- $hook := dict "helm.sh/hook" "pre-upgrade" "helm.sh/hook-delete-policy" "before-hook-creation,hook-succeeded" -}}
{{- $rbac := merge (dict "helm.sh/hook-weight" "-10") $hook -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "raftkv.scaleDownLabels" $ | nindent 4 }}
  annotations:
    {{- toYaml $rbac | nindent 4 }}
---
# What `raftctl scale --platform kube` calls from inside the cluster
# (members are reached by their DNS names: no port-forward): list the pods,
# set replicas through the StatefulSet's scale subresource, look for (and
# with deleteData delete) the removed members' volume claims.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "raftkv.scaleDownLabels" $ | nindent 4 }}
  annotations:
    {{- toYaml $rbac | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [list]
  - apiGroups: [apps]
    resources: [statefulsets/scale]
    resourceNames: [{{ include "raftkv.fullname" $ }}]
    verbs: [patch]
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    resourceNames:
      {{- range $i := until $from }}
      {{- if ge $i $to }}
      - {{ printf "data-%s-%d" (include "raftkv.fullname" $) $i }}
      {{- end }}
      {{- end }}
    verbs: [{{ if $h.deleteData }}get, delete{{ else }}get{{ end }}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "raftkv.scaleDownLabels" $ | nindent 4 }}
  annotations:
    {{- toYaml (merge (dict "helm.sh/hook-weight" "-5") $hook) | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $.Release.Namespace }}
---
# From {{ $from }} to {{ $to }} members. The image has no shell: raftctl is
# the container's command. A failure fails the upgrade; the Job and its pod
# stay for `kubectl logs` until the next upgrade replaces them.
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "raftkv.scaleDownLabels" $ | nindent 4 }}
  annotations:
    {{- toYaml (merge (dict "helm.sh/hook-weight" "0") $hook) | nindent 4 }}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: {{ int $h.timeoutSeconds }}
  template:
    metadata:
      labels:
        {{- include "raftkv.scaleDownLabels" $ | nindent 8 }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: true
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: raftctl
          image: {{ include "raftkv.image" $ }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          command: [/usr/local/bin/raftctl]
          args:
            - scale
            - {{ $to | quote }}
            - --platform
            - kube
            - --namespace
            - {{ $.Release.Namespace | quote }}
            - --name
            - {{ include "raftkv.fullname" $ | quote }}
            # The pods as the StatefulSet selects them, on the chart's port,
            # whatever the release and its values call them.
            - --selector
            - {{ include "raftkv.selectorQuery" $ | quote }}
            - --client-port
            - {{ int $.Values.ports.client | quote }}
            {{- if $h.deleteData }}
            - --delete-data
            {{- end }}
          {{- if $.Values.tls.enabled }}
          env:
            {{- include "raftkv.tls.clientEnv" $ | nindent 12 }}
          volumeMounts:
            - name: tls
              mountPath: {{ include "raftkv.tls.mountPath" $ }}
              readOnly: true
          {{- end }}
          securityContext:
            {{- toYaml $.Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml $h.resources | nindent 12 }}
      {{- if $.Values.tls.enabled }}
      volumes:
        {{- include "raftkv.tls.volume" (list (include "raftkv.tls.clientSecretName" $)) | nindent 8 }}
      {{- end }}
{{- end -}}
{{- end -}}

{{/* The StatefulSet's pod selector as raftctl's --selector (k=v,k=v). */}}
{{- define "raftkv.selectorQuery" -}}
{{- $pairs := list -}}
{{- range $k, $v := (include "raftkv.selectorLabels" . | fromYaml) -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* Whether the hook is on ("true" or ""), on by default. */}}
{{- define "raftkv.scaleDownHook.enabled" -}}
{{- if dig "enabled" true (.Values.scaleDownHook | default dict) -}}true{{- end -}}
{{- end -}}

{{/* Labels of the hook's objects and pod: their own name and component, so
that no selector of the workload takes the Job's pod for a member. */}}
{{- define "raftkv.scaleDownSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-scale-down" (include "raftkv.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftkv.scaleDownLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "raftkv.scaleDownSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: scale-down
app.kubernetes.io/part-of: raftkv
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
