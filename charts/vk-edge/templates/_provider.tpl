{{- /*
The provider-specific part of the chart (the edge provider, vk-edge). Every
other template but NOTES.txt and token-secret.yaml is shared with the charts
of the other providers and only calls the definitions below.
*/ -}}

{{- /* The provider's name: the binary is /vk-<provider>, the default taint value is <provider>. */ -}}
{{- define "vk.provider" -}}
edge
{{- end -}}

{{- /* Where the engine's client credentials (engine.tls.secretName) are mounted. */ -}}
{{- define "vk.engineTlsDir" -}}
/etc/vk-engine-tls
{{- end -}}

{{- /* The path of a unix:// engine endpoint, empty for tcp://. */ -}}
{{- define "vk.engineSocket" -}}
{{- $endpoint := .Values.engine.endpoint -}}
{{- if hasPrefix "unix://" $endpoint -}}
{{- trimPrefix "unix://" $endpoint -}}
{{- end -}}
{{- end -}}

{{- /* What the schema cannot say: combinations of values that cannot work. */ -}}
{{- define "vk.edgeChecks" -}}
{{- $endpoint := .Values.engine.endpoint -}}
{{- $socket := .Values.engine.hostSocket -}}
{{- if and .Values.engine.tls.secretName (not (hasPrefix "tcp://" $endpoint)) -}}
{{- fail (printf "engine.tls.secretName needs a tcp:// engine.endpoint, not %q" $endpoint) -}}
{{- end -}}
{{- if $socket.enabled -}}
{{- if not (include "vk.engineSocket" .) -}}
{{- fail (printf "engine.hostSocket.enabled needs a unix:// engine.endpoint, not %q" $endpoint) -}}
{{- end -}}
{{- if and (kindIs "invalid" $socket.groupId) (not $socket.runAsRoot) -}}
{{- fail "engine.hostSocket.enabled: uid 65532 cannot open the host's engine socket; set engine.hostSocket.groupId to the socket's group (stat -c %g SOCKET) or engine.hostSocket.runAsRoot=true" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.hostNetwork (eq (int .Values.kubeletPort) 10250) -}}
{{- fail "hostNetwork: the host's own kubelet listens on 10250; set kubeletPort to a free port (and metricsPort, if 10255 is taken)" -}}
{{- end -}}
{{- end -}}

{{- /*
The provider configuration file (/etc/vk/config.json): the node's resources,
keyed by node name (the mock's format); empty fields are left out, so vk-edge
falls back to what the engine reports.
*/ -}}
{{- define "vk.providerConfig" -}}
{{- $node := dict -}}
{{- range $key := list "cpu" "memory" "pods" -}}
{{- with index $.Values.nodeResources $key -}}
{{- $_ := set $node $key (toString .) -}}
{{- end -}}
{{- end -}}
{{- with .Values.nodeResources.others -}}
{{- $others := dict -}}
{{- range $name, $value := . -}}
{{- $_ := set $others $name (toString $value) -}}
{{- end -}}
{{- $_ := set $node "others" $others -}}
{{- end -}}
{{- with .Values.nodeResources.providerID -}}
{{- $_ := set $node "providerID" . -}}
{{- end -}}
{{- dict .Values.nodeName $node | toPrettyJson -}}
{{- end -}}

{{- /* Flags of vk-edge beyond the shared ones. */ -}}
{{- define "vk.providerArgs" }}
{{- include "vk.edgeChecks" . }}
- {{ printf "--engine-endpoint=%s" .Values.engine.endpoint | quote }}
- {{ printf "--engine-network=%s" .Values.engine.network | quote }}
{{- if .Values.engine.tls.secretName }}
- --engine-tls-ca={{ include "vk.engineTlsDir" . }}/ca.pem
- --engine-tls-cert={{ include "vk.engineTlsDir" . }}/cert.pem
- --engine-tls-key={{ include "vk.engineTlsDir" . }}/key.pem
{{- end }}
{{- if .Values.allowPrivileged }}
- --allow-privileged
{{- end }}
{{- range .Values.allowedHostPaths }}
- {{ printf "--allow-host-path=%s" . | quote }}
{{- end }}
{{- end -}}

{{- /* Environment beyond the shared variables (none: the endpoint goes as a flag, not DOCKER_HOST). */ -}}
{{- define "vk.providerEnv" -}}
{{- end -}}

{{- /* On the device: the host's network namespace. */ -}}
{{- define "vk.providerPodSpec" -}}
{{- if .Values.hostNetwork -}}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end -}}
{{- end -}}

{{- /*
Access to a host engine socket: its group as a supplemental group (vk-edge
stays uid 65532), or root with every capability still dropped.
*/ -}}
{{- define "vk.providerPodSecurityContext" -}}
{{- $socket := .Values.engine.hostSocket -}}
{{- if $socket.enabled -}}
{{- if $socket.runAsRoot }}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
{{- end }}
{{- if not (kindIs "invalid" $socket.groupId) }}
{{- $groups := concat (.Values.podSecurityContext.supplementalGroups | default list) (list (int $socket.groupId)) | uniq }}
supplementalGroups: {{ toJson $groups }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "vk.providerSecurityContext" -}}
{{- if and .Values.engine.hostSocket.enabled .Values.engine.hostSocket.runAsRoot -}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
{{- end -}}
{{- end -}}

{{- /*
The engine's client credentials and the host's engine socket. Nothing
writable: vk-edge keeps no state on disk (it is all in the engine, as labels
on containers and engine volumes), so the read-only root file system is all
it needs. Both lists may be empty or start with either item, hence trim.
*/ -}}
{{- define "vk.providerVolumeMounts" -}}
{{- include "vk.edgeVolumeMounts" . | trim -}}
{{- end -}}

{{- define "vk.providerVolumes" -}}
{{- include "vk.edgeVolumes" . | trim -}}
{{- end -}}

{{- define "vk.edgeVolumeMounts" -}}
{{- if .Values.engine.tls.secretName }}
- name: engine-tls
  mountPath: {{ include "vk.engineTlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.engine.hostSocket.enabled }}
# Not readOnly: a read-only mount does not stop connect(2) on a socket anyway.
- name: engine-socket
  mountPath: {{ include "vk.engineSocket" . }}
{{- end }}
{{- end -}}

{{- define "vk.edgeVolumes" -}}
{{- if .Values.engine.tls.secretName }}
- name: engine-tls
  secret:
    secretName: {{ .Values.engine.tls.secretName }}
    defaultMode: 0440
    items:
      - key: ca.pem
        path: ca.pem
      - key: cert.pem
        path: cert.pem
      - key: key.pem
        path: key.pem
{{- end }}
{{- if .Values.engine.hostSocket.enabled }}
- name: engine-socket
  hostPath:
    path: {{ include "vk.engineSocket" . }}
    type: Socket
{{- end }}
{{- end -}}

{{- /*
RBAC rules the provider needs beyond the shared ones: none, the engine is
outside Kubernetes (image pull secrets are read with the core's secrets/get).
*/ -}}
{{- define "vk.providerRules" -}}
{{- end -}}
