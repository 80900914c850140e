{{- /*
The provider-specific part of the chart (the Azure Container Instances
provider, vk-aci). Every other template but NOTES.txt is shared with the
charts of the other providers and only calls the definitions below.
*/ -}}

{{- /* The provider's name: the binary is /vk-<provider>, the default taint value is <provider>. */ -}}
{{- define "vk.provider" -}}
aci
{{- end -}}

{{- /* Workload identity's client id (the ServiceAccount's annotation), or empty. */ -}}
{{- define "vk.aciWorkloadClientId" -}}
{{- index (.Values.serviceAccount.annotations | default dict) "azure.workload.identity/client-id" | default "" -}}
{{- end -}}

{{- /* What the schema cannot say: combinations of values that cannot work. */ -}}
{{- define "vk.aciChecks" -}}
{{- $az := .Values.azure -}}
{{- $workload := include "vk.aciWorkloadClientId" . -}}
{{- $use := index (.Values.podLabels | default dict) "azure.workload.identity/use" | default "" -}}
{{- if and $workload (ne $use "true") -}}
{{- fail "workload identity: the ServiceAccount annotation azure.workload.identity/client-id needs the pod label azure.workload.identity/use: \"true\" (podLabels)" -}}
{{- end -}}
{{- if and $workload $az.clientSecret.name -}}
{{- fail "Azure credentials: give either workload identity (serviceAccount.annotations azure.workload.identity/client-id) or azure.clientSecret.name, not both" -}}
{{- end -}}
{{- if and $az.clientSecret.name (not (and $az.tenantId $az.clientId)) -}}
{{- fail "azure.clientSecret.name needs azure.tenantId and azure.clientId" -}}
{{- end -}}
{{- if ne (empty $az.vnet.name) (empty $az.vnet.subnetName) -}}
{{- fail "azure.vnet: give both name and subnetName, or neither" -}}
{{- end -}}
{{- end -}}

{{- /*
The provider configuration file (/etc/vk/config.json): the node's capacity,
keyed by node name (upstream's format); empty fields are left out, so vk-aci
falls back to upstream's defaults.
*/ -}}
{{- define "vk.providerConfig" -}}
{{- $node := dict -}}
{{- range $key := list "cpu" "memory" "pods" -}}
{{- with index $.Values.providerConfig $key -}}
{{- $_ := set $node $key (toString .) -}}
{{- end -}}
{{- end -}}
{{- with .Values.providerConfig.others -}}
{{- $others := dict -}}
{{- range $name, $value := . -}}
{{- $_ := set $others $name (toString $value) -}}
{{- end -}}
{{- $_ := set $node "others" $others -}}
{{- end -}}
{{- with .Values.providerConfig.providerID -}}
{{- $_ := set $node "providerID" . -}}
{{- end -}}
{{- dict .Values.nodeName $node | toPrettyJson -}}
{{- end -}}

{{- /* Flags of vk-aci beyond the shared ones (none: its settings go as environment, upstream's names). */ -}}
{{- define "vk.providerArgs" -}}
{{- include "vk.aciChecks" . -}}
{{- end -}}

{{- /*
vk-aci's settings, under upstream azure-aci's variable names; empty ones are
left out. With workload identity the webhook adds AZURE_CLIENT_ID,
AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE itself.
*/ -}}
{{- define "vk.providerEnv" -}}
{{- $az := .Values.azure -}}
{{- range $name, $value := dict "AZURE_SUBSCRIPTION_ID" $az.subscriptionId "ACI_RESOURCE_GROUP" $az.resourceGroup "ACI_REGION" $az.region "ACI_VNET_NAME" $az.vnet.name "ACI_SUBNET_NAME" $az.vnet.subnetName "ACI_VNET_RESOURCE_GROUP" $az.vnet.resourceGroup }}
{{- if $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- with $az.clusterDNS }}
- name: ACI_CLUSTER_DNS
  value: {{ join "," . | quote }}
{{- end }}
{{- if $az.clientSecret.name }}
- name: AZURE_TENANT_ID
  value: {{ $az.tenantId | quote }}
- name: AZURE_CLIENT_ID
  value: {{ $az.clientId | quote }}
- name: AZURE_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $az.clientSecret.name }}
      key: {{ $az.clientSecret.key | quote }}
{{- end }}
{{- end -}}

{{- define "vk.providerPodSpec" -}}
{{- end -}}

{{- define "vk.providerPodSecurityContext" -}}
{{- end -}}

{{- define "vk.providerSecurityContext" -}}
{{- end -}}

{{- /* Nothing beyond the config: vk-aci keeps its state in ARM (the groups' tags). */ -}}
{{- define "vk.providerVolumeMounts" -}}
{{- end -}}

{{- define "vk.providerVolumes" -}}
{{- end -}}

{{- /*
RBAC rules the provider needs beyond the shared ones: none (ACI is outside
Kubernetes; the pods' Secrets are read with the core's secrets/get).
*/ -}}
{{- define "vk.providerRules" -}}
{{- end -}}
