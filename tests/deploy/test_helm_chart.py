"""The Helm chart (deploy/helm/callback-platform), rendered with the pinned helm for the default
and the production values: every object validates against the Kubernetes OpenAPI schemas
(offline, strict), every workload is locked down, probes and settings match the services, and
replica counts never exceed the partitions their consumer group can use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from callback_shared.settings import PlatformSettings
from cryptography.hazmat.primitives import serialization

from tests.deploy.conftest import (
    CHART,
    PRODUCTION_VALUES,
    SERVICES,
    Tools,
    env_names,
    required_env_names,
    settings_class,
)
from tests.foundation.certs import issue_server_cert, make_ca

#: oldest supported and newest bundled Kubernetes versions, and two between
#: every test here renders the chart with helm and validates it with the deployment tools
pytestmark = pytest.mark.process

KUBERNETES_VERSIONS = ["1.27.0", "1.30.0", "1.33.0", "1.37.0"]
#: services consuming a Kafka topic in a consumer group: replicas <= partitions
KAFKA_CONSUMERS = {"state-tracker", "routing-sim", "exporter"}
#: kinds outside the Kubernetes API (CRDs), checked by hand below
CRD_KINDS = {"ServiceMonitor"}
CASES = {"default": [], "production": ["-f", str(PRODUCTION_VALUES)]}
#: stand-ins for the values of an existing Secret (production values)
PLACEHOLDER_SECRETS = {
    "MONGODB_URL": "mongodb://placeholder:27017",
    "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nplaceholder\n-----END PUBLIC KEY-----",
}

Manifest = dict[str, Any]


class Rendered:
    def __init__(self, case: str, path: Path, docs: list[Manifest]) -> None:
        self.case = case
        self.path = path
        self.docs = docs

    def of_kind(self, kind: str) -> list[Manifest]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> Manifest:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def by_component(self, kind: str) -> dict[str, Manifest]:
        return {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in self.of_kind(kind)
        }

    def workloads(self) -> list[Manifest]:
        return self.of_kind("Deployment") + self.of_kind("Job")


def helm_template(tools: Tools, *args: str, check: bool = True) -> Any:
    return tools.run(
        tools.helm,
        "template",
        "demo",
        CHART,
        "--namespace",
        "callbacks",
        "--kube-version",
        KUBERNETES_VERSIONS[1],
        *args,
        check=check,
    )


@pytest.fixture(scope="module", params=list(CASES))
def rendered(request: pytest.FixtureRequest, tools: Tools, tmp_path_factory: Any) -> Rendered:
    out = helm_template(tools, *CASES[request.param]).stdout
    path = tmp_path_factory.mktemp("chart") / f"{request.param}.yaml"
    path.write_text(out)
    return Rendered(request.param, path, tools.yaml_documents(path))


def enabled_services(rendered: Rendered) -> set[str]:
    return set(rendered.by_component("Deployment"))


def container(workload: Manifest) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


# --- helm's own checks ------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_chart_lints_strict(tools: Tools, case: str) -> None:
    tools.run(tools.helm, "lint", "--strict", CHART, *CASES[case])


def test_values_schema_rejects_unknown_and_mistyped_values(tools: Tools) -> None:
    typo = helm_template(tools, "--set", "services.adminApi.replica=3", check=False)
    assert typo.returncode != 0
    assert "additional properties 'replica' not allowed" in typo.stderr
    mistyped = helm_template(tools, "--set", "topics.partitions=six", check=False)
    assert mistyped.returncode != 0
    assert "/topics/partitions" in mistyped.stderr


def test_chart_refuses_more_consumers_than_partitions(tools: Tools) -> None:
    run = helm_template(tools, "--set", "topics.partitions=4", check=False)
    assert run.returncode != 0
    assert "services.stateTracker may run 6 replicas but topics.partitions is 4" in run.stderr
    fixed = helm_template(
        tools,
        "--set",
        "topics.partitions=4",
        "--set",
        "services.stateTracker.autoscaling.maxReplicas=4",
    )
    assert fixed.returncode == 0


def test_existing_secret_is_required_without_a_chart_secret(tools: Tools) -> None:
    run = helm_template(tools, "--set", "secret.create=false", check=False)
    assert run.returncode != 0
    assert "secret.existingSecret is required" in run.stderr


# --- Kubernetes schemas -----------------------------------------------------------------------


def test_every_object_validates_against_the_kubernetes_schemas(
    tools: Tools, rendered: Rendered
) -> None:
    results = tools.validate(rendered.path, KUBERNETES_VERSIONS)
    assert len(results) == len(rendered.docs) * len(KUBERNETES_VERSIONS)
    invalid = [r for r in results if r["status"] == "invalid"]
    assert not invalid, "\n".join(
        f"{r['version']} {r['kind']}/{r['name']}: {r['error']}" for r in invalid
    )
    unvalidated = {r["kind"] for r in results if r["status"] == "no-schema"}
    assert unvalidated <= CRD_KINDS, f"no schema for {unvalidated - CRD_KINDS}"


def test_the_schema_validation_catches_a_broken_object(
    tools: Tools, rendered: Rendered, tmp_path: Path
) -> None:
    """The harness fails what the API server would refuse (not a silent pass)."""
    text = rendered.path.read_text()
    broken = tmp_path / "broken.yaml"
    text = text.replace("revisionHistoryLimit: 5", "revisionHistoryLimit: five", 1)
    text = text.replace("restartPolicy: Never", "restartPolicy: Never\n      hostNetwrk: true", 1)
    broken.write_text(text)
    results = tools.validate(broken, [KUBERNETES_VERSIONS[-1]])
    errors = {(r["kind"], r["error"].split(":")[0]) for r in results if r["status"] == "invalid"}
    assert ("Deployment", "spec.revisionHistoryLimit") in errors
    assert ("Job", "spec.template.spec") in errors


# --- what is rendered -------------------------------------------------------------------------


def test_objects_per_service(rendered: Rendered) -> None:
    services = enabled_services(rendered)
    expected = set(SERVICES) - ({"routing-sim"} if rendered.case == "production" else set())
    assert services == expected
    for kind in ("Service", "ConfigMap"):
        assert set(rendered.by_component(kind)) == services, kind
    assert set(rendered.by_component("PodDisruptionBudget")) == services
    assert set(rendered.by_component("HorizontalPodAutoscaler")) == {"admin-api", "state-tracker"}
    assert [
        j["metadata"]["labels"]["app.kubernetes.io/component"] for j in rendered.of_kind("Job")
    ] == ["bootstrap"]
    assert len(rendered.of_kind("ServiceAccount")) == 1
    production = rendered.case == "production"
    assert len(rendered.of_kind("Ingress")) == int(production)
    assert len(rendered.of_kind("ServiceMonitor")) == int(production)
    assert len(rendered.of_kind("Secret")) == int(not production)


def test_every_workload_is_locked_down(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        assert all("hostPath" not in v for v in pod.get("volumes", [])), name
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] > 0 and security["runAsGroup"] > 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in pod["containers"] + pod.get("initContainers", []):
            cs = c["securityContext"]
            assert cs["runAsNonRoot"] is True, name
            assert cs["readOnlyRootFilesystem"] is True, name
            assert cs["allowPrivilegeEscalation"] is False, name
            assert cs.get("privileged", False) is False, name
            assert cs["capabilities"]["drop"] == ["ALL"] and "add" not in cs["capabilities"], name
            assert cs.get("runAsUser") != 0, name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name} {bound}"
            # read-only root: a writable /tmp, nothing else
            assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"], name


def test_probes_ports_and_scrape_config(rendered: Rendered) -> None:
    for service, deployment in rendered.by_component("Deployment").items():
        port = settings_class(service).model_fields["http_port"].default
        c = container(deployment)
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        template = deployment["spec"]["template"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        annotations = template["metadata"]["annotations"]
        if rendered.case == "default":
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(port)
            assert annotations["prometheus.io/path"] == "/metrics"
        assert "checksum/config" in annotations
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0


def test_images_are_the_service_images(rendered: Rendered) -> None:
    tag = "0.1.0"
    prefix = {
        "default": "callback-platform",
        "production": "registry.example.com/contact-centre/callback-platform",
    }[rendered.case]
    for service, deployment in rendered.by_component("Deployment").items():
        assert container(deployment)["image"] == f"{prefix}/{service}:{tag}"
    (job,) = rendered.of_kind("Job")
    assert container(job)["image"] == f"{prefix}/scheduler:{tag}"


# --- settings ---------------------------------------------------------------------------------


def resolved_env(rendered: Rendered, workload: Manifest) -> tuple[dict[str, str], dict[str, str]]:
    """(plain settings, settings read from the Secret) -> value, of a workload's container; the
    chart-made Secret's values, or placeholders for an existing Secret."""
    c = container(workload)
    plain: dict[str, str] = {}
    from_secret: dict[str, str] = {}
    for source in c.get("envFrom", []):
        assert set(source) == {"configMapRef"}, source
        plain.update(rendered.get("ConfigMap", source["configMapRef"]["name"])["data"])
    secrets = rendered.of_kind("Secret")
    secret_name = secrets[0]["metadata"]["name"] if secrets else "callback-platform"
    for entry in c.get("env", []):
        if "value" in entry:
            plain[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret_name, "key": entry["name"]}, entry
        if secrets:
            assert ref["key"] in secrets[0]["stringData"], f"the Secret has no {ref['key']}"
            from_secret[ref["key"]] = secrets[0]["stringData"][ref["key"]]
        else:
            from_secret[ref["key"]] = PLACEHOLDER_SECRETS.get(ref["key"], "x" * 48)
    return plain, from_secret


