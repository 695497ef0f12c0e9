{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "berth.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
Values that cannot work together. The schema checks each value alone.
*/}}
{{- define "berth.check" -}}
{{- if and (eq .Values.mode "handler") .Values.node.switchKubelet -}}
{{- fail "node.switchKubelet=true needs mode=node: in mode=handler the kubelet keeps containerd" -}}
{{- end -}}
{{- if and (eq .Values.mode "handler") .Values.config -}}
{{- fail (printf "config (%s) is berthd's config, used in mode=node only; mode is handler" (keys .Values.config | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}

{{/*
The host directories the installer writes in, one per line: nothing else
of the host is mounted.
  handler: containerd's config directory (the config, and conf.d/ for
           version 3), <prefix>/bin (containerd-shim-berth-v2 and
           berth-runtime), /var/lib (the installer's record,
           /var/lib/berth-install).
  node:    /etc (/etc/berth/config.toml, which may not exist yet, and
           /etc/systemd/system/berthd.service), <prefix>/bin, /var/lib (the
           record; /var/lib/kubelet for switchKubelet; /var/lib/dpkg to see
           whether berth's .deb is installed).
Mounting parents that exist, with type Directory, means the kubelet never
creates a directory on the host, so uninstall leaves nothing behind.
*/}}
{{- define "berth.hostDirs" -}}
{{- $dirs := list -}}
{{- if eq .Values.mode "handler" -}}
{{- $dirs = append $dirs (dir .Values.handler.containerdConfig) -}}
{{- else -}}
{{- $dirs = append $dirs "/etc" -}}
{{- end -}}
{{- $dirs = append $dirs (printf "%s/bin" (trimSuffix "/" .Values.installPrefix)) -}}
{{- $dirs = append $dirs "/var/lib" -}}
{{- if and (eq .Values.mode "node") .Values.node.switchKubelet -}}
{{- $f := .Values.node.kubeletFlagsFile -}}
{{- if not (or (hasPrefix "/etc/" $f) (hasPrefix "/var/lib/" $f)) -}}
{{- $dirs = append $dirs (dir $f) -}}
{{- end -}}
{{- end -}}
{{- $dirs | uniq | join "\n" -}}
{{- end -}}

{{/*
berth-install's arguments for an action ("install" or "uninstall").
*/}}
{{- define "berth.installerArgs" -}}
{{- $v := .root.Values -}}
- {{ .action }}
- --mode
- {{ $v.mode }}
- --host-root
- /host
- --prefix
- {{ $v.installPrefix | quote }}
{{- if eq $v.mode "handler" }}
- --containerd-config
- {{ $v.handler.containerdConfig | quote }}
- --runtime-name
- {{ $v.handler.runtimeName }}
{{- else }}
{{- if eq .action "install" }}
- --config
- /etc/berth-install/config.toml
{{- end }}
- --kubelet-flags-file
- {{ $v.node.kubeletFlagsFile | quote }}
- --kubelet-endpoint
- {{ printf "unix://%s" ($v.config.socket | default "/run/berth/berth.sock") | quote }}
{{- if $v.node.switchKubelet }}
- --switch-kubelet
{{- end }}
{{- end }}
- --stay
{{- end -}}

{{/*
The pod of the installer (action install) and of the cleanup (uninstall).
privileged and hostPID: the installer restarts containerd or berthd with the
host's own systemctl, through nsenter into PID 1's namespaces.
*/}}
{{- define "berth.podSpec" -}}
{{- $v := .root.Values -}}
hostPID: true
priorityClassName: {{ $v.priorityClassName }}
terminationGracePeriodSeconds: 5
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .action }}
    image: {{ include "berth.image" .root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command: ["/opt/berth/bin/berth-install"]
    args:
      {{- include "berth.installerArgs" . | nindent 6 }}
    securityContext:
      privileged: true
    readinessProbe:
      exec:
        command: ["cat", "/tmp/berth-install.done"]
      periodSeconds: 5
    {{- with $v.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      {{- range $i, $d := splitList "\n" (include "berth.hostDirs" .root) }}
      - name: host-{{ $i }}
        mountPath: {{ printf "/host%s" $d | quote }}
      {{- end }}
      {{- if and (eq $v.mode "node") (eq .action "install") }}
      - name: berthd-config
        mountPath: /etc/berth-install
        readOnly: true
      {{- end }}
volumes:
  {{- range $i, $d := splitList "\n" (include "berth.hostDirs" .root) }}
  - name: host-{{ $i }}
    hostPath:
      path: {{ $d | quote }}
      type: Directory
  {{- end }}
  {{- if and (eq $v.mode "node") (eq .action "install") }}
  - name: berthd-config
    configMap:
      name: {{ include "berth.fullname" .root }}-config
  {{- end }}
{{- end -}}

{{/*
A table of berthd's config as TOML: scalars and arrays as `key = value`
(JSON's strings, numbers, booleans and arrays of them are TOML too), then
each sub-table as [section]. Helm reads numbers as floats; toJson prints a
whole float without a fraction, which TOML reads as an integer.
*/}}
{{- define "berth.toml" -}}
{{- $prefix := .prefix -}}
{{- range $k, $v := .table }}
{{- if not (kindIs "map" $v) }}
{{ include "berth.tomlKey" $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- $name := ternary (include "berth.tomlKey" $k) (printf "%s.%s" $prefix (include "berth.tomlKey" $k)) (eq $prefix "") }}

[{{ $name }}]
{{- include "berth.toml" (dict "table" $v "prefix" $name) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "berth.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end -}}
{{- end -}}
