"""deploy/ as it is checked in: every file parses and validates, offline.

Kubernetes objects against Kubernetes' own JSON schemas (kubernetes-validate bundles them, strict:
an unknown field fails), deploy/compose.yaml against the compose-spec schema (the copy that
check-jsonschema ships), the Dockerfile through hadolint and the BuildKit parser, the NATS
configs through nats-server itself. Then the rules of docs/operations.md that no schema knows:
every image pinned to a version, every container probed (the gateway on its own port, which it
binds on every address; the agents and the projectors on their metrics port, which Prometheus
scrapes), every SUTAZAI_* variable a setting, one projector lease for every
process, the graph in Neo4j, JetStream synced on every write and replicated on every server, and
the names that tie the objects together (selectors, Secrets, ports) pointing at something that
exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dockerfile  # type: ignore[import-not-found]
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import AliasChoices

from runtime.cli.base import _PLATFORM_SERVERS as PLATFORM_SERVERS
from runtime.settings import Settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
NATS_CONFIGS = [DEPLOY / "nats" / "nats.conf", K8S / "nats.conf"]
APP_IMAGE = "sutazai"
OLDEST_KUBERNETES = "1.30"
"""The oldest Kubernetes the manifests are written for (docs/operations.md)."""

Json = dict[str, Any]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def load_all(path: Path) -> list[Json]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> Json:
    return load_all(K8S / "kustomization.yaml")[0]


def k8s_objects() -> list[Json]:
    return [obj for name in kustomization()["resources"] for obj in load_all(K8S / name)]


def compose() -> Json:
    return load_all(COMPOSE)[0]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize's generators and compose read them."""
    lines = (line.strip() for line in path.read_text().splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def generated(kind: str) -> dict[str, dict[str, str]]:
    """The ConfigMaps or Secrets kustomize generates: name -> keys (a Secret's from its .example,
    the file itself being git-ignored)."""
    found: dict[str, dict[str, str]] = {}
    for generator in kustomization().get(f"{kind}Generator", []):
        keys: dict[str, str] = {}
        for name in generator.get("envs", []):
            keys |= env_file(K8S / (f"{name}.example" if kind == "secret" else name))
        for name in generator.get("files", []):
            keys[name] = (K8S / name).read_text()
        found[generator["name"]] = keys
    return found


def pod_specs() -> Iterator[tuple[Json, Json]]:
    """(workload, pod spec) of every object that runs pods."""
    for obj in k8s_objects():
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield obj, obj["spec"]["template"]["spec"]


def k8s_containers() -> Iterator[Json]:
    for _, spec in pod_specs():
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def container_env(container: Json) -> dict[str, str]:
    """A container's environment: its ConfigMaps (envFrom), then its own entries."""
    env: dict[str, str] = {}
    maps = generated("configMap")
    for source in container.get("envFrom", []):
        env |= maps[source["configMapRef"]["name"]]
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", "<from a reference>")
    return env


def image_name(image: str) -> str:
    return image.split("@")[0].rsplit(":", 1)[0]


def k8s_app_containers() -> list[Json]:
    return [c for c in k8s_containers() if image_name(c["image"]) == APP_IMAGE]


def k8s_gateway() -> Json:
    [gateway] = [c for c in k8s_app_containers() if c.get("args", [])[:1] == ["gateway"]]
    return gateway


def app_services() -> dict[str, Json]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if image_name(service["image"]) == APP_IMAGE
    }


