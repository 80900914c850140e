{{- /*
Shared by the charts of every provider: names, labels, the container's
arguments and environment, and the RBAC rules of the core runtime. Anything
provider-specific is in _provider.tpl.
*/ -}}

{{- define "vk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vk.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vk.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vk.labels" -}}
helm.sh/chart: {{ include "vk.chart" . }}
{{ include "vk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: virtual-kubelet
app.kubernetes.io/part-of: vk-rs
app.kubernetes.io/managed-by: {{ .Release.Service }}
vk-rs.io/provider: {{ include "vk.provider" . }}
{{- end -}}

{{- define "vk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vk.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vk.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- /* The node name, checked: it must be a DNS subdomain (it names the Node and its Lease). */ -}}
{{- define "vk.nodeName" -}}
{{- $name := required "nodeName is required" .Values.nodeName -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$" $name) -}}
{{- fail (printf "nodeName %q is not a valid DNS subdomain" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- /* Where the serving certificate is mounted when tls.mode is secret. */ -}}
{{- define "vk.tlsDir" -}}
/etc/vk-tls
{{- end -}}

{{- define "vk.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.existingSecret is required when tls.mode is secret" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{- /*
Whether the chart runs the kubelet itself (the Deployment and its ConfigMap),
or only creates the identity and RBAC of one that runs outside the cluster,
e.g. as a systemd service on an edge device (deployment.enabled=false, in the
charts whose values have it).
*/ -}}
{{- define "vk.deploymentEnabled" -}}
{{- if dig "deployment" "enabled" true .Values.AsMap -}}
true
{{- end -}}
{{- end -}}

{{- /* The pod's securityContext: podSecurityContext, overlaid with what the provider needs (vk.providerPodSecurityContext). */ -}}
{{- define "vk.podSecurityContext" -}}
{{- $provider := include "vk.providerPodSecurityContext" . | fromYaml -}}
{{- mergeOverwrite (deepCopy .Values.podSecurityContext) $provider | toYaml -}}
{{- end -}}

{{- /* The container's securityContext: securityContext, overlaid with vk.providerSecurityContext. */ -}}
{{- define "vk.securityContext" -}}
{{- $provider := include "vk.providerSecurityContext" . | fromYaml -}}
{{- mergeOverwrite (deepCopy .Values.securityContext) $provider | toYaml -}}
{{- end -}}

{{- /* The container's arguments: the flags upstream virtual-kubelet also has, then the provider's, then extraArgs. */ -}}
{{- define "vk.args" -}}
- --nodename={{ include "vk.nodeName" . }}
- --provider-config=/etc/vk/config.json
- --metrics-addr=0.0.0.0:{{ .Values.metricsPort }}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
{{- if not .Values.taint.enabled }}
- --disable-taint
{{- end }}
{{- if include "vk.nodeIdentity" . }}
- --bootstrap-kubeconfig={{ include "vk.bootstrapDir" . }}/kubeconfig
- --cert-dir={{ include "vk.certDir" . }}
{{- end }}
{{- if include "vk.leaderElect" . }}
- --leader-elect
- --leader-elect-lease-name={{ include "vk.leaderLeaseName" . }}
- --leader-elect-namespace={{ .Release.Namespace }}
{{- end }}
{{- include "vk.providerArgs" . }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* The container's environment (upstream virtual-kubelet's variable names). */ -}}
{{- define "vk.env" -}}
# The node's InternalIP, which the apiserver dials for logs and exec: this pod's IP.
- name: VKUBELET_POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: KUBELET_PORT
  value: {{ .Values.kubeletPort | quote }}
{{- if eq .Values.tls.mode "secret" }}
- name: APISERVER_CERT_LOCATION
  value: {{ include "vk.tlsDir" . }}/tls.crt
- name: APISERVER_KEY_LOCATION
  value: {{ include "vk.tlsDir" . }}/tls.key
{{- end }}
{{- include "vk.providerEnv" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /*
The cluster-wide rules of the core runtime, each for what the code does with it
(crates/vk-core). Nothing is granted that the runtime does not call: the chart
test compares these rules with an allow-list of the calls.
*/ -}}
{{- define "vk.coreClusterRules" -}}
{{- $node := include "vk.nodeName" . -}}
# The pods bound to this node: a watch with the field selector
# spec.nodeName=<node>, and the final delete (grace 0, UID precondition) once
# the backend has stopped a terminating pod.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
# Registration. A create cannot be limited to one name; everything else is
# limited to this node (the watch uses the field selector metadata.name=<node>).
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["nodes"]
  resourceNames: [{{ $node | quote }}]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["nodes/status"]
  resourceNames: [{{ $node | quote }}]
  verbs: ["patch"]
# What the node's pods reference: env and volumes (read one by one, never
# listed), service link variables (a cluster-wide Service watch) and projected
# service-account tokens (TokenRequest).
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
# Pod and node events (ProviderCreateSuccess and the like).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Authentication and authorization of the kubelet API's callers, the way a
# kubelet does it (TokenReview, SubjectAccessReview).
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- if eq .Values.tls.mode "csr" }}
# The serving certificate, requested with a kubernetes.io/kubelet-serving CSR
# (then read by name until it is issued) and renewed before it expires. The
# CSR's name is generated, so no resourceNames.
- apiGroups: ["certificates.k8s.io"]
  resources: ["certificatesigningrequests"]
  verbs: ["create", "get"]
{{- end }}
{{- end -}}

{{- /* The name of the node's leader Lease (--leader-elect), in the release namespace. */ -}}
{{- define "vk.leaderLeaseName" -}}
{{- default (printf "vk-rs-%s" (include "vk.nodeName" .)) .Values.leaderElection.leaseName | trunc 253 -}}
{{- end -}}

{{- /*
identity.mode=node: the process is the node itself, as a kubelet: TLS
bootstrap with a bootstrap kubeconfig, then system:node:<nodeName> under
the Node authorizer and NodeRestriction. The ServiceAccount gets no rule
but the leader Lease's. identity.mode=auto (the default): node where the
cluster publishes kube-public/cluster-info (kubeadm's bootstrap-token
discovery: the cluster takes bootstrap tokens), serviceAccount elsewhere
and when rendered without a cluster (helm template).
*/ -}}
{{- define "vk.nodeIdentity" -}}
{{- $identity := dig "identity" dict .Values.AsMap -}}
{{- $mode := default "auto" $identity.mode -}}
{{- if and (eq $mode "auto") (lookup "v1" "ConfigMap" "kube-public" "cluster-info") -}}
{{- $mode = "node" -}}
{{- end -}}
{{- if eq $mode "node" -}}
true
{{- end -}}
{{- end -}}

{{- /*
The Secret with the bootstrap kubeconfig (key `kubeconfig`):
identity.bootstrapSecret, or the one the chart makes with a bootstrap
token of its own (bootstrap-token.yaml).
*/ -}}
{{- define "vk.bootstrapSecret" -}}
{{- $identity := dig "identity" dict .Values.AsMap -}}
{{- default (printf "%s-bootstrap" (include "vk.fullname" .)) $identity.bootstrapSecret -}}
{{- end -}}

{{- /* The group of the chart's bootstrap tokens: what its ClusterRoleBindings name. */ -}}
{{- define "vk.bootstrapGroup" -}}
system:bootstrappers:vk-rs
{{- end -}}

{{- /* Where the bootstrap kubeconfig is mounted, and the node's certificates kept (node identity). */ -}}
{{- define "vk.bootstrapDir" -}}
/etc/vk-bootstrap
{{- end -}}

{{- define "vk.certDir" -}}
/var/lib/vk-pki
{{- end -}}

{{- /*
Leader election, when asked for. With the node identity the replicas still
elect with the ServiceAccount (a node's own credentials may write only its
heartbeat Lease in kube-node-lease), which then may touch that Lease only.
*/ -}}
{{- define "vk.leaderElect" -}}
{{- if .Values.leaderElection.enabled -}}
true
{{- end -}}
{{- end -}}

{{- /* Replicas of the Deployment: more than one only with leader election. */ -}}
{{- define "vk.replicas" -}}
{{- $replicas := int .Values.replicas -}}
{{- if and (gt $replicas 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicas above 1 need leaderElection.enabled: two kubelets without it fight over the node and its pods" -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{- /*
The leader Lease (--leader-elect): read, taken and renewed by compare-and-swap
(get, update), created the first time (a create cannot be limited to one
name), and watched by name (list, watch with metadata.name=<lease>) so that
a standby sees each renewal as it happens.
*/ -}}
{{- define "vk.leaderLeaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "vk.leaderLeaseName" . | quote }}]
  verbs: ["get", "update", "list", "watch"]
{{- end -}}

{{- /* The node's heartbeat Lease in kube-node-lease (a namespaced Role). */ -}}
{{- define "vk.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "vk.nodeName" . | quote }}]
  verbs: ["get", "update"]
{{- end -}}
