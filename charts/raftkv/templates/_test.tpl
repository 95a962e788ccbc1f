{{/* The `helm test` pod's raftctl settings, the same for both of its
containers: TLS (the client Secret) and the test user (auth.testUser). */}}

{{/* The containers' env and volumeMounts (as YAML keys; nothing when
neither TLS nor a test user is set). */}}
{{- define "raftkv.test.clientSettings" -}}
{{- $user := .Values.auth.testUser -}}
{{- if or .Values.tls.enabled $user.existingSecret }}
env:
  {{- if .Values.tls.enabled }}
  {{- include "raftkv.tls.clientEnv" . | nindent 2 }}
  {{- end }}
  {{- if $user.existingSecret }}
  {{- /* raftctl's --user NAME takes the password from RAFTKV_PASSWORD:
  neither appears in the pod's command line. */}}
  - name: RAFTKV_USER
    valueFrom:
      secretKeyRef:
        name: {{ $user.existingSecret }}
        key: {{ $user.usernameKey }}
  - name: RAFTKV_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ $user.existingSecret }}
        key: {{ $user.passwordKey }}
  {{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
volumeMounts:
  - name: tls
    mountPath: {{ include "raftkv.tls.mountPath" . }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* The test user guard (called by raftkv.validate). */}}
{{- define "raftkv.test.validate" -}}
{{- if and .Values.auth.testUser.existingSecret (not .Values.test.enabled) -}}
{{- fail "auth.testUser.existingSecret is set but test.enabled is false: only `helm test` uses the test user; set test.enabled=true or remove auth.testUser.existingSecret" -}}
{{- end -}}
{{- end -}}
