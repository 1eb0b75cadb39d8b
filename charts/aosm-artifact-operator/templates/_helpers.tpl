{{/* Chart name, overridable with nameOverride. */}}
{{- define "aosm-artifact-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full object name: fullnameOverride, else the release name when it contains the chart
name, else <release>-<chart>. Cluster-scoped objects (ClusterRole, ClusterRoleBinding)
use it too, so two releases need different release names.
*/}}
{{- define "aosm-artifact-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aosm-artifact-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller's pods (never change them on upgrade). */}}
{{- define "aosm-artifact-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aosm-artifact-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "aosm-artifact-operator.labels" -}}
helm.sh/chart: {{ include "aosm-artifact-operator.chart" . }}
{{ include "aosm-artifact-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: aosm-artifact-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "aosm-artifact-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aosm-artifact-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the controller runs with --leader-elect. */}}
{{- define "aosm-artifact-operator.leaderElect" -}}
{{- if or .Values.leaderElection.force (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}

{{/* Name of the leader-election Lease (in the release namespace). */}}
{{- define "aosm-artifact-operator.leaseName" -}}
{{- default (include "aosm-artifact-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "aosm-artifact-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the extra CA bundle is mounted. */}}
{{- define "aosm-artifact-operator.caBundleDir" -}}
/etc/aosm-artifact-operator/ca-bundle
{{- end }}