def known_variables() -> set[str]:
    """Every environment variable the settings read: SUTAZAI_<FIELD> and the fields' aliases."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"SUTAZAI_{name.upper()}")
    return names


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


# -- every file parses and validates ------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert load_all(path), f"{path} holds no document"


def test_the_kustomization_names_every_manifest_and_file() -> None:
    listed = set(kustomization()["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == manifests
    for kind in ("configMap", "secret"):
        assert generated(kind), f"no {kind}Generator"


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_kubernetes_object_validates_against_the_schemas(version: str) -> None:
    objects = k8s_objects()
    assert {"StatefulSet", "Deployment", "HorizontalPodAutoscaler"} <= {o["kind"] for o in objects}
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {error.message}")
    assert errors == []


def test_compose_validates_against_the_compose_spec() -> None:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    config = DEPLOY / ".hadolint.yaml"
    result = subprocess.run(
        [str(hadolint), "--config", str(config), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NATS_CONFIGS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_nats_accepts_its_config_and_syncs_every_write(path: Path) -> None:
    nats_server = Path(sys.executable).parent / "nats-server"
    result = subprocess.run(
        [str(nats_server), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "POD_NAME": "nats-0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jetstream = re.search(r"^jetstream\s*\{(.*?)^\}", path.read_text(), re.DOTALL | re.MULTILINE)
    assert jetstream, f"{path}: no jetstream block"
    settings = re.findall(r"^\s*sync_interval:\s*(\S+)", jetstream.group(1), re.MULTILINE)
    assert settings == ["always"], f"{path}: sync_interval {settings}"


# -- images -------------------------------------------------------------------------------------


def dockerfile_stages() -> list[tuple[str, str, list[Any]]]:
    """(base image, stage name, instructions) of every stage of the Dockerfile."""
    stages: list[tuple[str, str, list[Any]]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd.upper() == "FROM":
            value = command.value
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else ""
            stages.append((value[0], name, []))
        else:
            stages[-1][2].append(command)
    return stages


def every_image() -> list[tuple[str, str]]:
    """(where, image) of every image deploy/ runs or builds from."""
    images = [(f"compose {n}", s["image"]) for n, s in compose()["services"].items()]
    images += [(f"k8s {c['name']}", c["image"]) for c in k8s_containers()]
    names = {name for _, name, _ in dockerfile_stages()}
    images += [("Dockerfile", base) for base, _, _ in dockerfile_stages() if base not in names]
    return images


VERSION_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)*([-.][0-9A-Za-z.-]+)?$")
"""A tag naming a release (2.14.5-alpine, v3.14.0, 17.11-alpine), not a moving one (latest, 2)."""


@pytest.mark.parametrize(("where", "image"), every_image())
def test_every_image_is_pinned_to_a_version(where: str, image: str) -> None:
    reference, _, digest = image.partition("@")
    name, _, tag = reference.rpartition(":") if ":" in reference.split("/")[-1] else (image, "", "")
    assert VERSION_TAG.match(tag) or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (
        f"{where}: {image} is not pinned to a version"
    )
    if name == APP_IMAGE:
        assert tag == project_version(), f"{where}: {image}; the project is {project_version()}"


def test_the_image_is_multi_stage_non_root_and_built_like_make_up() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    *builders, (_, _, final) = stages
    users = [c.value[0] for c in final if c.cmd.upper() == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]}: a numeric uid, which Kubernetes can check"
    assert int(uid) != 0, "the final stage runs as root"
    runs = " ".join(c.value[0] for _, _, commands in stages for c in commands if c.cmd == "RUN")
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install' in runs
    node = [name for base, name, _ in builders if base.startswith("node:")]
    assert node, "no Node.js build stage"
    assert not any("npm" in c.value[0] for c in final if c.cmd == "RUN")
    copied = [c.value for c in final if c.cmd == "COPY" and f"--from={node[0]}" in c.flags]
    assert copied == [("/app/gateway/graphiql/node_modules", "/app/gateway/graphiql/node_modules")]


# -- probes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", list(k8s_containers()), ids=lambda c: c["name"])
def test_every_kubernetes_container_is_probed_and_bounded(container: Json) -> None:
    for probe in ("livenessProbe", "readinessProbe"):
        assert probe in container, f"{container['name']} has no {probe}"
    for need in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][need]), need


def test_every_long_running_compose_service_has_a_health_check() -> None:
    services = compose()["services"]
    waited_for = {
        name
        for service in services.values()
        for name, when in service.get("depends_on", {}).items()
        if when["condition"] == "service_completed_successfully"
    }
    for name, service in services.items():
        if name in waited_for and service.get("restart") == "no":
            continue  # runs once, to completion; what waits on it checks its exit code
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} has its health check disabled"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def gateway_port(env: dict[str, str]) -> int:
    port = env.get("SUTAZAI_GATEWAY_PORT")
    return int(port) if port else int(Settings.model_fields["gateway_port"].default)


def container_port(container: Json, port: int | str) -> int:
    """A port of a container by number or by the name in its `ports`."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