def check_settings(
    cls: type[PlatformSettings], plain: dict[str, str], from_secret: dict[str, str], what: str
) -> None:
    names = set(plain) | set(from_secret)
    unknown = names - env_names(cls)
    assert not unknown, f"{what}: {sorted(unknown)} are not settings of {cls.__name__}"
    missing = required_env_names(cls) - names
    assert not missing, f"{what}: required settings {sorted(missing)} are not set"
    # connection strings and every SecretStr setting come from the Secret, never a ConfigMap
    secret_typed = {
        name.upper() for name, f in cls.model_fields.items() if "SecretStr" in str(f.annotation)
    }
    in_the_clear = ({"MONGODB_URL"} | secret_typed) & set(plain)
    assert not in_the_clear, f"{what}: {sorted(in_the_clear)} in a ConfigMap"
    assert "MONGODB_URL" in from_secret, f"{what}: MONGODB_URL does not come from the Secret"
    values: dict[str, Any] = {
        name.lower(): value for name, value in {**plain, **from_secret}.items()
    }
    cls(**values)


def test_every_workload_gets_valid_settings_of_its_service(rendered: Rendered) -> None:
    for service, deployment in rendered.by_component("Deployment").items():
        plain, from_secret = resolved_env(rendered, deployment)
        check_settings(settings_class(service), plain, from_secret, service)
        assert plain["HTTP_HOST"] == "0.0.0.0"
        assert int(plain["HTTP_PORT"]) == container(deployment)["ports"][0]["containerPort"]
    (job,) = rendered.of_kind("Job")
    plain, from_secret = resolved_env(rendered, job)
    check_settings(PlatformSettings, plain, from_secret, "bootstrap Job")


