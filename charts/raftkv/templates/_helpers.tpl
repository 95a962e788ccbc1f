{{/* Names, labels and the render guards. */}}

{{- define "raftkv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The StatefulSet name, which is also the pod-name prefix the node takes its
ordinal from and the prefix of every peer DNS name.
*/}}
{{- define "raftkv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "raftkv.headless" -}}
{{- printf "%s-headless" (include "raftkv.fullname" .) -}}
{{- end -}}

{{- define "raftkv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "raftkv.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "raftkv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raftkv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftkv.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "raftkv.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: kv-store
app.kubernetes.io/part-of: raftkv
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Labels of the `helm test` pod: its own name and component, so that none of
the workload's selectors (StatefulSet, PDB, Services, monitors, affinity,
NetworkPolicy) takes it for a member.
*/}}
{{- define "raftkv.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "raftkv.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftkv.testLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "raftkv.testSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: raftkv
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "raftkv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The rules file or a dashboard (list TEXT $) with the label `cluster` renamed
to monitoring.clusterLabel, where they use it as a label: grouping and join
lists, matchers, label_values, legends and $labels in annotations. Prose
("raftkv cluster") and the $cluster variable stay. Unchanged by default.
*/}}
{{- define "raftkv.withClusterLabel" -}}
{{- $text := index . 0 -}}
{{- $l := (index . 1).Values.monitoring.clusterLabel -}}
{{- if eq $l "cluster" -}}
{{- $text -}}
{{- else -}}
{{- $text | replace "(namespace, cluster" (printf "(namespace, %s" $l) | replace "cluster=\\\"$cluster" (printf "%s=\\\"$cluster" $l) | replace "}, cluster)" (printf "}, %s)" $l) | replace "{{cluster}}" (printf "{{%s}}" $l) | replace "$labels.cluster" (printf "$labels.%s" $l) -}}
{{- end -}}
{{- end -}}

{{/*
Guards: fail the render, with the reason, on values that would install a
cluster that cannot work. The schema catches types; these catch meaning.
*/}}
{{- define "raftkv.validate" -}}
{{- $r := int .Values.replicas -}}
{{- if lt $r 1 -}}
{{- fail (printf "replicas: %d is fewer than 1; a raftkv cluster needs at least one member" $r) -}}
{{- end -}}
{{- if eq (mod $r 2) 0 -}}
{{- fail (printf "replicas: %d is even; use an odd count (an even one adds a member that must also agree, without surviving one more failure)" $r) -}}
{{- end -}}
{{- $f := int .Values.cluster.initialMembers -}}
{{- if or (lt $f 1) (eq (mod $f 2) 0) -}}
{{- fail (printf "cluster.initialMembers: %d must be odd and at least 1" $f) -}}
{{- end -}}
{{- /* At install every founder needs a pod, or the founders never reach
the quorum they bootstrap with. After install fewer pods than founders is a
legitimate scale-down once the members were removed (raftctl scale does it
in that order; the upgrade must then carry the new count). */ -}}
{{- if and .Release.IsInstall (lt $r $f) -}}
{{- fail (printf "replicas: %d is fewer than cluster.initialMembers (%d): the founding members bootstrap together, so every one of them needs a pod at install; lower cluster.initialMembers or raise replicas" $r $f) -}}
{{- end -}}
{{- if .Values.persistence.enabled -}}
{{- $size := toString .Values.persistence.size -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $size) -}}
{{- fail (printf "persistence.size: %q is not a Kubernetes quantity (like 1Gi or 500Mi)" $size) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.updateStrategy.type "OnDelete") .Values.updateStrategy.rollingUpdate -}}
{{- fail "updateStrategy.rollingUpdate applies to type RollingUpdate only; remove it for OnDelete" -}}
{{- end -}}
{{- if and .Values.monitoring.serviceMonitor.enabled .Values.monitoring.podMonitor.enabled -}}
{{- fail "monitoring.serviceMonitor and monitoring.podMonitor are both enabled: every pod would be scraped twice (and the alert rules count members twice); enable one" -}}
{{- end -}}
{{- if ge (int .Values.raft.leaseMs) (int .Values.raft.electionTimeoutMs) -}}
{{- fail "raft.leaseMs must be shorter than raft.electionTimeoutMs" -}}
{{- end -}}
{{- if ge (int .Values.raft.heartbeatMs) (int .Values.raft.leaseMs) -}}
{{- fail "raft.heartbeatMs must be shorter than raft.leaseMs" -}}
{{- end -}}
{{- if include "raftkv.backup.enabled" . -}}
{{- $size := toString .Values.backup.persistence.size -}}
{{- if and (not .Values.backup.volume) (not (regexMatch "^([0-9]+(\\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $size)) -}}
{{- fail (printf "backup.persistence.size: %q is not a Kubernetes quantity (like 5Gi)" $size) -}}
{{- end -}}
{{- end -}}
{{- if include "raftkv.restore.enabled" . -}}
{{- $r := .Values.restore.fromSnapshot -}}
{{- if not $r.file -}}
{{- fail "restore.fromSnapshot.file: name the backup file on restore.fromSnapshot.volume (raftctl snapshot status FILE shows what it holds)" -}}
{{- end -}}
{{- if not $r.volume -}}
{{- fail "restore.fromSnapshot.volume: give the volume source that holds the backup file (e.g. {persistentVolumeClaim: {claimName: raftkv-backup}})" -}}
{{- end -}}
{{- if .Release.IsUpgrade -}}
{{- fail "restore.fromSnapshot.enabled is for the install of a new cluster only: set it to false for this upgrade (a member whose volume is lost later must rejoin the running cluster, not be reseeded from an old backup; docs/operations.md, Restore with the chart)" -}}
{{- end -}}
{{- end -}}
{{- include "raftkv.tls.validate" . -}}
{{- include "raftkv.test.validate" . -}}
{{- end -}}

{{/* The backup CronJob and its claim (raftkv.backupName), with labels of
their own: no selector of the workload takes its pod for a member; the
NetworkPolicy admits it to the client port. */}}
{{- define "raftkv.backupName" -}}
{{- printf "%s-backup" (include "raftkv.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "raftkv.backupSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-backup" (include "raftkv.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftkv.backupLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "raftkv.backupSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: backup
app.kubernetes.io/part-of: raftkv
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The founding members' ids, 0..initialMembers-1, comma separated. */}}
{{- define "raftkv.founders" -}}
{{- $ids := list -}}
{{- range $i := until (int .Values.cluster.initialMembers) -}}
{{- $ids = append $ids (toString $i) -}}
{{- end -}}
{{- join "," $ids -}}
{{- end -}}

{{/* Whether backups and the restore are on ("true" or ""): off too under
`helm upgrade --reuse-values` from a chart without these values. */}}
{{- define "raftkv.backup.enabled" -}}
{{- if dig "enabled" false (.Values.backup | default dict) -}}true{{- end -}}
{{- end -}}

{{- define "raftkv.restore.enabled" -}}
{{- if dig "fromSnapshot" "enabled" false (.Values.restore | default dict) -}}true{{- end -}}
{{- end -}}