def gateway_pod() -> Json:
    """The gateway's pod template."""
    [workload] = [w for w, spec in pod_specs() if k8s_gateway() in spec["containers"]]
    template: Json = workload["spec"]["template"]
    return template


EVERY_ADDRESS = "0.0.0.0"


def test_the_gateway_binds_every_address_of_its_container() -> None:
    assert container_env(k8s_gateway()).get("SUTAZAI_GATEWAY_HOST") == EVERY_ADDRESS
    assert app_services()["gateway"]["environment"].get("SUTAZAI_GATEWAY_HOST") == EVERY_ADDRESS
    # The image alone (`docker run -p`, its default command being the gateway) does the same.
    *_, (_, _, final) = dockerfile_stages()
    env: dict[str, str] = {}
    for command in (c for c in final if c.cmd.upper() == "ENV"):
        env |= dict(zip(command.value[::2], command.value[1::2], strict=True))
    assert env.get("SUTAZAI_GATEWAY_HOST") == EVERY_ADDRESS
    exposed = [port for c in final if c.cmd.upper() == "EXPOSE" for port in c.value]
    assert exposed == [str(gateway_port(env))]
    # Nothing stands in front of it in its pod or network namespace.
    template = gateway_pod()
    assert [c["name"] for c in template["spec"]["containers"]] == [k8s_gateway()["name"]]
    assert not any("network_mode" in service for service in compose()["services"].values())


def assert_probed_over_http(container: Json, port: int) -> None:
    """Its startup and liveness probes ask /healthz, its readiness probe /readyz, over plain
    HTTP at `port`, and none of them runs a command or only opens a socket."""
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        check = container[probe]
        assert set(check) & {"exec", "tcpSocket", "grpc"} == set(), probe
        asked = check["httpGet"]
        assert (asked["path"], container_port(container, asked["port"])) == (path, port), probe
        assert asked.get("scheme", "HTTP") == "HTTP", probe


def test_the_gateway_is_probed_on_healthz_and_readyz_at_its_port() -> None:
    gateway = k8s_gateway()
    port = gateway_port(container_env(gateway))
    assert [p["containerPort"] for p in gateway["ports"]] == [port]
    assert_probed_over_http(gateway, port)
    service = app_services()["gateway"]
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    assert "urllib" in test[3], test
    url = urlsplit(test[-1])
    assert (url.hostname, url.path) == ("127.0.0.1", "/readyz")
    assert url.port == gateway_port(service["environment"])


def test_what_reaches_the_gateway_reaches_its_port() -> None:
    gateway = k8s_gateway()
    port = gateway_port(container_env(gateway))
    template = gateway_pod()
    labels = template["metadata"]["labels"]
    [service] = [
        o
        for o in k8s_objects()
        if o["kind"] == "Service" and selects({"matchLabels": o["spec"]["selector"]}, labels)
    ]
    assert [container_port(gateway, p["targetPort"]) for p in service["spec"]["ports"]] == [port]
    [policy] = [
        o
        for o in k8s_objects()
        if o["kind"] == "NetworkPolicy"
        and "Ingress" in o["spec"]["policyTypes"]
        and o["spec"].get("ingress")
        and selects(o["spec"]["podSelector"], labels)
    ]
    opened = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert [container_port(gateway, p) for p in opened] == [port]
    assert int(template["metadata"]["annotations"]["prometheus.io/port"]) == port

    compose_gateway = app_services()["gateway"]
    compose_port = gateway_port(compose_gateway["environment"])
    published = [str(p).rsplit(":", 1)[-1] for p in compose_gateway["ports"]]
    assert published == [str(compose_port)]
    scraped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in scraped["scrape_configs"] if j["job_name"] == "sutazai-gateway"]
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"gateway:{compose_port}"]