def test_admin_api_can_verify_tokens(rendered: Rendered) -> None:
    plain, from_secret = resolved_env(rendered, rendered.by_component("Deployment")["admin-api"])
    keys = {"JWT_SECRET", "JWT_PUBLIC_KEY", "OIDC_ISSUER"} & (set(plain) | set(from_secret))
    assert keys, "without a key every API request is refused"


def test_oidc_values_become_admin_api_settings(tools: Tools, tmp_path: Path) -> None:
    issuer = "https://sso.example.com/realms/contact-centre"
    values = {
        "adminApi.oidc.issuer": issuer,
        "adminApi.oidc.audience": "callback-admin-api",
        "adminApi.oidc.clientId": "callback-console",
        "adminApi.oidc.rolesClaim": "realm_access.roles",
    }
    args = [arg for name, value in values.items() for arg in ("--set", f"{name}={value}")]
    path = tmp_path / "oidc.yaml"
    path.write_text(helm_template(tools, *args).stdout)
    docs = [d for d in tools.yaml_documents(path) if d["kind"] == "ConfigMap"]
    by_component = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs}
    admin = by_component["admin-api"]["data"]
    assert admin["OIDC_ISSUER"] == issuer and admin["OIDC_AUDIENCE"] == "callback-admin-api"
    assert admin["OIDC_CLIENT_ID"] == "callback-console"
    assert admin["OIDC_ROLES_CLAIM"] == "realm_access.roles"
    assert admin["OIDC_SERVICES_CLAIM"] == "services" and admin["OIDC_SCOPE"] == "openid"
    assert not any("OIDC_ISSUER" in d["data"] for k, d in by_component.items() if k != "admin-api")
    # an issuer without an audience, or over http, is refused at render time
    no_audience = helm_template(tools, "--set", f"adminApi.oidc.issuer={issuer}", check=False)
    assert no_audience.returncode != 0 and "adminApi.oidc.audience" in no_audience.stderr
    plain_http = helm_template(
        tools, *args, "--set", "adminApi.oidc.issuer=http://sso.example.com", check=False
    )
    assert plain_http.returncode != 0 and "issuer" in plain_http.stderr


