{{- /*
The provider-specific part of the chart (the Fargate provider, vk-fargate).
Every other template but NOTES.txt is shared with the charts of the other
providers and only calls the definitions below.
*/ -}}

{{- /* The provider's name: the binary is /vk-<provider>, the default taint value is <provider>. */ -}}
{{- define "vk.provider" -}}
fargate
{{- end -}}

{{- /* What the schema cannot say: combinations of values that cannot work. */ -}}
{{- define "vk.fargateChecks" -}}
{{- $irsa := index (.Values.serviceAccount.annotations | default dict) "eks.amazonaws.com/role-arn" -}}
{{- if and $irsa .Values.aws.credentialsSecret.name -}}
{{- fail "AWS credentials: give either the IRSA role (serviceAccount.annotations eks.amazonaws.com/role-arn) or aws.credentialsSecret.name, not both" -}}
{{- end -}}
{{- if and .Values.providerConfig.CloudWatchLogGroupName (not .Values.providerConfig.ExecutionRoleArn) -}}
{{- fail "providerConfig.CloudWatchLogGroupName needs providerConfig.ExecutionRoleArn (ECS writes the logs as that role)" -}}
{{- end -}}
{{- end -}}

{{- /*
The provider configuration file (/etc/vk/config.json): upstream's
fargate.toml, in TOML (vk-fargate reads the file as TOML whatever its name;
the name is the one every chart mounts). Strings and lists are written as
JSON, which is valid TOML for them; empty ones are left out, so vk-fargate
applies its default (or says which required key is missing), except
VolumeWriterImage, which defaults to the chart's image.
*/ -}}
{{- define "vk.providerConfig" -}}
{{- include "vk.fargateToml" . | trim -}}
{{- end -}}

{{- define "vk.fargateToml" -}}
{{- $c := .Values.providerConfig -}}
{{- range $key := list "Region" "ClusterName" "ExecutionRoleArn" "CloudWatchLogGroupName" "PlatformVersion" "OperatingSystem" "CPU" "Memory" "Storage" "Pods" "TaskRoleArn" "CapacityProvider" "PollInterval" "SweepInterval" }}
{{- with index $c $key }}
{{ $key }} = {{ toString . | toJson }}
{{- end }}
{{- end }}
{{- /* The volume writer runs the chart's own image unless told otherwise. */}}
VolumeWriterImage = {{ $c.VolumeWriterImage | default (include "vk.image" .) | toJson }}
{{- range $key := list "Subnets" "SecurityGroups" }}
{{- with index $c $key }}
{{ $key }} = {{ toJson . }}
{{- end }}
{{- end }}
AssignPublicIPv4Address = {{ $c.AssignPublicIPv4Address | default false }}
{{- with $c.Tags }}

[Tags]
{{- range $name, $value := . }}
{{ toJson $name }} = {{ toString $value | toJson }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* Flags of vk-fargate beyond the shared ones (none: it is all in fargate.toml). */ -}}
{{- define "vk.providerArgs" -}}
{{- include "vk.fargateChecks" . -}}
{{- end -}}

{{- /*
AWS credentials from an existing Secret. With IRSA the EKS webhook adds
AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE itself; with neither, the SDK's
default chain applies.
*/ -}}
{{- define "vk.providerEnv" -}}
{{- with .Values.aws.credentialsSecret }}
{{- if .name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .accessKeyIdKey | quote }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .secretAccessKeyKey | quote }}
{{- end }}
{{- end }}
{{- with .Values.providerConfig.Region }}
# The SDK's region (STS for IRSA), the same as fargate.toml's.
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "vk.providerPodSpec" -}}
{{- end -}}

{{- define "vk.providerPodSecurityContext" -}}
{{- end -}}

{{- define "vk.providerSecurityContext" -}}
{{- end -}}

{{- /* Nothing beyond the config: vk-fargate keeps its state in ECS (task tags). */ -}}
{{- define "vk.providerVolumeMounts" -}}
{{- end -}}

{{- define "vk.providerVolumes" -}}
{{- end -}}

{{- /*
RBAC rules the provider needs beyond the shared ones: none (ECS is outside
Kubernetes; the pods' Secrets are read with the core's secrets/get).
*/ -}}
{{- define "vk.providerRules" -}}
{{- end -}}
