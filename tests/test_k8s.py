"""deploy/k8s, checked offline (no cluster here).

Each overlay is rendered with `kubectl kustomize`, every object is validated against the
Kubernetes schemas of a pinned version (kubernetes-validate, strict: unknown fields fail), and
our own rules are applied to the rendered output: probes, requests and limits, non-root and
read-only pods, shutdown timing, autoscalers, the disruption budget, the Service and Ingress
wiring, the migration Job, secrets, pinned images and the PostgreSQL connection budget.

KUBECTL names the binary (default `kubectl`): the kustomizations render with kustomize v5
(kubectl >= 1.27) and with the v2.0.3 inside Debian's kubernetes-client 1.20.
"""

from __future__ import annotations

import base64
import copy
import functools
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from secrets import token_urlsafe
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from service.__main__ import PROJECT_ROOT
from service.config import ConfigError, Settings, load_settings

K8S_DIR = PROJECT_ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production")
SECRET_TEMPLATE = K8S_DIR / "base" / "secret.template.yaml"
# The oldest Kubernetes minor the deploy supports (and the namespaces' Pod Security version):
# strict validation against it also rejects fields that only newer releases know.
KUBERNETES_VERSION = "1.31.0"
KUBECTL = os.environ.get("KUBECTL", "kubectl")
APP_NAME = "quart-service"
SECRET_NAME = "quart-service-secrets"
# Settings that carry credentials: the Secret's keys, never the ConfigMap's.
SECRET_SETTINGS = {"DATABASE_URL", "REDIS_URL"} | {
    name.upper() for name, field in Settings.model_fields.items() if field.annotation is SecretStr
}
# PostgreSQL connections the service's pods may hold in total: the in-cluster server's
# max_connections 100 minus 3 superuser slots; production: the managed server's assumed 200
# minus 20 kept free (overlays/production/kustomization.yaml).
CONNECTION_BUDGET = {"local": 97, "production": 180}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
PUBLIC_INGRESS = "quart-service"
# The paths no client from outside may reach (ingress.yaml): refused by an Ingress of their
# own whose denylist matches every address.
INTERNAL_PATHS_INGRESS = "quart-service-internal-paths"
INTERNAL_PATHS = {"/error", "/slow", "/metrics"}
DENY_EVERYONE = {"0.0.0.0/0", "::/0"}
# Pod volumes the restricted Pod Security profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# name:tag or name@digest; the tag must not be `latest`.
PINNED_IMAGE = re.compile(r"^[^@]+@sha256:[0-9a-f]{64}$|^[^@]+:(?!latest$)[\w][\w.-]*$")
VERSION_TAG = re.compile(r":v?\d+\.\d+(\.\d+)?[-\w.]*(@sha256:[0-9a-f]{64})?$")

Obj = dict[str, Any]


# --- rendering -----------------------------------------------------------------------------


def kubectl() -> str:
    """The kubectl binary; a missing one fails the test with what to install."""
    found = shutil.which(KUBECTL)
    if found is None:
        pytest.fail(
            f"{KUBECTL!r} not found: these tests render deploy/k8s with `kubectl kustomize`. "
            "Install kubectl (Debian: apt-get install kubernetes-client) or set KUBECTL."
        )
    return found


