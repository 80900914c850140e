{{- /*
The provider-specific part of the chart. Every other template is shared by the
charts of all providers and only calls the definitions below; a new provider's
chart copies the chart directory and rewrites this file, Chart.yaml,
values.yaml (providerConfig, image) and the providerConfig part of
values.schema.json.
*/ -}}

{{- /* The provider's name: the binary is /vk-<provider>, the default taint value is <provider>. */ -}}
{{- define "vk.provider" -}}
mock
{{- end -}}

{{- /*
The provider configuration file (/etc/vk/config.json). The mock reads JSON
keyed by node name; empty optional fields are left out.
*/ -}}
{{- define "vk.providerConfig" -}}
{{- $node := dict "cpu" (toString .Values.providerConfig.cpu) "memory" (toString .Values.providerConfig.memory) "pods" (toString .Values.providerConfig.pods) -}}
{{- with .Values.providerConfig.others }}
{{- $_ := set $node "others" . -}}
{{- end }}
{{- with .Values.providerConfig.providerID }}
{{- $_ := set $node "providerID" . -}}
{{- end }}
{{- dict .Values.nodeName $node | toPrettyJson -}}
{{- end -}}

{{- /* Flags the provider binary takes beyond the shared ones (none for the mock). */ -}}
{{- define "vk.providerArgs" -}}
{{- end -}}

{{- /* Environment the provider needs beyond the shared variables (none for the mock). */ -}}
{{- define "vk.providerEnv" -}}
{{- end -}}

{{- /* Extra fields of the pod spec, e.g. hostNetwork (none for the mock). */ -}}
{{- define "vk.providerPodSpec" -}}
{{- end -}}

{{- /*
Fields laid over podSecurityContext and securityContext (YAML maps), e.g. a
supplemental group that may read a socket (none for the mock).
*/ -}}
{{- define "vk.providerPodSecurityContext" -}}
{{- end -}}

{{- define "vk.providerSecurityContext" -}}
{{- end -}}

{{- /* Volume mounts of the container and volumes of the pod beyond the config and the serving certificate (none for the mock). */ -}}
{{- define "vk.providerVolumeMounts" -}}
{{- end -}}

{{- define "vk.providerVolumes" -}}
{{- end -}}

{{- /*
RBAC rules the provider needs beyond the shared ones (none for the mock: its
backend lives in the process).
*/ -}}
{{- define "vk.providerRules" -}}
{{- end -}}