WORKERS = {"agents": ["agents", "run"], "projectors": ["projections", "run"]}
"""The processes without the gateway, which serve their probes on SUTAZAI_METRICS_PORT."""


def metrics_port(env: dict[str, str]) -> int:
    port = env.get("SUTAZAI_METRICS_PORT")
    assert port, "SUTAZAI_METRICS_PORT is not set: the process serves no probe"
    return int(port)


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_agents_and_projectors_are_probed_and_scraped_on_their_metrics_port(name: str) -> None:
    [workload] = [w for w, _ in pod_specs() if w["metadata"]["name"] == name]
    template = workload["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert container["args"] == WORKERS[name]
    env = container_env(container)
    port = metrics_port(env)
    # Bound on every address of the pod, or the kubelet and Prometheus could not reach it.
    assert env.get("SUTAZAI_GATEWAY_HOST") == EVERY_ADDRESS
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert_probed_over_http(container, port)
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    opened = {
        container_port(container, p["port"])
        for o in k8s_objects()
        if o["kind"] == "NetworkPolicy"
        and "Ingress" in o["spec"]["policyTypes"]
        and selects(o["spec"]["podSelector"], template["metadata"]["labels"])
        for rule in o["spec"].get("ingress", [])
        for p in rule.get("ports", [])
    }
    assert opened == {port}

    service = app_services()[name]
    assert service["command"] == WORKERS[name]
    compose_port = metrics_port(service["environment"])
    assert service["environment"].get("SUTAZAI_GATEWAY_HOST") == EVERY_ADDRESS
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    assert "urllib" in test[3], test
    url = urlsplit(test[-1])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", compose_port, "/readyz")
    scraped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in scraped["scrape_configs"] if j["job_name"] == f"sutazai-{name}"]
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"{name}:{compose_port}"]


# -- settings, secrets and the names between objects ---------------------------------------------


def test_every_sutazai_variable_in_deploy_is_a_setting() -> None:
    known = known_variables()
    unknown = {
        f"{path.relative_to(DEPLOY)}: {name}"
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for name in re.findall(r"\bSUTAZAI_[A-Z0-9_]+\b", path.read_text())
        if name not in known
    }
    assert not unknown, sorted(unknown)


def test_every_variable_given_to_the_platform_is_a_setting() -> None:
    known = known_variables()
    given = app_environments()
    assert len(given) == 6
    for where, env in given:
        assert set(env) <= known, f"{where}: {sorted(set(env) - known)}"


def test_every_reference_to_a_configmap_or_secret_exists() -> None:
    maps, secrets = generated("configMap"), generated("secret")
    for container in k8s_containers():
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in maps
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], f"{ref['name']} has no {ref['key']}"
    for _, spec in pod_specs():
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps


def test_signing_key_and_admin_password_come_from_a_secret() -> None:
    env = k8s_gateway()["env"]
    from_secrets = {e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"SUTAZAI_JWT_SECRET", "SUTAZAI_ADMIN_PASSWORD"} <= from_secrets


def selects(selector: Json, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and In/NotIn/Exists) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        value, operator = labels.get(rule["key"]), rule["operator"]
        if operator == "In" and value not in rule["values"]:
            return False
        if operator == "NotIn" and value in rule["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
    return True


def test_selectors_select_pods_and_targets_exist() -> None:
    workloads = {(w["kind"], w["metadata"]["name"]): w for w, _ in pod_specs()}
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads.values()]
    for workload in workloads.values():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(workload["spec"]["selector"], labels), workload["metadata"]["name"]
    for obj in k8s_objects():
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Service":
            assert any(selects({"matchLabels": obj["spec"]["selector"]}, p) for p in pods), where
        if obj["kind"] in {"PodDisruptionBudget", "NetworkPolicy"}:
            key = "selector" if obj["kind"] == "PodDisruptionBudget" else "podSelector"
            assert any(selects(obj["spec"][key], p) for p in pods), where
        if obj["kind"] == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) in workloads, where
        if obj["kind"] == "StatefulSet":
            services = {o["metadata"]["name"] for o in k8s_objects() if o["kind"] == "Service"}
            assert obj["spec"]["serviceName"] in services, where