@functools.cache
def _render(directory: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", directory],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return tuple(item for item in yaml.safe_load_all(result.stdout) if item)


def render(name: str) -> list[Obj]:
    """The objects `kubectl kustomize` makes of an overlay (or "base"); a fresh copy each time."""
    directory = K8S_DIR / "base" if name == "base" else K8S_DIR / "overlays" / name
    return copy.deepcopy(list(_render(str(directory))))


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [item for item in objects if item["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [item for item in of_kind(objects, kind) if item["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def labels(item: Obj) -> dict[str, str]:
    return item["metadata"].get("labels") or {}


def component(objects: list[Obj], kind: str, role: str) -> Obj:
    """Our object of a kind for one role (api, worker, migrate), by its labels."""
    found = [
        item
        for item in of_kind(objects, kind)
        if labels(item).get("app.kubernetes.io/name") == APP_NAME
        and labels(item).get("app.kubernetes.io/component") == role
    ]
    assert len(found) == 1, f"expected one {kind} with component={role}, found {len(found)}"
    return found[0]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def containers(workload: Obj) -> Iterator[Obj]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]


def is_our_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] == APP_NAME


def app_container(workload: Obj) -> Obj:
    """The container that runs our image."""
    return next(c for c in containers(workload) if is_our_image(c["image"]))


def secret_refs(container: Obj) -> list[str]:
    return [s["secretRef"]["name"] for s in container.get("envFrom") or [] if "secretRef" in s]


def secret_values(secret: Obj) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def our_workloads(objects: list[Obj]) -> list[Obj]:
    return [
        item
        for item in objects
        if item["kind"] in WORKLOAD_KINDS
        and any(is_our_image(container["image"]) for container in containers(item))
    ]


def environment(objects: list[Obj], container: Obj) -> dict[str, str]:
    """What the container's process sees from its ConfigMaps and plain `env` values."""
    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            config = named(objects, "ConfigMap", source["configMapRef"]["name"])
            values.update(config.get("data") or {})
    for variable in container.get("env") or []:
        if "value" in variable:
            values[variable["name"]] = variable["value"]
    return values


def setting(values: dict[str, str], name: str) -> float:
    """A numeric setting as the service reads it: the environment, else its default."""
    if name in values:
        return float(values[name])
    return float(Settings.model_fields[name.lower()].default)


def container_port(container: Obj, port: int | str) -> int | None:
    """A probe's or Service's port (number or name) as the container's port number."""
    for declared in container.get("ports") or []:
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    return None


def pre_stop_seconds(container: Obj) -> float:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = (pre_stop.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0].endswith("sleep"):
        return float(command[1])
    return 0.0


# --- our rules (each returns the problems it found, so the tests can show they fail) -------


def api_problems(objects: list[Obj], api: Obj) -> list[str]:
    """The API Deployment: replicas, command, probes on the serving port, one process."""
    problems = []
    if api["spec"].get("replicas", 1) < 2:
        problems.append(f"api: replicas {api['spec'].get('replicas', 1)} < 2")
    container = app_container(api)
    if container.get("command") != ["python", "-m", "service", "serve"]:
        problems.append(f"api: command {container.get('command')} is not the serve command")
    env = environment(objects, container)
    port = int(setting(env, "PORT"))
    if container_port(container, port) != port:
        problems.append(f"api: PORT {port} is not a declared container port")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check = (container.get(probe) or {}).get("httpGet")
        if not check:
            problems.append(f"api: no HTTP {probe}")
            continue
        if check.get("path") != path:
            problems.append(f"api: {probe} path {check.get('path')} is not {path}")
        if container_port(container, check.get("port")) != port:
            problems.append(f"api: {probe} port {check.get('port')} is not the app's port {port}")
    if setting(env, "WEB_CONCURRENCY") != 1:
        problems.append("api: WEB_CONCURRENCY is not 1 (the pod is the unit of scaling)")
    return problems


def pod_problems(workload: Obj) -> list[str]:
    """Every pod: limits, non-root, no privileges, read-only root, restricted profile, tags."""
    where = f"{workload['kind']} {workload['metadata']['name']}"
    spec = pod_spec(workload)
    pod_security = spec.get("securityContext") or {}
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{where}: {flag}")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {volume['name']} is {sorted(kinds)}")
    for container in containers(workload):
        name = f"{where} container {container['name']}"
        security = {**pod_security, **(container.get("securityContext") or {})}
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    problems.append(f"{name}: no {resource} {kind[:-1]}")
        if security.get("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if 0 in (pod_security.get("runAsUser"), security.get("runAsUser")):
            problems.append(f"{name}: runAsUser 0")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if security.get("privileged"):
            problems.append(f"{name}: privileged")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name}: capabilities not dropped (drop: [ALL])")
        if (security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        if not PINNED_IMAGE.match(container["image"]):
            problems.append(f"{name}: image {container['image']} has no pinned tag")
    return problems


def shutdown_problems(objects: list[Obj], workload: Obj) -> list[str]:
    """The kubelet's grace period outlasts the process's own drain (and the preStop pause)."""
    grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
    problems = []
    for container in containers(workload):
        if not is_our_image(container["image"]):
            continue
        env = environment(objects, container)
        command = " ".join(container.get("command") or [])
        if "serve" in command:
            drain = pre_stop_seconds(container) + setting(env, "GRACEFUL_TIMEOUT")
        elif "arq" in command:
            drain = pre_stop_seconds(container) + setting(env, "WORKER_JOB_COMPLETION_WAIT")
        else:
            continue
        if grace <= drain:
            problems.append(
                f"{workload['metadata']['name']}: terminationGracePeriodSeconds {grace} "
                f"is not longer than the {drain:g} s the process needs to stop"
            )
    return problems


def connection_problems(objects: list[Obj], budget: int) -> list[str]:
    """All pods at their HPA maximum plus a rollout's surge stay within PostgreSQL's limit."""
    total = 0.0
    parts = []
    for workload in our_workloads(objects):
        container = app_container(workload)
        if workload["kind"] == "Job":
            total += 1  # Alembic's NullPool engine: one connection
            continue
        hpas = [
            hpa
            for hpa in of_kind(objects, "HorizontalPodAutoscaler")
            if hpa["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
        ]
        pods = hpas[0]["spec"]["maxReplicas"] if hpas else workload["spec"].get("replicas", 1)
        surge = workload["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
        if isinstance(surge, str):  # a percentage, rounded up like the controller does
            surge = math.ceil(pods * int(surge.rstrip("%")) / 100)
        env = environment(objects, container)
        serves = "serve" in (container.get("command") or [])
        processes = setting(env, "WEB_CONCURRENCY") if serves else 1
        per_process = setting(env, "DB_POOL_SIZE") + setting(env, "DB_MAX_OVERFLOW")
        if serves:
            per_process += 1  # the readiness probe's own connection (service/health/readiness.py)
        connections = (pods + surge) * processes * per_process
        parts.append(f"{workload['metadata']['name']} {connections:g}")
        total += connections
    if total > budget:
        return [f"{total:g} PostgreSQL connections ({', '.join(parts)}, jobs) > {budget}"]
    return []


def service_for(objects: list[Obj], api: Obj) -> Obj:
    """The ClusterIP Service whose selector picks the API's pods."""
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    found = [
        service
        for service in of_kind(objects, "Service")
        if service["spec"].get("type", "ClusterIP") == "ClusterIP"
        and service["spec"].get("selector")
        and service["spec"]["selector"].items() <= pod_labels.items()
    ]
    assert len(found) == 1, f"expected one ClusterIP Service for the API pods, got {found}"
    return found[0]


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_every_rendered_object_matches_the_kubernetes_schema(overlay: str) -> None:
    """Each object `kubectl kustomize` renders validates strictly against the pinned version."""
    objects = render(overlay)
    assert objects, f"{overlay} rendered nothing"
    errors = []
    for item in objects:
        try:
            kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{item['kind']} {item['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(error.message)
    assert not errors, "\n".join(errors)


def test_the_schema_validation_rejects_a_misspelt_field() -> None:
    """Strict validation is not a no-op: an unknown field and a wrong type both fail."""
    api = component(render("production"), "Deployment", "api")
    misspelt = copy.deepcopy(api)
    misspelt["spec"]["replica"] = misspelt["spec"].pop("replicas")
    wrong_type = copy.deepcopy(api)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "forty"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_and_pod_is_labelled(overlay: str) -> None:
    """app.kubernetes.io/name and /component on every object and pod template."""
    missing = []
    for item in render(overlay):
        carriers = [("", item["metadata"])]
        if "template" in item.get("spec", {}):
            carriers.append((" pod template", item["spec"]["template"]["metadata"]))
        for where, metadata in carriers:
            keys = set(metadata.get("labels") or {})
            if not {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= keys:
                missing.append(f"{item['kind']} {item['metadata']['name']}{where}")
    assert not missing, missing


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_the_api_deployment_has_replicas_and_probes(overlay: str) -> None:
    """>= 2 replicas, readiness /readyz and liveness /healthz on the app's port, one process."""
    objects = render(overlay)
    assert api_problems(objects, component(objects, "Deployment", "api")) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_limited(overlay: str) -> None:
    """Requests and limits, non-root, no escalation, read-only root, pinned images: every pod."""
    workloads = [item for item in render(overlay) if item["kind"] in WORKLOAD_KINDS]
    assert len(our_workloads(workloads)) == 3  # api, worker, migrate
    problems = [problem for workload in workloads for problem in pod_problems(workload)]
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_pods_write_only_to_an_empty_dir_at_tmp(overlay: str) -> None:
    """The image's only writes (/tmp/metrics) land on an emptyDir, the rest is read-only."""
    for workload in our_workloads(render(overlay)):
        volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes") or []}
        for container in containers(workload):
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{workload['metadata']['name']}: nothing mounted at /tmp"
            assert "emptyDir" in volumes[mounts["/tmp"]]
            if "arq" in container["command"]:  # only `serve` creates PROMETHEUS_MULTIPROC_DIR
                assert "emptyDir" in volumes[mounts["/tmp/metrics"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_drain(overlay: str) -> None:
    """API: > preStop + GRACEFUL_TIMEOUT; worker: > WORKER_JOB_COMPLETION_WAIT."""
    objects = render(overlay)
    api = component(objects, "Deployment", "api")
    container = app_container(api)
    assert pre_stop_seconds(container) > 0, "no preStop pause before hypercorn drains"
    problems = [
        problem
        for workload in our_workloads(objects)
        for problem in shutdown_problems(objects, workload)
    ]
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_of_ours_has_an_autoscaler(overlay: str) -> None:
    """One autoscaling/v2 HPA per Deployment; its minReplicas is the Deployment's replicas."""
    objects = render(overlay)
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    deployments = [item for item in our_workloads(objects) if item["kind"] == "Deployment"]
    assert {labels(item)["app.kubernetes.io/component"] for item in deployments} == {
        "api",
        "worker",
    }
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        targeting = [
            hpa
            for hpa in hpas
            if hpa["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        assert len(targeting) == 1, f"{name}: {len(targeting)} autoscalers"
        spec = targeting[0]["spec"]
        assert targeting[0]["apiVersion"] == "autoscaling/v2"
        assert spec["minReplicas"] == deployment["spec"]["replicas"], name
        assert spec["maxReplicas"] > spec["minReplicas"], name
        assert spec["metrics"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_disruption_budget_covers_the_api_pods(overlay: str) -> None:
    """A PodDisruptionBudget selects the API pods and allows at most one down at a time."""
    objects = render(overlay)
    pod_labels = component(objects, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in of_kind(objects, "PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert len(budgets) == 1
    spec = budgets[0]["spec"]
    assert spec.get("maxUnavailable") == 1 or spec.get("minAvailable", 0) >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_and_the_ingress_reach_the_api(overlay: str) -> None:
    """ClusterIP Service -> the API container's port; every Ingress path -> that Service."""
    objects = render(overlay)
    api = component(objects, "Deployment", "api")
    service = service_for(objects, api)
    container = app_container(api)
    assert [port["port"] for port in service["spec"]["ports"]] == [80]
    service_port = service["spec"]["ports"][0]
    assert container_port(container, service_port["targetPort"]) == 8000
    ingresses = of_kind(objects, "Ingress")
    assert {ingress["metadata"]["name"] for ingress in ingresses} == {
        PUBLIC_INGRESS,
        INTERNAL_PATHS_INGRESS,
    }
    paths = [
        path
        for ingress in ingresses
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert paths
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"].get("name", backend["port"].get("number")) in (
            service_port["name"],
            service_port["port"],
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_answers_every_ingress_host_behind_one_trusted_hop(overlay: str) -> None:
    """ALLOWED_HOSTS names each Ingress host (any other Host is a 400), and the ingress
    controller is the one trusted proxy hop (its X-Forwarded-For and -Proto are honoured)."""
    objects = render(overlay)
    env = environment(objects, app_container(component(objects, "Deployment", "api")))
    allowed = Settings(allowed_hosts=env.get("ALLOWED_HOSTS", "")).allowed_host_set
    hosts = {
        rule["host"] for ingress in of_kind(objects, "Ingress") for rule in ingress["spec"]["rules"]
    }
    assert hosts and allowed is not None and hosts <= allowed, (hosts, allowed)
    assert env.get("TRUSTED_PROXY_HOPS") == "1"


def internal_paths_problems(objects: list[Obj]) -> list[str]:
    """Every host of the public Ingress refuses /error, /slow and /metrics to everyone."""
    problems = []
    public = named(objects, "Ingress", PUBLIC_INGRESS)
    refusing = named(objects, "Ingress", INTERNAL_PATHS_INGRESS)
    annotations = refusing["metadata"].get("annotations") or {}
    denied = annotations.get("nginx.ingress.kubernetes.io/denylist-source-range", "")
    if {network.strip() for network in denied.split(",")} != DENY_EVERYONE:
        problems.append(f"{INTERNAL_PATHS_INGRESS}: denylist {denied!r} lets someone in")
    if refusing["spec"].get("ingressClassName") != public["spec"].get("ingressClassName"):
        problems.append(f"{INTERNAL_PATHS_INGRESS}: another ingress class than the public one")
    refused = {
        rule.get("host"): {
            path["path"] for path in rule["http"]["paths"] if path.get("pathType") == "Prefix"
        }
        for rule in refusing["spec"]["rules"]
    }
    for rule in public["spec"]["rules"]:
        missing = INTERNAL_PATHS - refused.get(rule.get("host"), set())
        if missing:
            problems.append(f"{rule.get('host')}: {sorted(missing)} not refused")
    return problems


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_the_ingress_refuses_the_test_endpoints_and_metrics(overlay: str) -> None:
    assert internal_paths_problems(render(overlay)) == []


def test_the_internal_paths_rule_reports_a_host_left_open() -> None:
    objects = render("local")
    refusing = named(objects, "Ingress", INTERNAL_PATHS_INGRESS)
    refusing["spec"]["rules"][0]["host"] = "another.example.com"
    refusing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/denylist-source-range"] = (
        "10.0.0.0/8"
    )
    assert len(internal_paths_problems(objects)) == 2


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_prometheus_scrapes_the_api_on_its_metrics_port_not_the_service(overlay: str) -> None:
    """METRICS_PORT is a container port, the scrape annotation's, and not in the Service."""
    objects = render(overlay)
    api = component(objects, "Deployment", "api")
    container = app_container(api)
    env = environment(objects, container)
    metrics_port = int(env["METRICS_PORT"])
    assert metrics_port != int(setting(env, "PORT"))
    assert container_port(container, "metrics") == metrics_port
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service = service_for(objects, api)
    targets = {container_port(container, port["targetPort"]) for port in service["spec"]["ports"]}
    assert metrics_port not in targets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_is_bounded(overlay: str) -> None:
    """The Job runs `service migrate` with retries, a deadline and clean-up."""
    job = component(render(overlay), "Job", "migrate")
    assert app_container(job)["command"] == ["python", "-m", "service", "migrate"]
    assert 1 <= job["spec"]["backoffLimit"] <= 10
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references_resolve(overlay: str) -> None:
    """Every ConfigMap/Secret a pod names is rendered, except production's external Secret."""
    objects = render(overlay)
    rendered = {(item["kind"], item["metadata"]["name"]) for item in objects}
    template_name = yaml.safe_load(SECRET_TEMPLATE.read_text())["metadata"]["name"]
    for workload in (item for item in objects if item["kind"] in WORKLOAD_KINDS):
        for container in containers(workload):
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in rendered
                    continue
                name = source["secretRef"]["name"]
                if overlay == "production":
                    # Created out of band from the template, under the template's name.
                    assert name == template_name == SECRET_NAME
                    assert ("Secret", name) not in rendered
                else:
                    assert ("Secret", name) in rendered, f"{name} is not rendered"
                    if is_our_image(container["image"]):
                        assert name.startswith(SECRET_NAME)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    """No :latest and no untagged image; production uses a registry image with a version tag."""
    objects = render(overlay)
    for workload in (item for item in objects if item["kind"] in WORKLOAD_KINDS):
        for container in containers(workload):
            image = container["image"]
            assert PINNED_IMAGE.match(image), image
            if overlay == "production" or not is_our_image(image):
                assert VERSION_TAG.search(image), f"{image}: not a version tag"
            if overlay == "production" and is_our_image(image):
                assert "/" in image.split(":")[0], f"{image}: not from a registry"
            if overlay == "local" and is_our_image(image):
                assert image == "quart-service:dev"
                assert container["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_namespace_enforces_the_restricted_pod_security_profile(overlay: str) -> None:
    """Every object lives in one namespace whose Pod Security admission is `restricted`."""
    objects = render(overlay)
    namespaces = of_kind(objects, "Namespace")
    assert len(namespaces) == 1
    namespace = namespaces[0]
    assert labels(namespace)["pod-security.kubernetes.io/enforce"] == "restricted"
    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert labels(namespace)["pod-security.kubernetes.io/enforce-version"] == f"v{major_minor}"
    for item in objects:
        if item["kind"] != "Namespace":
            assert item["metadata"]["namespace"] == namespace["metadata"]["name"], item


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_connections_stay_within_the_budget(overlay: str) -> None:
    """HPA maxima + surge, x processes x (DB_POOL_SIZE + DB_MAX_OVERFLOW, + 1 for the API's
    readiness probe), + the Job <= budget."""
    assert connection_problems(render(overlay), CONNECTION_BUDGET[overlay]) == []


def test_production_runs_in_production_mode_behind_tls_without_secrets() -> None:
    """APP_ENV=production, TLS with cert-manager on every host, no Secret in the output."""
    objects = render("production")
    for workload in our_workloads(objects):
        for container in containers(workload):
            assert environment(objects, container)["APP_ENV"] == "production"
    assert of_kind(objects, "Secret") == []
    ingress = named(objects, "Ingress", PUBLIC_INGRESS)
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    tls_hosts = {host for entry in ingress["spec"]["tls"] for host in entry["hosts"]}
    assert all(entry["secretName"] for entry in ingress["spec"]["tls"])
    assert {rule["host"] for rule in ingress["spec"]["rules"]} <= tls_hosts
    assert component(objects, "Deployment", "api")["spec"]["replicas"] >= 3


def test_local_uses_in_cluster_stores_and_development_only_secrets() -> None:
    """Local: development mode, throwaway secrets that point at the in-cluster services."""
    objects = render("local")
    api = component(objects, "Deployment", "api")
    container = app_container(api)
    assert environment(objects, container)["APP_ENV"] == "development"
    [secret_name] = secret_refs(container)
    secret = named(objects, "Secret", secret_name)
    values = secret_values(secret)
    assert set(values) == SECRET_SETTINGS
    assert "development" in values["SECRET_KEY"] and "local" in values["SECRET_KEY"]
    services = {item["metadata"]["name"] for item in of_kind(objects, "Service")}
    database, redis = urlsplit(values["DATABASE_URL"]), urlsplit(values["REDIS_URL"])
    assert {database.hostname, redis.hostname} <= services
    postgres = named(objects, "Secret", "postgres-local")["stringData"]
    assert (database.username, database.password, database.path) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        "/" + postgres["POSTGRES_DB"],
    )
    Settings(**{key.lower(): value for key, value in values.items()})  # valid settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rendered_settings_are_valid(overlay: str) -> None:
    """What each of our containers gets (ConfigMap, env, Secret) passes the service's Settings."""
    objects = render(overlay)
    for workload in our_workloads(objects):
        container = app_container(workload)
        if overlay == "production":  # the template's shape, with a key that would pass
            secrets = {**yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"]}
            secrets["SECRET_KEY"] = token_urlsafe(48)
        else:
            [secret_name] = secret_refs(container)
            secrets = secret_values(named(objects, "Secret", secret_name))
        values = {**environment(objects, container), **secrets}
        settings = load_settings(**{key.lower(): value for key, value in values.items()})
        assert settings.app_env == ("production" if overlay == "production" else "development")
        assert settings.redis_url and not settings.is_sqlite


def test_the_secret_template_documents_exactly_the_secret_settings() -> None:
    """The template: the keys the app needs, placeholders only, valid, used by no kustomization."""
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())
    kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert template["metadata"]["name"] == SECRET_NAME
    assert set(template["stringData"]) == SECRET_SETTINGS
    assert all("REPLACE" in value for value in template["stringData"].values())
    with pytest.raises(ConfigError, match="SECRET_KEY"):  # never a usable key by accident
        load_settings(secret_key=template["stringData"]["SECRET_KEY"])
    for kustomization in K8S_DIR.rglob("kustomization.yaml"):
        # Anywhere in its values (resources, bases, patches, generator files), not comments.
        assert SECRET_TEMPLATE.name not in str(yaml.safe_load(kustomization.read_text()))
    base = render("base")
    for workload in our_workloads(base):
        assert secret_refs(app_container(workload)) == [SECRET_NAME], workload["metadata"]
    config = of_kind(base, "ConfigMap")
    assert len(config) == 1 and not set(config[0]["data"]) & SECRET_SETTINGS


def test_the_rules_report_a_broken_deployment() -> None:
    """The rule functions do fail: a mutated API Deployment shows every problem planted."""
    objects = render("production")
    api = component(objects, "Deployment", "api")
    assert api_problems(objects, api) == pod_problems(api) == shutdown_problems(objects, api) == []

    broken = copy.deepcopy(api)
    broken["spec"]["replicas"] = 1
    spec = pod_spec(broken)
    spec["terminationGracePeriodSeconds"] = 20
    spec["securityContext"]["runAsUser"] = 0
    container = spec["containers"][0]
    del container["readinessProbe"]
    container["livenessProbe"]["httpGet"]["port"] = 9999
    del container["resources"]["limits"]["memory"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["image"] = "quart-service:latest"
    problems = "\n".join(
        api_problems(objects, broken) + pod_problems(broken) + shutdown_problems(objects, broken)
    )
    for expected in (
        "replicas 1 < 2",
        "no HTTP readinessProbe",
        "livenessProbe port 9999",
        "no memory limit",
        "runAsUser 0",
        "readOnlyRootFilesystem is not true",
        "image quart-service:latest has no pinned tag",
        "terminationGracePeriodSeconds 20",
    ):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"

    scaled = copy.deepcopy(objects)
    for hpa in of_kind(scaled, "HorizontalPodAutoscaler"):
        hpa["spec"]["maxReplicas"] = 50
    assert connection_problems(scaled, CONNECTION_BUDGET["production"])


def test_kubectl_missing_is_a_failure_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without kubectl the tests fail and say what to install."""
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(pytest.fail.Exception, match="kubernetes-client"):
        kubectl()


def test_the_readme_names_the_overlays() -> None:
    """deploy/k8s/README.md explains both overlays and the secret template."""
    readme = (K8S_DIR / "README.md").read_text()
    for word in ("overlays/local", "overlays/production", "secret.template.yaml", "kind load"):
        assert word in readme, word
