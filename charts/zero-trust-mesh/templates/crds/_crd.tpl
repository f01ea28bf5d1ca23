{{- /* What every policy CRD shares. The schemas mirror core/ZeroTrustMesh.Policy/Kinds (the model's readers are the
       reference; the chart tests hold both together). They are structural: every field has a type, so the API server
       prunes unknown fields and kubectl's field validation names them. */ -}}

{{- define "ztm.crd.metadata" -}}
metadata:
  name: {{ .plural }}.security.ztm.dev
  labels:
    {{- include "ztm.labels" .root | nindent 4 }}
  annotations:
    # Helm upgrades these CRDs with the chart, and never deletes them: `helm uninstall` would otherwise delete every
    # policy in the cluster with them.
    helm.sh/resource-policy: keep
{{- end }}

{{- define "ztm.crd.names" -}}
group: security.ztm.dev
scope: Namespaced
names:
  kind: {{ .kind }}
  listKind: {{ .kind }}List
  plural: {{ .plural }}
  singular: {{ lower .kind }}
  shortNames: [{{ .shortName }}]
  categories: [ztm]
{{- end }}

{{- define "ztm.crd.selector" -}}
selector:
  type: object
  description: The workload of the namespace this applies to, by service name; omitted, every workload of the namespace.
  required: [service]
  properties:
    service:
      type: string
      minLength: 1
{{- end }}

{{- define "ztm.crd.status" -}}
status:
  type: object
  description: Written by the control plane.
  properties:
    observedGeneration:
      type: integer
      format: int64
      minimum: 0
    conditions:
      type: array
      description: "Accepted: True once the resource is valid and pushed to sidecars; False with the reason and message when refused."
      x-kubernetes-list-type: map
      x-kubernetes-list-map-keys: [type]
      items:
        type: object
        required: [type, status]
        properties:
          type:
            type: string
            maxLength: 316
          status:
            type: string
            enum: ["True", "False", "Unknown"]
          observedGeneration:
            type: integer
            format: int64
            minimum: 0
          lastTransitionTime:
            type: string
            format: date-time
          reason:
            type: string
            maxLength: 1024
          message:
            type: string
            maxLength: 32768
{{- end }}

{{- define "ztm.crd.strings" -}}
type: array
items:
  type: string
{{- end }}

{{- define "ztm.crd.ports" -}}
type: array
items:
  type: integer
  minimum: 1
  maximum: 65535
{{- end }}

{{- define "ztm.crd.bucket" -}}
type: object
description: A token bucket per caller identity.
required: [requestsPerUnit]
properties:
  requestsPerUnit:
    type: integer
    minimum: 1
    description: Tokens refilled per unit.
  unit:
    type: string
    enum: [second, minute, hour]
    default: second
  burst:
    type: integer
    minimum: 0
    description: Tokens that may be spent at once; 0 or absent means requestsPerUnit.
{{- end }}

{{- define "ztm.crd.accepted" -}}
- name: Accepted
  type: string
  jsonPath: .status.conditions[?(@.type=="Accepted")].status
- name: Age
  type: date
  jsonPath: .metadata.creationTimestamp
{{- end }}

{{- define "ztm.crd.root" -}}
apiVersion:
  type: string
kind:
  type: string
metadata:
  type: object
{{- end }}
