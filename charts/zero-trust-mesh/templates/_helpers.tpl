{{/* Names are fixed by the mesh (one mesh per cluster): the Service, webhook and ConfigMap names are what the
     control plane and the sidecars look for. */}}

{{- define "ztm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: zero-trust-mesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zero-trust-mesh
{{- end }}

{{- define "ztm.controlPlane.selectorLabels" -}}
app.kubernetes.io/name: zero-trust-mesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controlplane
{{- end }}

{{- define "ztm.controlPlane.labels" -}}
{{ include "ztm.labels" . }}
app.kubernetes.io/component: controlplane
{{- end }}

{{- define "ztm.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .chart.AppVersion) -}}
{{- end }}

{{/* https://ztm-controlplane.<ns>.svc:15012, what sidecars dial. */}}
{{- define "ztm.controlPlaneAddress" -}}
{{- printf "https://ztm-controlplane.%s.svc:15012" .Release.Namespace -}}
{{- end }}

{{/* The namespaces the webhook never injects: the control plane's own, kube-system, and webhook.excludeNamespaces. */}}
{{- define "ztm.excludedNamespaces" -}}
{{- toJson (uniq (concat (list .Release.Namespace "kube-system") .Values.webhook.excludeNamespaces)) -}}
{{- end }}
