{{/* TLS: Secret names, the names the member certificate carries, the
certificates the chart generates itself, and the TLS render guards. */}}

{{/* Where the pods mount the certificate Secret (not under /etc/raftkv,
the ConfigMap's read-only mount). */}}
{{- define "raftkv.tls.mountPath" -}}
/etc/raftkv-tls
{{- end -}}

{{/* The Secret with the members' ca.crt, tls.crt and tls.key. */}}
{{- define "raftkv.tls.secretName" -}}
{{- if eq .Values.tls.source "existingSecret" -}}
{{- .Values.tls.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "raftkv.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with a client's ca.crt, tls.crt and tls.key (`helm test`,
the operator's raftctl). */}}
{{- define "raftkv.tls.clientSecretName" -}}
{{- if eq .Values.tls.source "existingSecret" -}}
{{- .Values.tls.existingSecret.clientName -}}
{{- else -}}
{{- printf "%s-client-tls" (include "raftkv.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* source generate: the CA's certificate and key, mounted nowhere. */}}
{{- define "raftkv.tls.caSecretName" -}}
{{- printf "%s-ca" (include "raftkv.fullname" .) -}}
{{- end -}}

{{- define "raftkv.tls.members" -}}
{{- $n := int .Values.tls.members -}}
{{- if eq $n 0 -}}{{- $n = int .Values.replicas -}}{{- end -}}
{{- $n -}}
{{- end -}}

{{/*
The DNS names of the member certificate, as a JSON list. For each member
ordinal first its peer host <statefulset>-N.<headless>.<namespace>.svc.<domain>,
the name a member's certificate is checked against, then its shorter forms
(raftctl verifies the name it was given); then the client Service's names,
localhost (kubectl port-forward) and tls.extraDnsNames.
*/}}
{{- define "raftkv.tls.dnsNames" -}}
{{- $sts := include "raftkv.fullname" . -}}
{{- $headless := include "raftkv.headless" . -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.cluster.domain -}}
{{- $names := list -}}
{{- range $i := until (int (include "raftkv.tls.members" .)) -}}
{{- $pod := printf "%s-%d.%s" $sts $i $headless -}}
{{- $names = append $names (printf "%s.%s.svc.%s" $pod $ns $domain) -}}
{{- $names = concat $names (list (printf "%s.%s.svc" $pod $ns) (printf "%s.%s" $pod $ns) $pod) -}}
{{- end -}}
{{- $svc := include "raftkv.fullname" . -}}
{{- $names = concat $names (list (printf "%s.%s.svc.%s" $svc $ns $domain) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s" $svc $ns) $svc "localhost") -}}
{{- $names = concat $names .Values.tls.extraDnsNames | uniq -}}
{{- toJson $names -}}
{{- end -}}

{{/* The IP addresses of the member certificate (kubectl port-forward). */}}
{{- define "raftkv.tls.ipAddresses" -}}
{{- toJson (list "127.0.0.1") -}}
{{- end -}}

{{/*
source generate: the three Secrets (ca, server, client) as YAML, each
{name, annotations, data} with data base64-encoded. Takes (dict "root" $
"ca" S "server" S "client" S) where S is the Secret of that name as `lookup`
returns it (empty when there is none, and always with `helm template`).
What exists is kept: the CA always (its key signs the rest), a certificate
while it chains to that CA, names what the values ask for (a sha256 of the
names in an annotation) and has more than a third of its validity left
(its expiry in an annotation); otherwise it is signed anew by the same CA.
*/}}
{{- define "raftkv.tls.generated" -}}
{{- $root := .root -}}
{{- $full := include "raftkv.fullname" $root -}}
{{- $days := int $root.Values.tls.generate.days -}}
{{- $now := now | unixEpoch | int64 -}}
{{- $names := include "raftkv.tls.dnsNames" $root | fromJsonArray -}}
{{- $ips := include "raftkv.tls.ipAddresses" $root | fromJsonArray -}}
{{- $namesSum := printf "%s|%s" ($names | join ",") ($ips | join ",") | sha256sum -}}
{{- $notAfter := printf "%d" (add $now (mul $days 86400)) -}}
{{- $freshUntil := add $now (div (mul $days 86400) 3) -}}
{{- $oldCa := dig "data" dict (.ca | default dict) -}}
{{- $ca := dict -}}
{{- $caOut := dict -}}
{{- if and (index $oldCa "tls.crt") (index $oldCa "tls.key") -}}
{{- $ca = buildCustomCert (index $oldCa "tls.crt") (index $oldCa "tls.key") -}}
{{- $caOut = dict "name" (include "raftkv.tls.caSecretName" $root) "annotations" (dig "metadata" "annotations" dict .ca) "data" $oldCa -}}
{{- else -}}
{{- $caDays := int $root.Values.tls.generate.caDays -}}
{{- $ca = genCA (printf "%s-ca" $full) $caDays -}}
{{- $caNotAfter := printf "%d" (add $now (mul $caDays 86400)) -}}
{{- $caOut = dict "name" (include "raftkv.tls.caSecretName" $root) "annotations" (dict "raftkv.io/not-after" $caNotAfter) "data" (dict "tls.crt" ($ca.Cert | b64enc) "tls.key" ($ca.Key | b64enc)) -}}
{{- end -}}
{{- $caB64 := index $caOut.data "tls.crt" -}}
{{- $out := dict "ca" $caOut -}}
{{- range $which := list "server" "client" -}}
{{- $old := index $ $which | default dict -}}
{{- $oldData := dig "data" dict $old -}}
{{- $oldNotAfter := dig "metadata" "annotations" "raftkv.io/not-after" "0" $old | int64 -}}
{{- $want := ternary $namesSum "client:root" (eq $which "server") -}}
{{- $keep := and (index $oldData "tls.crt") (index $oldData "tls.key") (eq (index $oldData "ca.crt" | default "") $caB64) (eq (dig "metadata" "annotations" "raftkv.io/names-sha256" "" $old) $want) (gt $oldNotAfter $freshUntil) -}}
{{- $name := ternary (include "raftkv.tls.secretName" $root) (include "raftkv.tls.clientSecretName" $root) (eq $which "server") -}}
{{- if $keep -}}
{{- $_ := set $out $which (dict "name" $name "annotations" (dig "metadata" "annotations" dict $old) "data" $oldData) -}}
{{- else -}}
{{- $cert := dict -}}
{{- if eq $which "server" -}}
{{- $cert = genSignedCert $full $ips $names $days $ca -}}
{{- else -}}
{{- $cert = genSignedCert "root" (list) (list) $days $ca -}}
{{- end -}}
{{- $ann := dict "raftkv.io/not-after" $notAfter "raftkv.io/names-sha256" $want -}}
{{- $_ := set $out $which (dict "name" $name "annotations" $ann "data" (dict "ca.crt" $caB64 "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc))) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The node container's TLS settings (one certificate for both ports). */}}
{{- define "raftkv.tls.nodeEnv" -}}
{{- $dir := include "raftkv.tls.mountPath" . -}}
- name: RAFTKV_CERT_FILE
  value: {{ printf "%s/tls.crt" $dir }}
- name: RAFTKV_KEY_FILE
  value: {{ printf "%s/tls.key" $dir }}
- name: RAFTKV_TRUSTED_CA_FILE
  value: {{ printf "%s/ca.crt" $dir }}
- name: RAFTKV_CLIENT_CERT_AUTH
  value: {{ .Values.tls.clientCertAuth | toString | quote }}
- name: RAFTKV_PEER_CERT_FILE
  value: {{ printf "%s/tls.crt" $dir }}
- name: RAFTKV_PEER_KEY_FILE
  value: {{ printf "%s/tls.key" $dir }}
- name: RAFTKV_PEER_TRUSTED_CA_FILE
  value: {{ printf "%s/ca.crt" $dir }}
{{- end -}}

{{/* raftctl's TLS settings in the `helm test` pod (the client Secret). */}}
{{- define "raftkv.tls.clientEnv" -}}
{{- $dir := include "raftkv.tls.mountPath" . -}}
- name: RAFTKV_CACERT
  value: {{ printf "%s/ca.crt" $dir }}
- name: RAFTKV_CERT
  value: {{ printf "%s/tls.crt" $dir }}
- name: RAFTKV_KEY
  value: {{ printf "%s/tls.key" $dir }}
{{- end -}}

{{/* A Secret volume named tls; the kubelet updates its files in place when
the Secret changes (no subPath, which would freeze them). */}}
{{- define "raftkv.tls.volume" -}}
- name: tls
  secret:
    secretName: {{ index . 0 }}
    defaultMode: 0440
{{- end -}}

{{/* The TLS guards (called by raftkv.validate). */}}
{{- define "raftkv.tls.validate" -}}
{{- $t := .Values.tls -}}
{{- if $t.enabled -}}
{{- $src := $t.source -}}
{{- $ref := $t.certManager.issuerRef | default dict -}}
{{- if and (eq $src "certManager") (not $ref.name) -}}
{{- fail "tls.source=certManager needs tls.certManager.issuerRef.name: the cert-manager Issuer (or, with kind: ClusterIssuer, the ClusterIssuer) that signs the certificates" -}}
{{- end -}}
{{- if and (ne $src "certManager") (or $ref $t.certManager.duration $t.certManager.renewBefore) -}}
{{- fail (printf "tls.certManager is set but tls.source is %s: set tls.source=certManager, or remove the tls.certManager settings" $src) -}}
{{- end -}}
{{- if eq $src "existingSecret" -}}
{{- if not $t.existingSecret.name -}}
{{- fail "tls.source=existingSecret needs tls.existingSecret.name: the Secret with the members' ca.crt, tls.crt and tls.key" -}}
{{- end -}}
{{- if and .Values.test.enabled (not $t.existingSecret.clientName) -}}
{{- fail "tls.source=existingSecret with test.enabled needs tls.existingSecret.clientName: the Secret with the ca.crt, tls.crt and tls.key `helm test` connects with (or set test.enabled=false)" -}}
{{- end -}}
{{- if eq $t.existingSecret.name $t.existingSecret.clientName -}}
{{- fail "tls.existingSecret.clientName names the members' Secret: the test client needs a client certificate of its own, not a member's" -}}
{{- end -}}
{{- else if or $t.existingSecret.name $t.existingSecret.clientName -}}
{{- fail (printf "tls.existingSecret is set but tls.source is %s: set tls.source=existingSecret, or remove the tls.existingSecret settings" $src) -}}
{{- end -}}
{{- $m := int $t.members -}}
{{- if and (gt $m 0) (lt $m (int .Values.replicas)) -}}
{{- fail (printf "tls.members: %d is fewer than replicas (%d): members %d and above would have no certificate naming them; raise tls.members or set it to 0 (= replicas)" $m (int .Values.replicas) $m) -}}
{{- end -}}
{{- end -}}
{{- end -}}