def test_a_generated_secret_is_random_and_long_enough(tools: Tools) -> None:
    first, second = (
        helm_template(tools, "--show-only", "templates/secret.yaml").stdout for _ in range(2)
    )
    assert "JWT_SECRET" in first and first != second
    given = helm_template(
        tools,
        "--show-only",
        "templates/secret.yaml",
        "--set",
        "secret.values.JWT_SECRET=" + "k" * 40,
    ).stdout
    assert f'JWT_SECRET: "{"k" * 40}"' in given


def test_bootstrap_job_runs_before_install_and_upgrade(rendered: Rendered) -> None:
    (job,) = rendered.of_kind("Job")
    c = container(job)
    assert c["command"] == ["callback-bootstrap"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    # a hook runs before the release's other objects exist: it reads no chart ConfigMap and no
    # chart ServiceAccount, and a chart-made Secret it reads is an earlier hook
    assert "envFrom" not in c and "serviceAccountName" not in job["spec"]["template"]["spec"]
    for secret in rendered.of_kind("Secret"):
        assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            annotations["helm.sh/hook-weight"]
        )


def test_consumers_do_not_outnumber_partitions(rendered: Rendered) -> None:
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in rendered.of_kind("HorizontalPodAutoscaler")
    }
    for service, deployment in rendered.by_component("Deployment").items():
        if service not in KAFKA_CONSUMERS:
            continue
        plain, _ = resolved_env(rendered, deployment)
        name = deployment["metadata"]["name"]
        most = hpas[name]["spec"]["maxReplicas"] if name in hpas else deployment["spec"]["replicas"]
        assert most <= int(plain["TOPIC_PARTITIONS"]), service


# --- objects that point at each other ---------------------------------------------------------


