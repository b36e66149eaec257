"""deploy/ without a Docker engine: the compose file, the collector and Prometheus configs
and the demo apps are parsed and checked against each other (every name they use is
defined, every address points at a service that listens there). Where `docker compose`
works, it validates the compose file too."""

import ast
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent
SERVICES = {"valkey", "broker", "otel-collector", "jaeger", "prometheus", "producer", "worker"}
IMAGES = {
    "valkey": "valkey/valkey",
    "otel-collector": "otel/opentelemetry-collector-contrib",
    "jaeger": "jaegertracing/jaeger",
    "prometheus": "prom/prometheus",
}
VERSION_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?$")


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load("docker-compose.yaml"))


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return dict(load("otel-collector.yaml"))


def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def flags(service: dict[str, Any]) -> dict[str, str]:
    """--name=value and --name value arguments of a service's command."""
    command = service.get("command", [])
    args = command.split() if isinstance(command, str) else [str(a) for a in command]
    out: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            out[name] = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return out


def published(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port."""
    out = {}
    for port in service.get("ports", []):
        host, _, container = str(port).rpartition(":")
        out[int(host.rpartition(":")[2])] = int(container.split("/")[0])
    return out


def host_port(address: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"//{address}")
    assert parsed.hostname and parsed.port, address
    return parsed.hostname, parsed.port


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == SERVICES


def test_third_party_images_are_pinned_to_versions(compose: dict[str, Any]) -> None:
    for name, repository in IMAGES.items():
        image = services(compose)[name]["image"]
        repo, _, tag = image.rpartition(":")
        assert repo == repository, image
        assert VERSION_TAG.match(tag), f"{name}: {image} is not pinned to a version"


def test_the_broker_is_built_from_the_repository(compose: dict[str, Any]) -> None:
    broker = services(compose)["broker"]
    context = (DEPLOY / broker["build"]["context"]).resolve()
    dockerfile = context / broker["build"]["dockerfile"]
    assert context == ROOT and dockerfile == DEPLOY / "Dockerfile"
    text = dockerfile.read_text()
    assert re.search(r"^FROM python:3\.\d+", text, re.M)
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (context / source).exists(), f"Dockerfile copies {source}, which is missing"
    assert re.search(r"pip install .*\./clients/python .*\.", text)
    # The demo apps run from the image the broker's build produced.
    for name in ("producer", "worker"):
        assert services(compose)[name]["image"] == broker["image"]


def test_published_ports(compose: dict[str, Any]) -> None:
    s = services(compose)
    assert published(s["jaeger"])[16686] == 16686
    assert published(s["prometheus"])[9090] == 9090
    assert published(s["broker"])[50051] == 50051
    assert published(s["otel-collector"])[4317] == 4317


def test_the_broker_is_configured_for_the_stack(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    s = services(compose)
    broker = s["broker"]
    args = flags(broker)
    assert host_port(args["listen"])[1] == 50051
    redis_host, redis_port = host_port(args["redis-url"])
    assert (redis_host, redis_port) == ("valkey", 6379)
    env = environment(broker)
    assert env["OTEL_SERVICE_NAME"] == "jobwire-broker"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    host, port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert host == "otel-collector"
    grpc_receiver = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert port == host_port(grpc_receiver)[1]
    assert {"valkey", "otel-collector"} <= set(broker["depends_on"])


def test_the_demo_apps_reach_the_broker_and_the_collector(compose: dict[str, Any]) -> None:
    s = services(compose)
    broker_port = host_port(flags(s["broker"])["listen"])[1]
    for name in ("producer", "worker"):
        env = environment(s[name])
        assert host_port(env["JOBWIRE_TARGET"]) == ("broker", broker_port)
        assert host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])[0] == "otel-collector"
        assert env["OTEL_SERVICE_NAME"] == f"demo-{name}"
        script = s[name]["command"][-1]
        assert script == f"/app/deploy/demo/{name}.py"


def test_the_collector_is_mounted_with_its_config(compose: dict[str, Any]) -> None:
    col = services(compose)["otel-collector"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in col["volumes"]}
    config = flags(col)["config"]
    assert mounts[config] == "./otel-collector.yaml"


def test_collector_pipelines_use_only_defined_components(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in collector[kind], f"{name} uses undefined {kind}: {component}"
    for extension in collector["service"].get("extensions", []):
        assert extension in collector["extensions"]


def test_traces_go_to_jaeger_and_metrics_to_prometheus(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    pipelines = collector["service"]["pipelines"]
    assert "otlp" in pipelines["traces"]["receivers"]
    to_jaeger = [
        e
        for e in pipelines["traces"]["exporters"]
        if e.split("/")[0] in ("otlp", "otlp_grpc")
        and host_port(collector["exporters"][e]["endpoint"])[0] == "jaeger"
    ]
    assert to_jaeger, "no OTLP exporter to the jaeger service in the traces pipeline"
    assert "jaeger" in services(compose)
    assert "prometheus" in pipelines["metrics"]["exporters"]


def test_prometheus_targets_are_compose_services(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    config = load("prometheus.yml")
    targets = {
        host_port(t)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
    }
    listening = {
        ("otel-collector", host_port(collector["exporters"]["prometheus"]["endpoint"])[1]),
        ("broker", int(flags(services(compose)["broker"])["metrics-port"])),
    }
    assert targets == listening
    assert {host for host, _ in targets} <= set(services(compose))


def test_the_demo_apps_use_the_sdk_and_parse() -> None:
    for name in ("producer", "worker", "otel"):
        tree = ast.parse((DEPLOY / "demo" / f"{name}.py").read_text())
        imported = {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        } | {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        if name != "otel":
            assert "jobwire" in imported and "otel" in imported
        assert not imported & {"jobwire_broker", "grpc"}, f"{name}.py should need the SDK only"


def test_the_readme_says_how_to_run_it_and_what_cannot_run_here() -> None:
    text = (DEPLOY / "README.md").read_text()
    assert "docker compose" in text and "16686" in text
    assert "collector" in text.lower() and "cannot be downloaded" in text


def docker_compose_works() -> bool:
    if not shutil.which("docker"):
        return False
    found = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return found.returncode == 0


@pytest.mark.skipif(not docker_compose_works(), reason="no `docker compose` on this machine")
def test_docker_compose_accepts_the_file() -> None:
    subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yaml"), "config", "-q"],
        check=True,
        cwd=ROOT,
    )
