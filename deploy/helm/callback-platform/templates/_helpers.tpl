{{/* Names, labels and the pieces every workload shares. */}}

{{- define "callback-platform.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The Kafka consumers: at most one active consumer per partition in each group. */}}
{{- define "callback-platform.kafkaConsumers" -}}
stateTracker routingSim exporter
{{- end -}}

{{/* Resource name of a service: (dict "root" $ "key" "adminApi") */}}
{{- define "callback-platform.serviceName" -}}
{{- printf "%s-%s" (include "callback-platform.fullname" .root) (kebabcase .key) -}}
{{- end -}}

{{- define "callback-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "callback-platform.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "callback-platform.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: callback-platform
{{- end -}}

{{/* (dict "root" $ "key" "adminApi") */}}
{{- define "callback-platform.componentSelectorLabels" -}}
{{ include "callback-platform.selectorLabels" .root }}
app.kubernetes.io/component: {{ kebabcase .key }}
{{- end -}}

{{- define "callback-platform.componentLabels" -}}
{{ include "callback-platform.labels" .root }}
app.kubernetes.io/component: {{ kebabcase .key }}
{{- end -}}

{{- define "callback-platform.image" -}}
{{- $image := .root.Values.image -}}
{{- $repository := printf "%s/%s" $image.repositoryPrefix .name -}}
{{- if $image.registry -}}
{{- $repository = printf "%s/%s" $image.registry $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{- define "callback-platform.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "callback-platform.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "callback-platform.secretName" -}}
{{- if .Values.secret.create -}}
{{- printf "%s-secrets" (include "callback-platform.fullname" .) -}}
{{- else -}}
{{- required "secret.existingSecret is required when secret.create is false" .Values.secret.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Settings every service shares, as a map of variable name -> value. */}}
{{- define "callback-platform.platformConfig" -}}
{{- $v := .Values -}}
{{- $config := dict
  "KAFKA_BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
  "MONGODB_DATABASE" $v.mongodb.database
  "TOPIC_DUE_CALLBACKS" $v.topics.dueCallbacks
  "TOPIC_ROUTING_EVENTS" $v.topics.routingEvents
  "TOPIC_ROUTING_COMMANDS" $v.topics.routingCommands
  "TOPIC_LIFECYCLE_EVENTS" $v.topics.lifecycleEvents
  "TOPIC_DEAD_LETTER" $v.topics.deadLetter
  "TOPIC_PARTITIONS" $v.topics.partitions
  "TOPIC_REPLICATION_FACTOR" $v.topics.replicationFactor
  "HTTP_HOST" "0.0.0.0"
  "KAFKA_SECURITY_PROTOCOL" $v.kafka.security.protocol
-}}
{{- $kafka := $v.kafka.security -}}
{{- if hasPrefix "SASL_" $kafka.protocol -}}
{{- $_ := set $config "KAFKA_SASL_MECHANISM" $kafka.saslMechanism -}}
{{- $_ := set $config "KAFKA_SASL_USERNAME" (required "kafka.security.saslUsername is required with a SASL_* protocol" $kafka.saslUsername) -}}
{{- if not (and $kafka.secretName $kafka.passwordKey) -}}
{{- fail "kafka.security.secretName and passwordKey are required with a SASL_* protocol (the password is read from that Secret's file)" -}}
{{- end -}}
{{- end -}}
{{- if $kafka.secretName -}}
{{- range $setting, $key := dict "KAFKA_SSL_CAFILE" $kafka.caKey "KAFKA_SASL_PASSWORD_FILE" $kafka.passwordKey "KAFKA_SSL_CERTFILE" $kafka.certKey "KAFKA_SSL_KEYFILE" $kafka.keyKey "KAFKA_SSL_KEY_PASSWORD_FILE" $kafka.keyPasswordKey -}}
{{- if $key -}}
{{- $_ := set $config $setting (printf "/etc/callback-platform/kafka/%s" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $mongo := $v.mongodb.tls | default dict -}}
{{- if $mongo.secretName -}}
{{- range $setting, $key := dict "MONGODB_TLS_CA_FILE" $mongo.caKey "MONGODB_TLS_CERTIFICATE_KEY_FILE" $mongo.certificateKeyKey -}}
{{- if $key -}}
{{- $_ := set $config $setting (printf "/etc/callback-platform/mongodb/%s" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $value := $v.config -}}
{{- $_ := set $config $name $value -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* admin-api's sign-in at an OpenID Connect issuer (adminApi.oidc) as settings; {} when off. */}}
{{- define "callback-platform.oidcConfig" -}}
{{- $oidc := .Values.adminApi.oidc | default dict -}}
{{- if $oidc.issuer -}}
{{- $config := dict
  "OIDC_ISSUER" $oidc.issuer
  "OIDC_AUDIENCE" (required "adminApi.oidc.audience is required with adminApi.oidc.issuer" $oidc.audience)
  "OIDC_SCOPE" ($oidc.scope | default "openid")
  "OIDC_USERNAME_CLAIM" ($oidc.usernameClaim | default "sub")
  "OIDC_ROLES_CLAIM" ($oidc.rolesClaim | default "roles")
  "OIDC_SERVICES_CLAIM" ($oidc.servicesClaim | default "services")
-}}
{{- if $oidc.clientId -}}{{- $_ := set $config "OIDC_CLIENT_ID" $oidc.clientId -}}{{- end -}}
{{- if $oidc.resource -}}{{- $_ := set $config "OIDC_RESOURCE" $oidc.resource -}}{{- end -}}
{{- toYaml $config -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/* env entries reading settings from the Secret: (dict "root" $ "names" list) */}}
{{- define "callback-platform.secretEnv" -}}
{{- $secret := include "callback-platform.secretName" .root -}}
{{- range .names }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end -}}
{{- end -}}

{{/* The container securityContext of every workload. */}}
{{- define "callback-platform.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Refuse values that would leave Kafka consumers idle (more than partitions). */}}
{{- define "callback-platform.validate" -}}
{{- $root := . -}}
{{- range $key := splitList " " (include "callback-platform.kafkaConsumers" .) -}}
{{- $svc := index $root.Values.services $key -}}
{{- if $svc.enabled -}}
{{- $most := int $svc.replicas -}}
{{- if $svc.autoscaling.enabled -}}{{- $most = int $svc.autoscaling.maxReplicas -}}{{- end -}}
{{- if gt $most (int $root.Values.topics.partitions) -}}
{{- fail (printf "services.%s may run %d replicas but topics.partitions is %d: a Kafka consumer group has at most one active consumer per partition (raise topics.partitions first, see docs/operations.md)" $key $most (int $root.Values.topics.partitions)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $key, $svc := .Values.services -}}
{{- if and $svc.enabled $svc.autoscaling.enabled (gt (int $svc.autoscaling.minReplicas) (int $svc.autoscaling.maxReplicas)) -}}
{{- fail (printf "services.%s.autoscaling: minReplicas is above maxReplicas" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Volumes of the Kafka and MongoDB TLS/SASL files (Secrets), for a pod's `volumes`. */}}
{{- define "callback-platform.securityVolumes" -}}
{{- $kafka := .Values.kafka.security -}}
{{- if $kafka.secretName }}
- name: kafka-security
  secret:
    secretName: {{ $kafka.secretName }}
    defaultMode: 0440
    items:
      {{- range $key := list $kafka.caKey $kafka.passwordKey $kafka.certKey $kafka.keyKey $kafka.keyPasswordKey }}
      {{- if $key }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
      {{- end }}
{{- end }}
{{- $mongo := .Values.mongodb.tls | default dict -}}
{{- if $mongo.secretName }}
- name: mongodb-tls
  secret:
    secretName: {{ $mongo.secretName }}
    defaultMode: 0440
    items:
      {{- range $key := list $mongo.caKey $mongo.certificateKeyKey }}
      {{- if $key }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* The matching `volumeMounts` of a container (read-only). */}}
{{- define "callback-platform.securityVolumeMounts" -}}
{{- if .Values.kafka.security.secretName }}
- name: kafka-security
  mountPath: /etc/callback-platform/kafka
  readOnly: true
{{- end }}
{{- if (.Values.mongodb.tls | default dict).secretName }}
- name: mongodb-tls
  mountPath: /etc/callback-platform/mongodb
  readOnly: true
{{- end }}
{{- end -}}