def test_references_between_objects_resolve(rendered: Rendered) -> None:
    deployments = rendered.of_kind("Deployment")

    def selected(selector: dict[str, str]) -> list[str]:
        return [
            d["metadata"]["name"]
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    for service in rendered.of_kind("Service"):
        assert len(selected(service["spec"]["selector"])) == 1, service["metadata"]["name"]
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        assert len(selected(pdb["spec"]["selector"]["matchLabels"])) == 1
    names = {d["metadata"]["name"] for d in deployments}
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in names
        assert (
            "replicas"
            not in rendered.get("Deployment", hpa["spec"]["scaleTargetRef"]["name"])["spec"]
        )
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    for ingress in rendered.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target = services[backend["name"]]
                assert target["metadata"]["labels"]["app.kubernetes.io/component"] == "admin-api"
                assert backend["port"]["name"] in {p["name"] for p in target["spec"]["ports"]}
    for monitor in rendered.of_kind("ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [
            s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert len(matched) == len(services)
        assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [
            ("http", "/metrics")
        ]
    accounts = {a["metadata"]["name"] for a in rendered.of_kind("ServiceAccount")}
    for deployment in deployments:
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] in accounts


# --- Kafka TLS/SASL and MongoDB TLS from mounted Secrets ---------------------------------------

SECURE_VALUES = [
    *("--set", "kafka.security.protocol=SASL_SSL"),
    *("--set", "kafka.security.saslUsername=callbacks"),
    *("--set", "kafka.security.secretName=kafka-client"),
    *("--set", "kafka.security.passwordKey=password"),
    *("--set", "kafka.security.certKey=tls.crt"),
    *("--set", "kafka.security.keyKey=tls.key"),
    *("--set", "mongodb.tls.secretName=mongodb-client"),
    *("--set", "mongodb.tls.certificateKeyKey=client.pem"),
]


def test_security_files_come_from_mounted_secrets(tools: Tools, tmp_path: Path) -> None:
    out = helm_template(tools, *SECURE_VALUES).stdout
    path = tmp_path / "secure.yaml"
    path.write_text(out)
    rendered = Rendered("secure", path, tools.yaml_documents(path))
    results = tools.validate(path, KUBERNETES_VERSIONS[1:2])
    assert not [r for r in results if r["status"] == "invalid"], results
    # the mounted files, stood in for by local ones: every workload's settings load
    files = {
        "/etc/callback-platform/kafka/ca.crt",
        "/etc/callback-platform/kafka/password",
        "/etc/callback-platform/kafka/tls.crt",
        "/etc/callback-platform/kafka/tls.key",
        "/etc/callback-platform/mongodb/ca.crt",
        "/etc/callback-platform/mongodb/client.pem",
    }
    local = {name: tmp_path / name.replace("/", "_") for name in files}
    for stand_in in local.values():
        stand_in.write_text("x\n")
    ca_key, ca_cert = make_ca("chart test CA")
    key, cert = issue_server_cert(ca_key, ca_cert)
    pem = serialization.Encoding.PEM
    local["/etc/callback-platform/kafka/ca.crt"].write_bytes(ca_cert.public_bytes(pem))
    local["/etc/callback-platform/kafka/tls.crt"].write_bytes(cert.public_bytes(pem))
    local["/etc/callback-platform/kafka/tls.key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    workloads = {**rendered.by_component("Deployment"), "bootstrap": rendered.of_kind("Job")[0]}
    for component, workload in workloads.items():
        plain, from_secret = resolved_env(rendered, workload)
        assert plain["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert plain["KAFKA_SASL_USERNAME"] == "callbacks"
        assert "KAFKA_SASL_PASSWORD" not in plain and "KAFKA_SASL_PASSWORD" not in from_secret
        paths = {v for k, v in plain.items() if k.endswith(("FILE", "_CAFILE", "_CERTFILE"))}
        assert paths == files, component
        pod = workload["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in container(workload)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts["kafka-security"]["readOnly"] and mounts["mongodb-tls"]["readOnly"]
        assert volumes["kafka-security"]["secret"]["secretName"] == "kafka-client"
        assert {i["key"] for i in volumes["kafka-security"]["secret"]["items"]} == {
            "ca.crt",
            "password",
            "tls.crt",
            "tls.key",
        }
        assert volumes["mongodb-tls"]["secret"]["secretName"] == "mongodb-client"
        cls = PlatformSettings if component == "bootstrap" else settings_class(component)
        local_plain = {k: str(local.get(v, v)) for k, v in plain.items()}
        check_settings(cls, local_plain, from_secret, component)


def test_sasl_without_a_password_secret_is_refused(tools: Tools) -> None:
    run = helm_template(
        tools,
        *("--set", "kafka.security.protocol=SASL_SSL"),
        *("--set", "kafka.security.saslUsername=callbacks"),
        check=False,
    )
    assert run.returncode != 0
    assert "kafka.security.secretName and passwordKey are required" in run.stderr