def test_streams_are_replicated_on_every_nats_server() -> None:
    [nats] = [o for o in k8s_objects() if o["kind"] == "StatefulSet"]
    config = generated("configMap")["sutazai-config"]
    routes = re.findall(r'"nats://[^"]+:6222"', (K8S / "nats.conf").read_text())
    servers = config["SUTAZAI_NATS_URL"].split(",")
    assert int(config["SUTAZAI_NATS_REPLICAS"]) == nats["spec"]["replicas"] == 3
    assert len(routes) == len(servers) == 3


def test_compose_names_only_its_own_services() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
    for name, service in app_services().items():
        for variable, value in service["environment"].items():
            if variable.endswith("_URL") or variable == "OLLAMA_HOST":
                plain = re.sub(r"\$\{[^}]*\}", "secret", value)  # compose's ${VAR:?message}
                hosts = {urlsplit(url).hostname for url in plain.split(",")}
                assert hosts <= set(services), f"{name} {variable}: {hosts}"


def app_environments() -> list[tuple[str, dict[str, str]]]:
    """(where, environment) of every platform process, in Kubernetes and in compose."""
    given = [(f"k8s {c['name']}", container_env(c)) for c in k8s_app_containers()]
    given += [(f"compose {name}", s["environment"]) for name, s in app_services().items()]
    return given


def test_every_process_has_the_same_projector_lease() -> None:
    # Each process sets the TTL of the sutazai_leases bucket at start: one value for all.
    leases = {
        where: env.get("SUTAZAI_PROJECTION_LEASE_SECONDS") for where, env in app_environments()
    }
    assert len(leases) == 6
    assert None not in leases.values(), leases
    assert len(set(leases.values())) == 1, leases
    assert all(float(str(seconds)) > 0 for seconds in leases.values())


def test_projectors_run_as_an_active_replica_and_a_standby() -> None:
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in k8s_objects()}
    projectors = by_name["Deployment", "projectors"]
    assert projectors["spec"]["replicas"] == 2
    assert projectors["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert by_name["PodDisruptionBudget", "projectors"]["spec"]["maxUnavailable"] == 1
    [container] = projectors["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["projections", "run"]  # every projector, the graph's included


def test_every_process_keeps_the_graph_in_neo4j() -> None:
    # No FalkorDB is deployed: with SUTAZAI_NEO4J_URL no process needs one.
    for where, env in app_environments():
        assert urlsplit(env.get("SUTAZAI_NEO4J_URL", "")).scheme == "bolt", where
        assert "SUTAZAI_NEO4J_PASSWORD" in env, where
        assert "SUTAZAI_GRAPH_URL" not in env, where


COMPOSE_SERVER = {"nats": "nats", "postgres": "postgres", "redis": "redis", "graph": "neo4j"}
"""The compose service of each server a long-running process checks before it starts."""


def test_compose_starts_each_process_after_the_servers_it_checks() -> None:
    for name, service in app_services().items():
        healthy = {
            server
            for server, when in service["depends_on"].items()
            if when["condition"] == "service_healthy"
        }
        needed = {COMPOSE_SERVER[kind] for kind in PLATFORM_SERVERS}
        assert needed <= healthy, f"{name}: {sorted(needed - healthy)}"


def test_compose_pulls_the_models_the_settings_name() -> None:
    pulled = re.findall(r"ollama pull (\S+)", " ".join(compose()["services"]["models"]["command"]))
    fields = Settings.model_fields
    assert sorted(pulled) == sorted([fields["chat_model"].default, fields["embed_model"].default])
